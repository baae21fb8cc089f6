"""`kizuna retrain`: new files in, new snapshots, Feast up to date, models retrained and
gated, on a copy of the simulated retailer with its own MLflow store."""

from __future__ import annotations

import shutil
from datetime import timedelta

import mlflow
import pandas as pd

from kizuna.features.compute import Tables, default_cutoff
from kizuna.features.ingest import connect
from kizuna.features.lake import Lake
from kizuna.training import registry
from kizuna.training.retrain import new_cutoffs, retrain
from kizuna.training.trainer import snapshot_cutoffs
from tests.world import run_cli


def test_retrain_builds_what_is_new_trains_and_takes_new_files(sim_world, tmp_path) -> None:
    settings = sim_world.settings.model_copy(
        update={"home": tmp_path / "home", "mlruns": tmp_path / "mlruns"}
    )
    shutil.copytree(sim_world.settings.home_dir, settings.home_dir)
    con = connect(settings)
    before = snapshot_cutoffs(con, settings)
    latest = default_cutoff(Tables.from_lake(Lake(settings)), con)
    wanted = new_cutoffs(settings, every_days=10)
    assert wanted[-1] == latest and all(c > max(before) for c in wanted)

    report = retrain(settings, every_days=10, models=("churn",))
    assert report.built == wanted
    assert snapshot_cutoffs(connect(settings), settings) == sorted({*before, *wanted})
    assert report.online_until >= latest - timedelta(days=1)
    (first,) = report.trained
    assert first.verdict.version == "1" and first.verdict.alias == "champion"
    assert not report.skipped
    # Nothing new: only the latest cutoff is rebuilt.
    assert new_cutoffs(settings, every_days=10) == [latest]

    # New orders arrive; the command ingests them and snapshots the day after them.
    folder = tmp_path / "exports"
    folder.mkdir()
    day = latest + timedelta(days=3, hours=10)
    pd.DataFrame(
        {
            "order_id": [f"late-{n}" for n in range(5)],
            "customer_id": [f"C{n:06d}" for n in range(1, 6)],
            "ordered_at": [day.isoformat()] * 5,
            "amount": [19.9, 42.0, 7.5, 130.0, 55.25],
        }
    ).to_csv(folder / "orders.csv", index=False)
    run = run_cli(settings, "retrain", str(folder), "--every", "10d", "--model", "churn")
    assert run.returncode == 0, run.stderr
    assert "read 5 rows" in run.stdout  # the ingest's own report
    assert Lake(settings).manifest().version > Lake(sim_world.settings).manifest().version
    assert "kizuna-churn v2" in run.stdout and "picks up new champions within" in run.stdout
    assert "Traceback" not in run.stderr
    after = snapshot_cutoffs(connect(settings), settings)
    assert max(after) == (day + timedelta(days=1)).replace(hour=0)
    mlf = mlflow.MlflowClient(settings.tracking_uri)
    snapshots = {
        str(v.version): mlf.get_run(v.run_id).data.params["data_snapshot"]
        for v in mlf.search_model_versions("name = 'kizuna-churn'")
    }
    assert snapshots["1"] != snapshots["2"]  # v2 saw the new lake and snapshots
    assert registry.champion_version(settings, "churn") in {"1", "2"}


def test_retrain_on_an_empty_home_says_what_to_do(tmp_path) -> None:
    from kizuna.settings import Settings

    settings = Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")
    run = run_cli(settings, "retrain")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "ingest" in run.stderr
