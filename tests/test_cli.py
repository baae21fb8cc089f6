"""The command line: help with examples everywhere, clear errors with exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kizuna.cli import app
from tests.world import kizuna

COMMANDS = [
    "ingest",
    "simulate",
    "lake",
    "contracts",
    "run",
    "features build",
    "features apply",
    "features materialize",
    "features catalog",
    "train",
    "models list",
    "models promote",
    "models rollback",
    "models card",
    "policy evaluate",
    "backtest",
    "retrain",
    "serve",
    "score",
    "keys create",
    "keys list",
    "keys revoke",
    "customers delete",
    "customers export",
    "lists at-risk",
    "lists due-to-repurchase",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"kizuna {command}" in result.output


def test_ingest_prints_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\na,c1,2024-01-01,3\nb,c1,oops,4\n")
    result = kizuna("ingest", str(path), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "read 2 rows" in result.stdout
    assert "1 x ordered_at:not_a_timestamp" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("│ orders")]
    cells = [c.strip() for c in lines[0].split("│")[1:-1]]
    assert cells[:6] == ["orders", "2", "1", "0", "0", "1"]


def test_a_bad_file_is_one_clear_error_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer\na,c1\n")
    result = kizuna("ingest", str(path), home=tmp_path / "home")
    assert result.returncode == 2
    assert "missing required column(s) customer_id, ordered_at, amount" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "lake" / "_manifest.json").exists()


def test_features_commands_say_what_to_run_first(tmp_path: Path) -> None:
    result = kizuna("features", "apply", home=tmp_path / "home")
    assert result.returncode == 2
    assert "run `kizuna features build` first" in result.stderr
    result = kizuna("features", "build", "--every", "fortnight", home=tmp_path / "home")
    assert result.returncode == 2
    assert "'fortnight' is not a period; write e.g. 7d or 2w" in result.stderr


def test_model_commands_say_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = kizuna("train", "everything", home=home)
    assert result.returncode == 2
    assert "unknown model 'everything'; choose one of churn, repurchase" in result.stderr
    result = kizuna("train", "churn", home=home)
    assert result.returncode == 2
    assert "run `kizuna features build --every 7d`" in result.stderr
    assert "Traceback" not in result.stderr
    result = kizuna("models", "list", home=home)
    assert result.returncode == 0
    assert "no models registered yet; run `kizuna train all`" in result.stdout
    result = kizuna("models", "rollback", "churn", home=home)
    assert result.returncode == 2
    assert "kizuna-churn is not registered; train it first" in result.stderr
    result = kizuna("backtest", "--cutoff", "June", home=home)
    assert result.returncode == 2
    assert "--cutoff 'June' is not a date; write YYYY-MM-DD" in result.stderr


def test_serving_commands_say_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = kizuna("keys", "create", "--name", "crm", "--scopes", "score,teleport", home=home)
    assert result.returncode == 2
    assert "unknown scope(s) teleport; choose from score, offers" in result.stderr
    created = kizuna("keys", "create", "--name", "crm", "--scopes", "score,lists", home=home)
    assert created.returncode == 0 and created.stdout.strip().startswith("kz_")
    assert created.stdout.strip() not in (home / "serving" / "keys.json").read_text()
    again = kizuna("keys", "create", "--name", "crm", home=home)
    assert again.returncode == 2 and "a key named 'crm' exists" in again.stderr
    listed = kizuna("keys", "list", home=home)
    header, row = listed.stdout.splitlines()
    assert header.split("\t") == ["name", "scopes", "created", "expires", "status", "last_used"]
    assert row.split("\t")[:2] == ["crm", "score,lists"]
    assert row.split("\t")[3:] == ["never", "active", "never"]
    result = kizuna("keys", "create", "--name", "temp", "--expires", "soon", home=home)
    assert result.returncode == 2 and "cannot read the expiry 'soon'; give a duration" in (
        result.stderr
    )
    result = kizuna("keys", "create", "--name", "temp", "--expires", "2020-01-01", home=home)
    assert result.returncode == 2 and "is in the past" in result.stderr
    assert kizuna("keys", "create", "--name", "temp", "--expires", "30d", home=home).returncode == 0
    assert kizuna("keys", "revoke", "crm", home=home).returncode == 0
    again = kizuna("keys", "revoke", "crm", home=home)
    assert again.returncode == 2 and "the key 'crm' was already revoked at" in again.stderr
    result = kizuna("keys", "revoke", "nobody", home=home)
    assert result.returncode == 2 and "no key is named 'nobody' (keys: crm, temp)" in result.stderr
    rows = [
        json.loads(line) for line in kizuna("keys", "list", "--json", home=home).stdout.splitlines()
    ]
    assert [(r["name"], r["status"]) for r in rows] == [("crm", "revoked"), ("temp", "active")]
    assert rows[1]["expires"] > rows[1]["created"]
    result = kizuna("score", "--out", str(tmp_path / "x.txt"), home=home)
    assert result.returncode == 2 and "must end in .parquet or .csv" in result.stderr
    result = kizuna("lists", "at-risk", home=home)
    assert result.returncode == 2 and "kizuna train all" in result.stderr
