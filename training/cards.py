"""Model cards: one markdown page per registered version, logged with its MLflow run.

What a reviewer needs before a model serves: its intended use, the data window and
snapshot it saw, its features, its held-out metrics beside the baselines of the same run,
its calibration, how it does by RFM segment, loyalty tier and country, its known limits
and how consent is handled. Every figure is from the held-out rows of the training run
(``TrainResult.test``), never from the rows it was fitted on.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

from kizuna.training.base import MODEL_ROW
from kizuna.training.models import spec

CARD_ARTIFACT = "model_card.md"
#: The groups a card reports separately, and the fewest held-out rows a group needs.
GROUPS = {"rfm_segment": "RFM segment", "loyalty_tier": "loyalty tier", "country": "country"}
MIN_GROUP_ROWS = 200
#: Metrics that describe calibration, where a model's outputs are probabilities.
CALIBRATION = ("ece", "brier", "log_loss", "base_rate")

CONSENT = (
    "Training frames hold only customers who allowed profiling at each cutoff (an "
    "opt-out at the time removes their rows); while opted out a customer is not scored "
    "in the API, lists, batch files or KPIs. An erased customer leaves the lake and every "
    "later training set; the weights of a model trained before the erasure may still "
    "reflect them until the next retrain (docs/privacy.md)."
)


def _number(value: Any) -> str:
    if isinstance(value, bool | numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _markdown(table: pd.DataFrame) -> str:
    columns = [str(c) for c in table.columns]
    lines = [
        "| " + " | ".join([table.index.name or "", *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([str(index), *(_number(v) for v in row)]) + " |")
    return "\n".join(lines)


def by_group(result: Any) -> pd.DataFrame:
    """The gate metric of the model on each group of the held-out rows with at least
    :data:`MIN_GROUP_ROWS` rows (a smaller group's figure would be noise)."""
    from kizuna.training.trainer import evaluate

    model_spec = spec(result.name)
    rows = []
    for column, label in GROUPS.items():
        if column not in result.test.columns:
            continue
        groups = result.test.groupby(result.test[column].astype(str), dropna=False)
        for value, part in groups:
            if len(part) < MIN_GROUP_ROWS:
                continue
            try:
                table = evaluate(result.name, result.model, part)
                figure = float(table.loc[MODEL_ROW, model_spec.gate_metric])
            except (ValueError, KeyError, ZeroDivisionError):
                figure = float("nan")  # e.g. one class only in the group
            rows.append({"group": label, "value": value, "rows": len(part), "metric": figure})
    return pd.DataFrame(rows, columns=["group", "value", "rows", "metric"])


def model_card(result: Any, verdict: Any) -> str:
    """The markdown card of one training result and the gate's verdict on it."""
    s, p = spec(result.name), result.params
    metric = s.gate_metric
    evaluation = result.evaluation.rename_axis("scorer")
    shown = [c for c in evaluation.columns if evaluation[c].notna().any()]
    calibration = [c for c in CALIBRATION if c in evaluation.columns]
    groups = by_group(result)
    lines = [
        f"# kizuna-{s.name} v{verdict.version}",
        "",
        f"**Gate:** {verdict.alias}: {verdict.reason}.",
        "",
        "## Intended use",
        "",
        s.intended_use,
        "",
        f"Label: {s.label} ({p['label_days']} days). Gate metric: {metric} "
        f"({'higher' if s.higher_is_better else 'lower'} is better).",
        "",
        "## Data",
        "",
        f"- Snapshot: `{p['data_snapshot']}`; FeatureService `{s.service}`.",
        f"- Split: {p['split_scheme']} ({p['split_reason']}).",
        f"- Training {s.moments}: {p['train_cutoffs']} ({p['n_train_cutoffs']}), "
        f"{p['train_rows']:,} rows; validation: {p['valid_cutoffs']}, {p['valid_rows']:,} "
        f"rows; held out: {p['test_cutoffs']}, {p['test_rows']:,} rows.",
    ]
    if p.get("window_note"):
        lines.append(f"- {p['window_note']}.")
    lines += [
        "",
        f"## Features ({len(result.features)})",
        "",
        ", ".join(f"`{f}`" for f in result.features),
        "",
        f"## Held-out evaluation ({p['test_cutoffs']})",
        "",
        "The model (`kizuna`) and the baselines of the same run, on the same held-out rows.",
        "",
        _markdown(evaluation[shown]),
        "",
        "## Calibration",
        "",
    ]
    if calibration:
        lines += [
            "Expected calibration error, Brier score and log loss on the held-out rows "
            "(lower is better; `base_rate` is the observed rate).",
            "",
            _markdown(evaluation[calibration].dropna(how="all")),
        ]
    else:
        lines.append(
            "The outputs are not a single probability; the held-out table above gives "
            "the metrics that describe the fit."
        )
    lines += ["", "## By RFM segment, loyalty tier and country", ""]
    if groups.empty:
        lines.append(f"No group holds {MIN_GROUP_ROWS} held-out rows.")
    else:
        lines += [
            f"The gate metric ({metric}) of the model on each group with at least "
            f"{MIN_GROUP_ROWS} held-out rows (n/a: the metric is undefined there, e.g. "
            "one outcome only).",
            "",
            _markdown(groups.set_index("group").rename(columns={"metric": metric})),
        ]
    notes = result.evaluation.attrs.get("baseline_notes", {})
    lines += ["", "## Known limits", "", *(f"- {limit}" for limit in s.limits)]
    lines += [f"- Baseline {row} could not be fitted: {why}" for row, why in notes.items()]
    lines += ["", "## Consent", "", CONSENT, ""]
    return "\n".join(lines)
