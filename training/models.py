"""One spec per model: everything the shared pipeline needs to know about it.

The trainer, backtest, registry, runs, plots, baselines and the score book's remedies read
:data:`SPECS`; none of them asks a model's name. Adding a model is one entry here and its
own module (``kizuna.training.<name>``: the estimator class and its ``evaluate``).

A spec names the model's class, its FeatureService (the class's ``service``), what a
training row is (a customer at a snapshot cutoff, or an offer exposure at its send time),
how far after a row its label looks, the options its estimator takes from the run, its
BTYD baselines, its plots and the gate metric (the class's ``primary_metric``).
References to code that pulls in heavy libraries (matplotlib, the estimators) are
``"module:attribute"`` strings, imported on first use, so the server can read the specs
without loading the plotting stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from kizuna.training.horizons import HORIZON_DAYS

if TYPE_CHECKING:
    from kizuna.training.trainer import TrainingData

# The timing model's label window is its last horizon: one constant, so the two cannot
# drift apart (a longer horizon than window would let labels see past the split).
REPURCHASE_WINDOW_DAYS = HORIZON_DAYS

#: A row is a customer at a snapshot cutoff (split by cutoffs) or an exposure at its send
#: time (split by whole sends).
Unit = Literal["cutoff", "send"]
CUTOFF: Unit = "cutoff"
SEND: Unit = "send"


@cache
def resolve(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ModelSpec:
    """What the shared pipeline knows about one model.

    Attributes:
        name: the short name (``churn``); the registered model is ``kizuna-<name>``.
        model_class: ``module:Class`` of the estimator (fit / predict / its service).
        label: the label in words, for the model card and ``--help``.
        label_columns: the label columns of its training frame (backtest joins them).
        unit: what a training row is (:data:`CUTOFF` or :data:`SEND`).
        label_days: how many days after a row its label looks, for a run's data.
        options: the estimator's options taken from the run (beyond seed and threads).
        baselines: ``module:attribute`` of its BTYD baselines (None: none apply).
        figures: ``module:function`` returning its plots of a training result.
        split_hint: what to change when the history cannot be split for its window.
        needs_churn_risk: its evaluation has an "offer everyone at high churn risk"
            baseline, which needs the churn model's probabilities.
        after_fit: called with (data, model, cutoffs it was fitted on) after fitting.
        to_train: what to do when it has no champion.
        book_columns: ``module:function`` adding its outputs to the score book's frame.
        record_block: ``module:function`` giving its block of a customer's score record
            (None: it has none; the offer model answers through decisions).
        intended_use: what its outputs are for, for its model card.
        limits: what it does not do or where it is weak, for its model card.
    """

    name: str
    model_class: str
    label: str
    label_columns: tuple[str, ...]
    unit: Unit
    label_days: Callable[[TrainingData], int]
    options: Callable[[TrainingData], dict[str, Any]] = field(default=lambda _data: {})
    baselines: str | None = None
    figures: str = ""
    split_hint: str = ""
    needs_churn_risk: bool = False
    after_fit: Callable[[TrainingData, Any, list[datetime]], None] | None = None
    to_train: str = ""
    book_columns: str = ""
    record_block: str | None = None
    intended_use: str = ""
    limits: tuple[str, ...] = ()

    @property
    def cls(self) -> type:
        """The estimator class."""
        return resolve(self.model_class)

    @property
    def module(self) -> Any:
        """The model's module (its ``evaluate``)."""
        return importlib.import_module(self.model_class.partition(":")[0])

    @property
    def service(self) -> str:
        """The FeatureService it trains and serves on."""
        return self.cls.service

    @property
    def gate_metric(self) -> str:
        """The held-out metric the promotion gate compares."""
        return self.cls.primary_metric

    @property
    def higher_is_better(self) -> bool:
        """The direction of :attr:`gate_metric`."""
        return self.cls.higher_is_better

    @property
    def moments(self) -> str:
        """What its training moments are called in progress lines."""
        return "send days" if self.unit == SEND else "cutoffs"

    def new(self, data: TrainingData) -> Any:
        """An unfitted estimator with the run's options."""
        return self.cls(seed=data.config.seed, n_jobs=data.config.n_jobs, **self.options(data))


