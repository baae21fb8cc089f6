"""The repurchase model's periods and horizons (constants only, so the serving and CLI
modules that print them need not import LightGBM)."""

#: Period boundaries in days after the cutoff; each end is also a reported horizon.
PERIOD_EDGES = (0, 7, 14, 30, 60, 90)
HORIZONS = PERIOD_EDGES[1:]
#: The model's last horizon: no day is dated beyond it (the label window must cover it).
HORIZON_DAYS = PERIOD_EDGES[-1]
