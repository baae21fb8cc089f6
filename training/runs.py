"""``kizuna train``: train models, log them to MLflow and let the gate pick the champion."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kizuna.settings import Settings
from kizuna.training import plots, registry
from kizuna.training.models import CHURN_RISK_FROM, MODEL_NAMES, spec
from kizuna.training.trainer import (
    TrainConfig,
    TrainingData,
    TrainingError,
    TrainResult,
    train,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A model that could not be trained on this data, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class Trained:
    """One model's training run: its result, the gate's verdict and how long it took."""

    result: TrainResult
    verdict: registry.Verdict
    seconds: float


def train_and_register(
    settings: Settings,
    names: Sequence[str] = MODEL_NAMES,
    config: TrainConfig | None = None,
    progress: Callable[[str], None] | None = None,
    keep_going: bool = False,
) -> tuple[list[Trained], list[Skipped]]:
    """Train ``names`` in order (churn first: the offers baseline uses it), log each run
    with its plots, register it and apply the promotion gate.

    With ``keep_going``, a model the data cannot train (no campaigns for the offer model,
    too little history for a 365-day value label) is skipped with its reason and the
    others still train; otherwise its TrainingError propagates.
    """
    config = config or TrainConfig(seed=settings.seed)
    say = progress or (lambda _line: None)
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise registry.RegistryError(
            f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_NAMES)} or all"
        )
    data = TrainingData.open(settings, config)
    say(
        f"data {data.snapshot}: {len(data.cutoffs)} snapshot cutoffs, churn horizon "
        f"H = {data.horizon.days} days"
    )
    out: list[Trained] = []
    skipped: list[Skipped] = []
    churn_model = None
    needing = [n for n in names if spec(n).needs_churn_risk]
    if needing and CHURN_RISK_FROM not in names:
        # The "offer everyone at high churn risk" baseline needs a churn model: the champion.
        try:
            churn_model = registry.load(settings, CHURN_RISK_FROM)
        except Exception as exc:  # the baseline is skipped, and said so
            say(
                f"{', '.join(needing)}: no churn champion ({type(exc).__name__}); skipping "
                "the high-churn-risk baseline"
            )
    for name in sorted(names, key=MODEL_NAMES.index):
        started = time.perf_counter()
        try:
            result = train(data, name, progress=say, churn_model=churn_model)
        except TrainingError as exc:
            if not keep_going:
                raise
            say(f"{name}: skipped: {exc}")
            skipped.append(Skipped(name, str(exc)))
            continue
        if name == CHURN_RISK_FROM:
            churn_model = result.model
        say(f"{name}: logging to MLflow and comparing with the champion")
        figures = plots.figures(result)
        verdict = registry.log_and_gate(settings, result, figures)
        plots.close(figures)
        seconds = time.perf_counter() - started
        say(f"{name}: v{verdict.version} is {verdict.alias} ({seconds:.1f} s)")
        out.append(Trained(result, verdict, seconds))
    return out, skipped
