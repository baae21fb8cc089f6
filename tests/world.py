"""One simulated retailer for the model and serving tests, built once per session.

simulate → ingest → snapshots at every campaign send day (every 10 days) → Feast apply →
point-in-time training frames through the FeatureServices → labels after each cutoff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from kizuna.features.compute import Tables, build_feature_files, cutoff_range
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.simulate import SimulationSummary, simulate
from kizuna.features.store import apply
from kizuna.settings import Settings
from kizuna.training.dataset import (
    exposure_training_frame,
    features_of,
    outcome_training_frame,
)
from kizuna.training.labels import ChurnHorizon, data_end, default_churn_horizon
from tests.conftest import NOW

SIM_START = date(2024, 1, 1)
SIM_DAYS = 720
# Short enough that train, validation and test value windows fit in the simulated period.
VALUE_DAYS = 120


@dataclass
class SimWorld:
    """The simulated retailer, its lake, snapshots and cached training frames."""

    settings: Settings
    sim: SimulationSummary
    con: duckdb.DuckDBPyConnection
    tables: Tables
    horizon: ChurnHorizon
    cutoffs: list[datetime]
    end: datetime
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    def features(self, service: str) -> list[str]:
        return features_of(self.settings, service)

    def outcomes(self, service: str) -> pd.DataFrame:
        """Features of ``service`` + churn, timing and value labels, every cutoff."""
        if service not in self._frames:
            self._frames[service] = outcome_training_frame(
                self.settings,
                self.con,
                self.tables,
                service,
                self.cutoffs,
                self.horizon.days,
                value_days=VALUE_DAYS,
            )
        return self._frames[service]

    def exposures(self) -> pd.DataFrame:
        """Every exposure (offer or control) with offers_v1 features at its send time."""
        if "exposures" not in self._frames:
            self._frames["exposures"] = exposure_training_frame(
                self.settings, self.con, self.tables
            )
        return self._frames["exposures"]

    @property
    def truth(self) -> Path:
        return self.sim.out / "ground_truth"


@pytest.fixture(scope="session")
def sim_world(tmp_path_factory: pytest.TempPathFactory) -> SimWorld:
    root = tmp_path_factory.mktemp("sim-world")
    settings = Settings(home=root / "home", mlruns=root / "mlruns")
    sim = simulate(root / "sim", customers=4_000, days=SIM_DAYS, seed=5, start=SIM_START)
    ingest([sim.out], settings, now=NOW)
    con, tables = connect(settings), Tables.from_lake(Lake(settings))
    # Campaigns go out every ten days from day 5: a snapshot at 00:00 of each send day.
    first = SIM_START + timedelta(days=65)
    cutoffs = cutoff_range(first, SIM_START + timedelta(days=SIM_DAYS - 1), timedelta(days=10))
    build_feature_files(settings, cutoffs)
    apply(settings)
    return SimWorld(
        settings=settings,
        sim=sim,
        con=con,
        tables=tables,
        horizon=default_churn_horizon(con, tables),
        cutoffs=cutoffs,
        end=data_end(con, tables),
    )


def write_csvs(folder: Path, **files: str) -> Path:
    """Write ``kind=csv text`` files into a new ``folder``; returns it."""
    folder.mkdir(parents=True)
    for kind, text in files.items():
        (folder / f"{kind}.csv").write_text(text)
    return folder


def ingest_csvs(folder: Path, settings: Settings, **files: str) -> None:
    """Write ``kind=csv text`` files into ``folder`` and ingest them (a tiny test lake)."""
    ingest([write_csvs(folder, **files)], settings, now=NOW)


CLI = [sys.executable, "-c", "from kizuna.cli import app; app()"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `kizuna` process using ``settings``' home and MLflow store."""
    return {
        **os.environ,
        "KIZUNA_HOME": str(settings.home_dir),
        "KIZUNA_MLRUNS": str(settings.mlruns_dir),
        **extra,
    }


def kizuna(*args: str, home: Path) -> subprocess.CompletedProcess:
    """`kizuna ARGS` in a fresh process on ``home`` (its MLflow store inside it)."""
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, "KIZUNA_HOME": str(home), "KIZUNA_MLRUNS": str(home / "mlruns")},
        capture_output=True,
        text=True,
        check=False,
    )


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """`kizuna ARGS` in a fresh process with ``settings``' home and MLflow store."""
    return subprocess.run(
        [*CLI, *args],
        env=cli_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
