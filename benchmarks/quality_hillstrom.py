"""Offer uplift on the Hillstrom e-mail test: Qini, AUUC and the IPS value of the policy.

Hillstrom's 64,000 customers were randomized to the Mens e-mail, the Womens e-mail or no
e-mail (1/3 each). The covariates are split 70/30, stratified by arm (seed 7); the 70%
is split again 80/20 (stratified) for early stopping, so the 30% holdout is seen once.
On the holdout, for visit and for conversion as the outcome:

* Qini coefficient and AUUC of each e-mail's predicted uplift against control;
* for visit, the IPS value (visits per customer, propensity 1/3) of each learner's uplift
  policy (the e-mail with the larger positive predicted uplift, else none) and of the
  DR policy tree (``policy="tree"``: its depth, 0 = one e-mail to everyone, chosen by
  5-fold cross-validated DR value inside the 70%), against "Mens e-mail to everyone"
  (the best single arm on the training rows) and a plain T-learner, with paired
  standard errors of the differences.

    .venv/bin/python benchmarks/quality_hillstrom.py
    .venv/bin/python benchmarks/quality_hillstrom.py --learners t,s,x,dr --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from kizuna.features.presets.hillstrom import COVARIATES
from kizuna.training.evaluate import ips_policy_value
from kizuna.training.offers import NO_OFFER, OfferModel, evaluate, policy_difference

DATA = (
    Path(__file__).resolve().parents[2]
    / "shared/data/hillstrom"
    / "Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv.gz"
)
# The file's covariates, as the hillstrom preset keeps them.
FEATURES = list(COVARIATES)
ARMS = {"Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email", "No E-Mail": None}
SEED = 7


def hillstrom_frame(path: Path) -> pd.DataFrame:
    """The file as exposure rows: ``offer_id`` (None = control), ``propensity`` 1/3."""
    raw = pd.read_csv(path)
    frame = raw[[*FEATURES, "visit", "conversion", "spend"]].copy()
    frame["offer_id"] = raw["segment"].str.strip().map(ARMS)
    frame["propensity"] = 1.0 / len(ARMS)
    # The channel column of an exposure frame is the send channel; Hillstrom's "channel"
    # is the customer's past purchase channel, a covariate, so the model gets none.
    return frame


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """70/30 stratified by arm, then the 70% split 80/20 for early stopping."""
    arm = frame["offer_id"].fillna(NO_OFFER)
    learn, holdout = train_test_split(frame, test_size=0.3, stratify=arm, random_state=SEED)
    train, valid = train_test_split(
        learn, test_size=0.2, stratify=arm.loc[learn.index], random_state=SEED
    )
    return train, valid, holdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--learners", default="t,s,x,dr", help="comma-separated; t is the baseline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    started = time.perf_counter()

    frame = hillstrom_frame(args.data)
    train, valid, holdout = split(frame)
    learners = args.learners.split(",")
    if "t" not in learners:
        learners.insert(0, "t")
    results: dict = {"rows": {"train": len(train), "valid": len(valid), "holdout": len(holdout)}}

    ranking = ["| learner | outcome | qini mens | auuc mens | qini womens | auuc womens |"]
    ranking.append("|---|---|---|---|---|---|")
    policies: dict[str, np.ndarray] = {}
    for outcome in ("visit", "conversion"):
        for learner in learners:
            model = OfferModel(
                learner=learner, outcome_column=outcome, channel_column=None, seed=SEED
            ).fit(train, valid, FEATURES)
            table = evaluate(model, holdout, seed=SEED)
            row = table.loc["kizuna"]
            results.setdefault("ranking", {}).setdefault(outcome, {})[learner] = {
                c: float(row[c]) for c in row.index if c.startswith(("qini", "auuc"))
            }
            ranking.append(
                f"| {learner} | {outcome} | {row['qini_mens_email']:.4f} | "
                f"{row['auuc_mens_email']:.4f} | {row['qini_womens_email']:.4f} | "
                f"{row['auuc_womens_email']:.4f} |"
            )
            if outcome == "visit":
                policies[learner] = model.choose(holdout)
                policies["best_single_arm"] = _best_arm(model, len(holdout))
                results["best_single_arm"] = str(policies["best_single_arm"][0])

    # The policy tree: its depth and splits are chosen on the 70% only.
    tree_model = OfferModel(
        learner="dr", policy="tree", outcome_column="visit", channel_column=None, seed=SEED
    ).fit(train, valid, FEATURES)
    tree = tree_model.policy_trees_[None]
    policies["dr_tree"] = tree_model.choose(holdout)
    cv = tree_model.policy_cv_[None]
    results["policy_tree"] = {
        "depth": tree.depth,
        "tree": tree.describe(),
        "cv_value_by_depth": {str(d): {"value": v, "se": se} for d, (v, se) in cv.items()},
    }

    y = holdout["visit"].to_numpy(dtype=float)
    logged = np.where(holdout["offer_id"].isna(), NO_OFFER, holdout["offer_id"]).astype(object)
    propensity = holdout["propensity"].to_numpy(dtype=float)
    value = ["| policy (visit) | IPS visits/customer | vs best single arm | vs T-learner | sends |"]
    value.append("|---|---|---|---|---|")
    policies["no_email"] = np.full(len(holdout), NO_OFFER, dtype=object)
    for name, chosen in policies.items():
        v = ips_policy_value(y, logged, chosen, propensity)
        vs_best = policy_difference(y, logged, chosen, policies["best_single_arm"], propensity)
        vs_t = policy_difference(y, logged, chosen, policies["t"], propensity)
        sends = {arm: float(np.mean(chosen == arm)) for arm in ("mens_email", "womens_email")}
        results.setdefault("policy_visit", {})[name] = {
            "value": v.value,
            "se": v.standard_error,
            "vs_best_single_arm": vs_best.value,
            "vs_best_single_arm_se": vs_best.standard_error,
            "vs_t_learner": vs_t.value,
            "vs_t_learner_se": vs_t.standard_error,
            **{f"share_{arm}": share for arm, share in sends.items()},
        }
        value.append(
            f"| {name} | {v.value:.4f} ± {v.standard_error:.4f} | "
            f"{_diff(vs_best)} | {_diff(vs_t)} | "
            f"mens {sends['mens_email']:.0%}, womens {sends['womens_email']:.0%} |"
        )
    seconds = time.perf_counter() - started
    results["seconds"] = seconds
    print("\n".join(ranking))
    print()
    print("\n".join(value))
    print(
        "\npolicy tree (visit): 5-fold CV DR value inside the 70% by depth: "
        + ", ".join(f"{d}: {v:.4f} ± {se:.4f}" for d, (v, se) in cv.items())
        + f"; chosen depth {tree.depth}:\n{tree.describe()}"
    )
    print(
        f"\nholdout {len(holdout):,} rows (30%, stratified by arm, seed {SEED}); "
        f"train {len(train):,}, early stopping on {len(valid):,}; ± is one standard error; "
        f"differences are paired; {seconds:.0f} s"
    )
    print(f"command: .venv/bin/python benchmarks/quality_hillstrom.py {' '.join(sys.argv[1:])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _best_arm(model: OfferModel, rows: int) -> np.ndarray:
    """The arm with the best uplift on the training rows, for every holdout row."""
    best = max(model.train_uplift_, key=model.train_uplift_.get)
    arm = best if model.train_uplift_[best] > 0 else NO_OFFER
    return np.full(rows, arm, dtype=object)


def _diff(d) -> str:
    if d.matched == 0:
        return "same policy"
    z = d.value / d.standard_error if d.standard_error > 0 else float("nan")
    return f"{d.value:+.4f} ± {d.standard_error:.4f} (z {z:+.1f})"


if __name__ == "__main__":
    main()
