"""Kizuna: churn risk, repurchase timing, customer value and next best offer.

The package has one import root with three parts that depend one way:
``kizuna.serving -> kizuna.training -> kizuna.features -> kizuna.settings``.
"""

__version__ = "0.1.0"
