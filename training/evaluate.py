"""Evaluation metrics for held-out cutoffs: classification, calibration, ranking, uplift.

Pure functions over arrays. Every model and baseline is scored with the same functions on
the same holdout, side by side (DESIGN.md: quality claims come from held-out data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def _arrays(*values) -> list[np.ndarray]:
    out = [np.asarray(v, dtype=float) for v in values]
    n = len(out[0])
    if any(len(v) != n for v in out):
        raise ValueError("all inputs must have the same length")
    if n == 0:
        raise ValueError("nothing to evaluate: the holdout is empty")
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by
    the share of rows in each bin."""
    y, p = _arrays(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(error)


def reliability_table(y, p, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, rows) per non-empty bin, for a reliability plot."""
    y, p = _arrays(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [
        (float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def lift_and_capture(y, score, top: float = 0.1) -> tuple[float, float]:
    """Lift (rate in the top share over the overall rate) and capture (share of all positives found
    in the top share) when rows are ranked by ``score``, highest first."""
    y, score = _arrays(y, score)
    k = max(1, round(top * len(y)))
    chosen = np.argsort(-score, kind="stable")[:k]
    overall = y.mean()
    if overall == 0:
        return float("nan"), float("nan")
    return float(y[chosen].mean() / overall), float(y[chosen].sum() / y.sum())


def classification_report(y, p) -> dict[str, float]:
    """AUC, PR-AUC, Brier, log loss, ECE, lift and capture at the top decile."""
    y, p = _arrays(y, p)
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    lift, capture = lift_and_capture(y, p, 0.1)
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "lift_top10": lift,
        "capture_top10": capture,
        "base_rate": float(y.mean()),
    }


def gini(actual, predicted) -> float:
    """Normalised Gini of ``predicted`` as a ranking of ``actual`` (1 = perfect order)."""
    actual, predicted = _arrays(actual, predicted)

    def raw(order_by: np.ndarray) -> float:
        ordered = actual[np.argsort(-order_by, kind="stable")]
        cumulative = np.cumsum(ordered) / ordered.sum()
        return float((cumulative - np.arange(1, len(ordered) + 1) / len(ordered)).sum())

    if actual.sum() == 0:
        return float("nan")
    return raw(predicted) / raw(actual)


def value_report(actual, predicted) -> dict[str, float]:
    """Spearman, Gini, MAE and the share of revenue in the predicted top 20%."""
    actual, predicted = _arrays(actual, predicted)
    k = max(1, round(0.2 * len(actual)))
    top = np.argsort(-predicted, kind="stable")[:k]
    total = actual.sum()
    return {
        "spearman": float(stats.spearmanr(actual, predicted).statistic),
        "gini": gini(actual, predicted),
        "mae": float(np.abs(actual - predicted).mean()),
        "revenue_top20": float(actual[top].sum() / total) if total else float("nan"),
    }


def count_report(actual_purchase_days, expected_purchases) -> dict[str, float]:
    """How well expected purchase counts forecast the purchase days that followed.

    Returns:
        ``mae_purchases`` (mean absolute error per customer), ``forecast_total`` and
        ``actual_total`` (sums over customers) and ``aggregate_abs_pct_error``
        (100 * |forecast_total / actual_total - 1|, NaN when nobody bought).
    """
    actual = np.asarray(actual_purchase_days, dtype=float)
    expected = np.asarray(expected_purchases, dtype=float)
    if actual.shape != expected.shape:
        raise ValueError("actual and expected purchases must have the same length")
    if len(actual) == 0:
        raise ValueError("nothing to evaluate: the holdout is empty")
    forecast, total = float(expected.sum()), float(actual.sum())
    return {
        "mae_purchases": float(np.abs(actual - expected).mean()),
        "forecast_total": forecast,
        "actual_total": total,
        "aggregate_abs_pct_error": 100 * abs(forecast / total - 1) if total else float("nan"),
    }


def qini_curve(y, treated, uplift) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: (share targeted, incremental responders) ranking by predicted uplift.

    At each cut the incremental responders are Y_t - Y_c * N_t / N_c over the targeted
    rows (Radcliffe 2007).
    """
    y, treated, uplift = _arrays(y, treated, uplift)
    order = np.argsort(-uplift, kind="stable")
    y, treated = y[order], treated[order].astype(bool)
    n_t = np.cumsum(treated)
    n_c = np.cumsum(~treated)
    y_t = np.cumsum(y * treated)
    y_c = np.cumsum(y * ~treated)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(n_c > 0, y_t - y_c * n_t / np.maximum(n_c, 1), y_t)
    share = np.arange(1, len(y) + 1) / len(y)
    return np.concatenate([[0.0], share]), np.concatenate([[0.0], gain])


def qini_coefficient(y, treated, uplift) -> float:
    """Area between the Qini curve and the random-targeting line, per treated row."""
    share, gain = qini_curve(y, treated, uplift)
    random_line = share * gain[-1]
    n_treated = max(float(np.sum(np.asarray(treated, dtype=bool))), 1.0)
    return float(np.trapezoid(gain - random_line, share) / n_treated)


def auuc(y, treated, uplift) -> float:
    """Area under the uplift curve, normalised by the number of treated rows."""
    share, gain = qini_curve(y, treated, uplift)
    n_treated = max(float(np.sum(np.asarray(treated, dtype=bool))), 1.0)
    return float(np.trapezoid(gain, share) / n_treated)


@dataclass(frozen=True)
class PolicyValue:
    """An off-policy estimate of the mean outcome had a policy chosen the actions."""

    value: float
    standard_error: float
    matched: int

    def within(self, truth: float, errors: float = 2.0) -> bool:
        """Whether ``truth`` lies within ``errors`` standard errors of the estimate."""
        return abs(self.value - truth) <= errors * self.standard_error


def ips_policy_value(outcome, logged_action, chosen_action, propensity) -> PolicyValue:
    """Inverse propensity weighting: mean of outcome * 1[logged = chosen] / propensity.

    Unbiased on randomized (or logged with known propensities) data; the standard error is
    that of the mean of the weighted terms.
    """
    outcome, propensity = _arrays(outcome, propensity)
    logged = np.asarray(logged_action, dtype=object)
    chosen = np.asarray(chosen_action, dtype=object)
    if len(logged) != len(outcome) or len(chosen) != len(outcome):
        raise ValueError("all inputs must have the same length")
    if (propensity <= 0).any():
        raise ValueError("propensities must be positive: a logged action had to be possible")
    match = np.array([a == b for a, b in zip(logged, chosen, strict=True)])
    terms = outcome * match / propensity
    se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")
    return PolicyValue(float(terms.mean()), se, int(match.sum()))


def concordance_index(time, predicted_time, event) -> float:
    """Harrell's C of ``predicted_time`` against right-censored observed ``time``.

    A pair is comparable when the shorter observed time ends in an event (``event`` true):
    the other row is then known to have waited longer. It is concordant when the predicted
    times are in the same order, half when they tie. Pairs with equal observed times are
    not compared. To score a risk (higher = sooner), pass its negative.

    Runs in O(n log n) with a Fenwick tree over the ranks of the predictions.
    """
    time, predicted, event = _arrays(time, predicted_time, event)
    ranks = stats.rankdata(predicted, method="dense").astype(int)
    tree = np.zeros(int(ranks.max()) + 1, dtype=np.int64)

    def at_most(rank: int) -> int:
        total = 0
        while rank > 0:
            total += int(tree[rank])
            rank -= rank & -rank
        return total

    def insert(rank: int) -> None:
        while rank < len(tree):
            tree[rank] += 1
            rank += rank & -rank

    order = np.argsort(-time, kind="stable")  # longest observed time first
    concordant = tied = comparable = inserted = 0
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and time[order[stop]] == time[order[start]]:
            stop += 1
        group = order[start:stop]
        # Rows already in the tree waited strictly longer than this group.
        for row in group[event[group].astype(bool)]:
            lower, upto = at_most(ranks[row] - 1), at_most(ranks[row])
            concordant += inserted - upto
            tied += upto - lower
            comparable += inserted
        for row in group:
            insert(ranks[row])
        inserted += len(group)
        start = stop
    if comparable == 0:
        return float("nan")
    return float((concordant + 0.5 * tied) / comparable)


def outcome_by(time, event, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row had its event within ``horizon``, and whether that is known.

    Known means the event happened by the horizon or the row was observed past it; a row
    censored before the horizon is unknown and should be left out of horizon metrics.

    Returns:
        (happened, known): two boolean arrays, one entry per row.
    """
    time, event = _arrays(time, event)
    happened = (event > 0) & (time <= horizon)
    known = happened | (time >= horizon)
    return happened, known


def horizon_report(time, event, p, horizon: float) -> dict[str, float]:
    """Brier score, AUC, ECE and mean predicted vs observed rate of P(event by ``horizon``),
    over the rows whose outcome at the horizon is known (:func:`outcome_by`)."""
    happened, known = outcome_by(time, event, horizon)
    (p,) = _arrays(p)
    if len(p) != len(known):
        raise ValueError("all inputs must have the same length")
    if not known.any():
        raise ValueError(f"no row was observed for {horizon} days: the horizon is too long")
    y, p = happened[known].astype(float), p[known]
    both_classes = 0 < y.mean() < 1
    return {
        "brier": float(brier_score_loss(y, p)),
        "auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "ece": expected_calibration_error(y, p),
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "rows": float(known.sum()),
    }