def _cold_start(data: TrainingData, model: Any, cutoffs: list[datetime]) -> None:
    """The value model's answer for customers without an order: what such customers spent
    next at the training cutoffs (the lake's own figure, not an extrapolation)."""
    from kizuna.training.labels import never_buyer_value

    groups = never_buyer_value(data.con, data.tables, cutoffs, data.value_days)
    model.cold_start_values_ = dict(zip(groups["from_days"], groups["spend"], strict=True))
    model.cold_start_rows_ = int(groups["rows"].sum())


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # Churn: no purchase within H days of the cutoff (H from the data's gaps).
        ModelSpec(
            name="churn",
            model_class="kizuna.training.churn:ChurnModel",
            label="no purchase within the churn horizon H after the cutoff",
            label_columns=("churned",),
            unit=CUTOFF,
            label_days=lambda data: data.horizon.days,
            options=lambda data: {"window_days": data.horizon.days},
            baselines="kizuna.training.baselines:CHURN",
            figures="kizuna.training.plots:churn_figures",
            split_hint="; the churn window is --horizon-days (backtest: --horizon)",
            to_train="run `kizuna train churn`",
            intended_use=(
                "Rank customers who allow profiling by the risk of no purchase within the churn "
                "horizon H after their features' moment, for at-risk lists, value at risk and "
                "the reasons shown to marketers. The probability is calibrated on a later cutoff "
                "than the training ones."
            ),
            limits=(
                "H is set from the lake's own purchase gaps; a retailer with seasonal buying "
                "should check it against its calendar.",
                "Customers without an order get the rate of their peers, not a personal score.",
            ),
            book_columns="kizuna.serving.scoring:churn_columns",
            record_block="kizuna.serving.scoring:churn_block",
        ),
        # Repurchase timing: days to the next purchase, censored at the last horizon.
        ModelSpec(
            name="repurchase",
            model_class="kizuna.training.repurchase:RepurchaseModel",
            label="days to the next purchase (censored at the last horizon)",
            label_columns=("repurchased", "days_to_next_purchase"),
            unit=CUTOFF,
            label_days=lambda _data: REPURCHASE_WINDOW_DAYS,
            baselines="kizuna.training.baselines:REPURCHASE",
            figures="kizuna.training.plots:repurchase_figures",
            to_train="run `kizuna train repurchase`",
            intended_use=(
                "When a customer will buy next: P(purchase within 7 to 90 days) and the P25, "
                "median and P75 days to the next purchase, for due-to-repurchase lists and "
                "reminders."
            ),
            limits=(
                "Nothing beyond the last horizon is predicted: a later purchase is 'unlikely "
                "within the horizon', not a date.",
            ),
            book_columns="kizuna.serving.scoring:repurchase_columns",
            record_block="kizuna.serving.scoring:repurchase_block",
        ),
        # Value: spend in the next value_days (shorter when the history is).
        ModelSpec(
            name="value",
            model_class="kizuna.training.value:ValueModel",
            label="spend in the value window after the cutoff",
            label_columns=("future_value", "future_purchase_days"),
            unit=CUTOFF,
            label_days=lambda data: data.value_days,
            options=lambda data: {"value_days": data.value_days},
            baselines="kizuna.training.baselines:VALUE",
            figures="kizuna.training.plots:value_figures",
            split_hint="; the value window is --value-days",
            after_fit=_cold_start,
            to_train="run `kizuna train value`",
            intended_use=(
                "Spend in the value window after the features' moment (net of returns), for value "
                "lists, value at risk and budgeted campaigns."
            ),
            limits=(
                "A history shorter than the configured window trains a shorter one (the card's "
                "data section says so).",
                "Customers without an order get what such customers spent next, not a personal "
                "figure.",
            ),
            book_columns="kizuna.serving.scoring:value_columns",
            record_block="kizuna.serving.scoring:value_block",
        ),
        # Offers: a purchase within offer_window_days of an exposure (offer or control).
        ModelSpec(
            name="offers",
            model_class="kizuna.training.offers:OfferModel",
            label="a purchase within the offer window after an exposure",
            label_columns=("purchased",),
            unit=SEND,
            label_days=lambda data: data.config.offer_window_days,
            figures="kizuna.training.plots:offer_figures",
            needs_churn_risk=True,
            to_train="run `kizuna train offers` once offer exposures are ingested",
            intended_use=(
                "P(purchase within the offer window) with and without each offer on its channel, "
                "and so each offer's uplift, for choosing offers by the profit they add."
            ),
            limits=(
                "Learned from the retailer's own randomized or logged exposures: offers never "
                "sent, or sent to one kind of customer only, cannot be judged.",
                "Uplift is estimated, not observed per customer; the held-out policy value is "
                "an IPS estimate with its standard error.",
            ),
            book_columns="kizuna.serving.scoring:offer_columns",
        ),
    )
}

#: The models in training order (churn first: the offers baseline uses it).
MODEL_NAMES = tuple(SPECS)
#: The model whose probabilities the ``needs_churn_risk`` baselines read.
CHURN_RISK_FROM = "churn"


class UnknownModelError(ValueError):
    """A model name that is not one of :data:`MODEL_NAMES`."""


def spec(name: str) -> ModelSpec:
    """Model ``name``'s spec."""
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}"
        ) from None
