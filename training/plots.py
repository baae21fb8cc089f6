"""The plots logged with each model: calibration, gains, Qini and feature contributions.

Each function takes arrays (held-out labels and scores) and returns a matplotlib Figure;
registry.py logs them to MLflow. Matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kizuna.training.evaluate import qini_curve, reliability_table
from kizuna.training.models import resolve, spec


def reliability(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> Figure:
    """Observed rate against mean predicted probability per bin, one line per scorer."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, p in scores.items():
        table = [(pred, obs) for pred, obs, n in reliability_table(y, p) if n]
        ax.plot(*zip(*table, strict=True), marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def gains(actual: np.ndarray, scores: dict[str, np.ndarray], title: str) -> Figure:
    """Cumulative share of ``actual`` (churners, revenue) captured by the top-scored rows."""
    fig, ax = plt.subplots(figsize=(5, 5))
    actual = np.asarray(actual, dtype=float)
    share = np.arange(1, len(actual) + 1) / len(actual)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="random")
    for name, score in scores.items():
        ordered = actual[np.argsort(-np.asarray(score, dtype=float), kind="stable")]
        ax.plot(share, np.cumsum(ordered) / max(ordered.sum(), 1e-12), label=name)
    ax.set(xlabel="share of customers, highest score first", ylabel="share captured", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def qini(y: np.ndarray, treated: np.ndarray, uplifts: dict[str, np.ndarray], title: str) -> Figure:
    """Qini curves: incremental responders as the top-uplift rows are targeted."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, uplift in uplifts.items():
        x, q = qini_curve(y, treated, uplift)
        ax.plot(x, q, label=name)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(xlabel="share targeted", ylabel="incremental responders", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def contributions(values: pd.DataFrame, title: str, top: int = 20) -> Figure:
    """A SHAP summary: mean |contribution| per feature over held-out rows (LightGBM's
    ``pred_contrib``), the ``top`` largest."""
    mean_abs = values.abs().mean().sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(mean_abs) + 1.5))
    ax.barh(mean_abs.index, mean_abs.to_numpy())
    ax.set(xlabel="mean |SHAP value| (log-odds or log scale)", title=title)
    fig.tight_layout()
    return fig


def close(figures: dict[str, Figure]) -> None:
    """Free the figures' memory once they are logged."""
    for fig in figures.values():
        plt.close(fig)


def _shap(result) -> dict[str, Figure]:
    explain = getattr(result.model, "contributions", None)
    if explain is None:
        return {}
    sample = result.test.head(2_000)
    return {"shap_summary": contributions(explain(sample), f"{result.name}: feature contributions")}


def figures(result) -> dict[str, Figure]:
    """The plots of one training result (kizuna.training.trainer.TrainResult): its spec's
    own figures and every model's feature contributions."""
    reference = spec(result.name).figures
    return {**(resolve(reference)(result) if reference else {}), **_shap(result)}


def churn_figures(result) -> dict[str, Figure]:
    """Churn: reliability and gains against the RFM heuristic."""
    test, model = result.test, result.model
    test = test[test["churned"].notna()]
    y = test["churned"].astype(int).to_numpy()
    scores = {"kizuna": model.predict_proba(test), "rfm": model.rfm_probability(test)}
    return {
        "calibration": reliability(y, scores, "Churn: reliability, held-out cutoff"),
        "gains": gains(y, scores, "Churn: share of churners captured"),
    }


def repurchase_figures(result) -> dict[str, Figure]:
    """Repurchase: reliability of P(buy within 30 days) against the baselines."""
    test, model = result.test, result.model
    days = test["days_to_next_purchase"].to_numpy(dtype=float)
    known = test["repurchased"].to_numpy(dtype=bool) | (days >= 30)
    y = ((days <= 30) & test["repurchased"].to_numpy(dtype=bool))[known].astype(int)
    scorers = {"kizuna": model.predict(test), **model.baseline_predictions(test)}
    scores = {k: v["p_buy_30d"].to_numpy()[known] for k, v in scorers.items()}
    return {"calibration_30d": reliability(y, scores, "Repurchase within 30 days: reliability")}


def value_figures(result) -> dict[str, Figure]:
    """Value: share of revenue captured against the baselines."""
    test, model = result.test, result.model
    test = test[test["future_value"].notna()]
    actual = test["future_value"].clip(lower=0).to_numpy()
    scorers = {"kizuna": model.predict(test), **model.baseline_predictions(test)}
    scores = {k: v["predicted_value"].to_numpy() for k, v in scorers.items()}
    return {"gains": gains(actual, scores, "Value: share of revenue captured")}


def offer_figures(result) -> dict[str, Figure]:
    """Offers: a Qini curve per offer on its channel's exposures."""
    test, model = result.test, result.model
    out: dict[str, Figure] = {}
    predicted = model.predict(test)
    offered = test[model.arm_column].astype(object)
    y = test[model.outcome_column].astype(int).to_numpy()
    for offer in model.offers_:
        on = model._on_channel(test, offer)
        rows = on & (offered.isna().to_numpy() | (offered == offer).to_numpy())
        treated = (offered == offer).to_numpy()[rows]
        if treated.any() and (~treated).any():
            out[f"qini_{offer}"] = qini(
                y[rows],
                treated,
                {"kizuna": predicted[f"uplift_{offer}"].to_numpy()[rows]},
                f"Offer {offer}: Qini curve",
            )
    return out
