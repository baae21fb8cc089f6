"""Quality on real data through the product's own path: ingest, then ``kizuna backtest``.

Every quality benchmark runs the two commands a user runs, in a fresh process and a
temporary ``KIZUNA_HOME``: ``kizuna ingest --preset ...`` and ``kizuna backtest --cutoff
... --horizon ...``. The figures are read from the backtest's own ``metrics.csv``; nothing
here fits or scores a model. Then each goal is checked: Kizuna's metric against every
BTYD baseline's (BG/NBD, Pareto/NBD, Gamma-Gamma) in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
KIZUNA = str(Path(sys.executable).with_name("kizuna"))


#: The BTYD rows a goal compares with (whichever a metric has).
BTYD_ROWS = ("bgnbd", "pareto_nbd", "bgnbd_gamma_gamma", "pareto_nbd_gamma_gamma")


@dataclass(frozen=True)
class Goal:
    """Kizuna's ``metric`` of ``model`` must beat every baseline row named in ``rivals``."""

    model: str
    metric: str
    higher_is_better: bool
    label: str
    rivals: tuple[str, ...] = BTYD_ROWS


GOALS = (
    Goal("churn", "auc", True, "churn AUC"),
    Goal("repurchase", "concordance", True, "repurchase concordance"),
    Goal(
        "repurchase",
        "median_abs_error_days",
        False,
        "next-purchase median |error| (days), repurchasers",
        ("own_median_gap", "bgnbd"),
    ),
    Goal("value", "mae_purchases", False, "per-customer count MAE"),
    Goal("value", "aggregate_abs_pct_error", False, "aggregate forecast |% error|"),
    Goal("value", "spearman", True, "value Spearman"),
    Goal("value", "revenue_top20", True, "revenue captured by the top 20%"),
)


def run_backtest(
    files: list[Path], preset: str, cutoff: str, horizon: str, workdir: Path
) -> tuple[pd.DataFrame, dict, float]:
    """``kizuna ingest`` then ``kizuna backtest`` in ``workdir``; (metrics, backtest.json,
    seconds)."""
    env = {
        **os.environ,
        "KIZUNA_HOME": str(workdir / "home"),
        "KIZUNA_MLRUNS": str(workdir / "mlruns"),
    }
    started = time.perf_counter()
    subprocess.run([KIZUNA, "ingest", "--preset", preset, *map(str, files)], env=env, check=True)
    out = workdir / "backtest"
    command = [KIZUNA, "backtest", "--cutoff", cutoff, "--horizon", horizon, "--out", str(out)]
    subprocess.run(command, env=env, check=True)
    seconds = time.perf_counter() - started
    return (
        pd.read_csv(out / "metrics.csv"),
        json.loads((out / "backtest.json").read_text()),
        seconds,
    )


def goal_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per goal and rival: both values and whether Kizuna beats it."""
    rows = []
    for goal in GOALS:
        table = metrics[metrics["model"] == goal.model].set_index("scorer")
        if goal.metric not in table.columns or "kizuna" not in table.index:
            rows.append({"goal": goal.label, "rival": "—", "met": "not measured"})
            continue
        ours = table.loc["kizuna", goal.metric]
        for rival in goal.rivals:
            if rival not in table.index or pd.isna(table.loc[rival, goal.metric]):
                continue
            theirs = table.loc[rival, goal.metric]
            better = ours > theirs if goal.higher_is_better else ours < theirs
            rows.append(
                {
                    "goal": goal.label,
                    "kizuna": ours,
                    "rival": rival,
                    "rival_value": theirs,
                    "met": "yes" if better else "no",
                }
            )
    return pd.DataFrame(rows)


def report(name: str, files: list[Path], preset: str, cutoff: str, horizon: str) -> dict:
    """Run, print the backtest's tables and the goals, and return the figures."""
    with tempfile.TemporaryDirectory(prefix="kizuna-quality-") as tmp:
        metrics, info, seconds = run_backtest(files, preset, cutoff, horizon, Path(tmp))
    goals = goal_table(metrics)
    print()
    print(f"{name}: kizuna backtest --cutoff {cutoff} --horizon {horizon} ({seconds:.0f} s)")
    for note in info.get("notes", []):
        print(f"note: {note}")
    for model, scheme in info.get("split", {}).items():
        print(f"{model}: {scheme[0]}")
    columns = ["model", "scorer", *[g.metric for g in GOALS if g.metric in metrics.columns]]
    columns = list(dict.fromkeys(columns))
    print(metrics[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print(goals.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return {
        "data": name,
        "cutoff": cutoff,
        "horizon": horizon,
        "seconds": seconds,
        "notes": info.get("notes", []),
        "split": info.get("split", {}),
        "metrics": metrics.to_dict(orient="records"),
        "goals": goals.to_dict(orient="records"),
    }
