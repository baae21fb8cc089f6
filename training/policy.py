"""Off-policy evaluation: what a candidate offer policy would have earned, before launch.

The logged data are the lake's exposures whose response window has closed: each says
which arm was sent (an offer, or none for the control), with the probability the logging
policy gave that arm (``propensity``: the campaign's randomization, or the decision
log's exploration) and whether the customer bought within the window. A candidate policy
(a registered offer model's ``choose``) is scored on the exposures it was not trained or
validated on, with three estimators of the same quantity, the purchase rate the policy
would have had:

* **IPS**: mean of y · 1[π(x) = a] / p. Unbiased; noisy when propensities are small.
* **SNIPS**: Σ y·w / Σ w, the self-normalised form: a little biased, much steadier.
* **DR** (doubly robust): mean of q(x, π(x)) + 1[π(x) = a] / p · (y - q(x, a)), where q
  is the candidate's own outcome model (P(buy | arm), fitted on earlier sends): unbiased
  when either the propensities or q are right, and tighter than IPS when q is good.

Standard errors: the mean's for IPS and DR; the delta method's for SNIPS. The logged
policy's own value (the observed purchase rate on the same exposures) is beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kizuna.features.contracts import NO_OFFER
from kizuna.training.evaluate import PolicyValue, ips_policy_value
from kizuna.training.offers import logged_actions

ESTIMATORS = ("ips", "snips", "dr")


class PolicyEvaluationError(ValueError):
    """The logged data cannot evaluate the candidate; the message says why."""


def _se(terms: np.ndarray) -> float:
    return float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")


def estimate(
    outcome: np.ndarray,
    logged: np.ndarray,
    chosen: np.ndarray,
    propensity: np.ndarray,
    q_logged: np.ndarray | None = None,
    q_chosen: np.ndarray | None = None,
) -> dict[str, PolicyValue]:
    """IPS, SNIPS and (given the outcome model's q at the logged and at the chosen arm)
    DR estimates of a deterministic policy choosing ``chosen`` on rows logged as
    ``logged`` with ``propensity``."""
    y = np.asarray(outcome, dtype=float)
    p = np.asarray(propensity, dtype=float)
    if len(y) == 0:
        raise PolicyEvaluationError("no logged rows to evaluate on")
    if not (np.isfinite(p).all() and (p > 0).all()):
        raise PolicyEvaluationError(
            "every logged row needs a positive propensity (the probability the logging "
            "policy gave the arm it sent); rows without one cannot be reweighted"
        )
    match = np.asarray(logged, dtype=object) == np.asarray(chosen, dtype=object)
    w = match / p
    matched = int(match.sum())
    out = {"ips": ips_policy_value(y, logged, chosen, p)}
    total = w.sum()
    if total > 0:
        snips = float((w * y).sum() / total)
        se = float(np.sqrt(((w * (y - snips)) ** 2).sum()) / total)
        out["snips"] = PolicyValue(snips, se, matched)
    else:
        out["snips"] = PolicyValue(float("nan"), float("nan"), 0)
    if q_logged is not None and q_chosen is not None:
        terms = np.asarray(q_chosen, float) + w * (y - np.asarray(q_logged, float))
        out["dr"] = PolicyValue(float(terms.mean()), _se(terms), matched)
    return out


def outcome_model_values(model, predicted: pd.DataFrame, arms: np.ndarray) -> np.ndarray:
    """The offer model's P(buy | arm) of each row, for the arm given per row, from its
    ``predicted`` outputs."""
    columns = {NO_OFFER: "p_buy_control", **{o: f"p_buy_{o}" for o in model.offers_}}
    out = np.full(len(predicted), np.nan)
    for arm, column in columns.items():
        rows = np.asarray(arms, dtype=object) == arm
        out[rows] = predicted[column].to_numpy()[rows]
    if np.isnan(out).any():
        unknown = sorted({str(a) for a in np.asarray(arms, dtype=object)[np.isnan(out)]})
        raise PolicyEvaluationError(
            f"the candidate's model has no outcome for arms {', '.join(unknown)}; it was "
            "trained before they were sent: retrain it with `kizuna train offers`"
        )
    return out


def evaluate_policy(model, frame: pd.DataFrame) -> pd.DataFrame:
    """The candidate ``model``'s policy and the logged one on the exposures ``frame``:
    one row per policy, the estimators' values and standard errors as columns."""
    logged = logged_actions(frame, model.arm_column)
    y = frame[model.outcome_column].astype(float).to_numpy()
    predicted = model.predict(frame)  # once: the policy's uplift and q both come from it
    chosen = model.choose(frame, predicted[[f"uplift_{o}" for o in model.offers_]].to_numpy())
    q_logged = outcome_model_values(model, predicted, logged)
    q_chosen = outcome_model_values(model, predicted, chosen)
    estimates = estimate(y, logged, chosen, frame["propensity"].to_numpy(), q_logged, q_chosen)
    rows = {
        "logged": {"rows": len(y), "value": float(y.mean()), "standard_error": _se(y)},
    }
    for name in ESTIMATORS:
        e = estimates[name]
        rows[f"candidate_{name}"] = {
            "rows": e.matched,
            "value": e.value,
            "standard_error": e.standard_error,
        }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("policy")
    table.attrs["chosen"] = pd.Series(chosen).value_counts().to_dict()
    return table


@dataclass(frozen=True)
class PolicyReport:
    """A candidate's evaluation: the table, which version, and the exposures it used."""

    table: pd.DataFrame
    version: str
    held_out_from: pd.Timestamp
    exposures: pd.DataFrame

    def estimate(self, name: str) -> PolicyValue:
        row = self.table.loc[f"candidate_{name}"]
        return PolicyValue(float(row["value"]), float(row["standard_error"]), int(row["rows"]))


def evaluate_candidate(settings, candidate: str = "champion") -> PolicyReport:
    """Off-policy estimates of registered offer model ``candidate`` (a version number or
    an alias: champion, challenger) on the exposures after its training and validation
    sends, whose response window has closed, beside the logged policy's value."""
    from kizuna.training import registry
    from kizuna.training.trainer import TrainConfig, TrainingData, TrainingError

    try:
        version = registry.model_version(settings, "offers", candidate)
    except registry.RegistryError:
        raise PolicyEvaluationError(
            f"{registry.registered_name('offers')} has no version or alias {candidate!r}; see "
            "`kizuna models list --model offers` (train one with `kizuna train offers`)"
        ) from None
    params = registry.client(settings).get_run(version.run_id).data.params
    model = registry.load(settings, "offers", str(version.version))
    held_out_from = pd.Timestamp(params["test_cutoffs"].split("..")[0], tz="UTC")
    config = TrainConfig(offer_window_days=int(params["offer_window_days"]))
    try:
        frame = TrainingData.open(settings, config).frame("offers")
    except TrainingError as exc:
        raise PolicyEvaluationError(str(exc)) from exc
    sent = pd.to_datetime(frame["event_timestamp"], utc=True).dt.floor("D")
    frame = frame[sent >= held_out_from].reset_index(drop=True)
    if frame.empty:
        raise PolicyEvaluationError(
            f"no exposure with a closed response window was sent on or after "
            f"{held_out_from:%Y-%m-%d}, the first send the candidate did not learn from; "
            "ingest newer campaigns (or evaluate an older version)"
        )
    return PolicyReport(evaluate_policy(model, frame), str(version.version), held_out_from, frame)
