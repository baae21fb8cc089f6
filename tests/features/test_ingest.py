"""Ingest end to end: quarantine, idempotency, conflicts, atomicity and file-level errors."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kizuna.features.ingest import IngestError, ingest
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from tests.conftest import NOW

ORDERS = """order_id,customer_id,ordered_at,amount,is_return
o1,c1,2024-01-05T10:00:00+02:00,10.5,
o2,c1,2024-02-05 10:00,-3,true
o3,c2,2099-01-01,5,
o4,,2024-01-01,abc,
o5,c3,2024-03-01,-4,no
o1,c1,2024-01-05T10:00:00+02:00,10.5,
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run(paths, settings: Settings, **kw):
    return ingest([Path(p) for p in paths], settings, now=NOW, **kw)


def lake_state(settings: Settings) -> dict[str, pd.DataFrame]:
    lake = Lake(settings)
    return {
        k: lake.read(k).sort_values(list(lake.read(k).columns[:1])).reset_index(drop=True)
        for k in ("customers", "orders", "order_lines", "events")
    }


def test_accepted_rows_land_by_month_and_rejected_rows_are_kept_whole(
    tmp_path: Path, settings: Settings
) -> None:
    report = run([write(tmp_path / "orders.csv", ORDERS)], settings)
    rep = report.kinds["orders"]
    assert (rep.read, rep.accepted, rep.duplicates_in_input, rep.rejected_rows) == (6, 2, 1, 3)
    assert dict(rep.rejected) == {
        "ordered_at:in_future": 1,
        "customer_id:missing": 1,
        "amount:not_a_number": 1,
        "amount:negative_not_return": 1,
    }
    lake = Lake(settings)
    orders = lake.read("orders").sort_values("order_id")
    assert list(orders["order_id"]) == ["o1", "o2"]
    assert orders["ordered_at"].iloc[0] == pd.Timestamp("2024-01-05 08:00", tz="UTC")
    months = sorted(p.parent.name for p in lake.files("orders"))
    assert months == ["month=2024-01", "month=2024-02"]

    quarantined = lake.quarantine("orders").sort_values("_source_row")
    assert list(quarantined["order_id"]) == ["o3", "o4", "o5"]
    assert list(quarantined["_source_row"]) == [3, 4, 5]
    # The whole row as it came in, every value as written.
    assert quarantined.iloc[1][["customer_id", "ordered_at", "amount"]].tolist() == [
        "",
        "2024-01-01",
        "abc",
    ]
    assert quarantined.iloc[1]["_reasons"] == "customer_id:missing; amount:not_a_number"
    assert set(quarantined["_source_file"]) == {str(tmp_path / "orders.csv")}


def test_the_same_file_twice_adds_nothing(tmp_path: Path, settings: Settings) -> None:
    path = write(tmp_path / "orders.csv", ORDERS)
    run([path], settings)
    before = lake_state(settings)
    quarantined = len(Lake(settings).quarantine("orders"))
    again = run([path], settings).kinds["orders"]
    assert (again.accepted, again.already_in_lake, again.already_quarantined) == (0, 2, 3)
    after = lake_state(settings)
    for kind in before:
        pd.testing.assert_frame_equal(before[kind], after[kind])
    assert len(Lake(settings).quarantine("orders")) == quarantined


def test_same_key_different_content_is_a_conflict_with_both_versions_kept(
    tmp_path: Path, settings: Settings
) -> None:
    run([write(tmp_path / "orders.csv", ORDERS)], settings)
    changed = ORDERS.replace(
        "o1,c1,2024-01-05T10:00:00+02:00,10.5,\n", "o1,c1,2024-01-05T10:00:00+02:00,99,\n", 1
    )
    changed = changed.replace(
        "o1,c1,2024-01-05T10:00:00+02:00,10.5,\n", "o1,c1,2024-01-05T10:00:00+02:00,99,\n"
    )
    rep = run([write(tmp_path / "orders_v2.csv", changed)], settings).kinds["orders"]
    assert dict(rep.review) == {"order_id:conflicts_with_lake": 1}
    assert rep.accepted == 0
    review = Lake(settings).quarantine("orders", "review").sort_values("_version")
    assert list(review["_version"]) == ["incoming", "lake"]
    assert list(review["amount"]) == [99.0, 10.5]
    # The lake keeps the version it had.
    assert Lake(settings).read("orders").set_index("order_id").loc["o1", "amount"] == 10.5


def test_conflicting_versions_within_one_file_are_all_set_aside(
    tmp_path: Path, settings: Settings
) -> None:
    text = (
        "event_id,customer_id,occurred_at,type\ne1,c1,2024-01-01,session\n"
        "e1,c1,2024-01-02,session\ne2,c1,2024-01-01,session\ne2,c1,2024-01-01,session\n"
    )
    rep = run([write(tmp_path / "events.csv", text)], settings).kinds["events"]
    assert (rep.accepted, rep.duplicates_in_input) == (1, 1)
    assert dict(rep.review) == {"event_id:conflicts_in_file": 2}
    review = Lake(settings).quarantine("events", "review")
    assert sorted(review["occurred_at"].astype(str)) == [
        "2024-01-01 00:00:00+00:00",
        "2024-01-02 00:00:00+00:00",
    ]


def test_orders_of_unknown_customers_are_counted_or_rejected_by_policy(
    tmp_path: Path, settings: Settings
) -> None:
    write(tmp_path / "customers.csv", "customer_id,country\nc1,JP\n")
    orders = write(
        tmp_path / "orders.csv",
        "order_id,customer_id,ordered_at,amount\na,c1,2024-01-01,1\nb,c9,2024-01-01,2\n",
    )
    rep = run([tmp_path / "customers.csv", orders], settings).kinds["orders"]
    assert (rep.accepted, rep.unknown_customers) == (2, 1)

    strict = Settings(home=settings.home / "strict", unknown_customers="reject")
    rep = run([tmp_path / "customers.csv", orders], strict).kinds["orders"]
    assert (rep.accepted, dict(rep.review)) == (1, {"customer_id:unknown_customer": 1})
    assert list(Lake(strict).quarantine("orders", "review")["customer_id"]) == ["c9"]


def test_mapping_renames_foreign_columns(tmp_path: Path, settings: Settings) -> None:
    path = write(tmp_path / "export.csv", "OrderNo;Client;When;Total\nA1;c1;2024-05-01;7.5\n")
    rep = run(
        [path],
        settings,
        kind="orders",
        mapping="OrderNo=order_id,Client=customer_id,When=ordered_at,Total=amount",
    )
    assert rep.kinds["orders"].accepted == 1
    assert Lake(settings).read("orders")["amount"].tolist() == [7.5]


def test_chunks_number_order_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ingest_chunk_rows=1000)
    rows = [f"o{i // 3},p{i},3,1.5" for i in range(3000)]
    path = write(
        tmp_path / "order_lines.csv",
        "order_id,product_id,quantity,unit_price\n" + "\n".join(rows) + "\n",
    )
    rep = run([path], settings).kinds["order_lines"]
    assert rep.accepted == 3000
    lines = Lake(settings).read("order_lines")
    assert sorted(lines.groupby("order_id")["line_number"].max().unique()) == [3]
    assert not lines.duplicated(["order_id", "line_number"]).any()


def test_gzip_and_parquet_inputs(tmp_path: Path, settings: Settings) -> None:
    gz = tmp_path / "orders.csv.gz"
    gz.write_bytes(gzip.compress(ORDERS.encode()))
    assert run([gz], settings).kinds["orders"].accepted == 2
    frame = pd.DataFrame(
        {
            "event_id": ["e1"],
            "customer_id": ["c1"],
            "occurred_at": [pd.Timestamp("2024-01-01", tz="Asia/Tokyo")],
            "type": ["session"],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    assert run([tmp_path / "events.parquet"], settings).kinds["events"].accepted == 1
    assert Lake(settings).read("events")["occurred_at"].item() == pd.Timestamp(
        "2023-12-31 15:00", tz="UTC"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"order_id,customer_id\n", "missing required column(s) ordered_at, amount"),
        (b"order_id,customer_id,ordered_at,amount\n", "has a header but no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "found binary data"),
        (
            "order_id,customer_id,ordered_at,amount\no1,Jos\xe9,2024-01-01,1\n".encode("latin-1"),
            "not utf-8 text",
        ),
    ],
)
def test_a_file_that_is_not_what_it_claims_is_refused_and_nothing_is_written(
    tmp_path: Path, settings: Settings, content: bytes, message: str
) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError) as caught:
        run([path], settings)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert Lake(settings).manifest().version == 0
    assert not list((settings.home_dir / "lake").glob("orders/**/*.parquet"))


def test_latin1_file_ingests_with_its_encoding(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes("customer_id,country\nc1,Espa\xf1a\n".encode("latin-1"))
    run([path], settings, encoding="latin-1")
    assert Lake(settings).read("customers")["country"].tolist() == ["España"]


def test_unknown_kind_and_bad_mapping_say_what_to_do(tmp_path: Path, settings: Settings) -> None:
    path = write(tmp_path / "stuff.csv", "a,b\n1,2\n")
    with pytest.raises(IngestError, match="pass --kind, one of: customers"):
        run([path], settings)
    with pytest.raises(IngestError, match="not of the form theirs=ours"):
        run([path], settings, kind="orders", mapping="a:order_id")


# -- atomicity: a crash or Ctrl-C leaves the lake as it was -----------------------------


def _big_orders(path: Path, n: int) -> Path:
    with open(path, "w") as fh:
        fh.write("order_id,customer_id,ordered_at,amount\n")
        for i in range(n):
            fh.write(f"big{i},c{i % 997},2024-{1 + i % 12:02d}-15T12:00:00Z,{i % 50}.5\n")
    return path


def _cli(settings: Settings, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from kizuna.cli import app; app()", "ingest", *args],
        env={
            **os.environ,
            "KIZUNA_HOME": str(settings.home),
            "KIZUNA_INGEST_CHUNK_ROWS": "20000",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _snapshot(settings: Settings) -> tuple[int, dict[str, int], list[str]]:
    lake = Lake(settings)
    files = sorted(
        str(p.relative_to(settings.home_dir))
        for p in settings.home_dir.rglob("*.parquet")
        if ".staging" not in p.parts
    )
    return lake.manifest().version, lake.counts(), files


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_killing_an_ingest_midway_leaves_the_lake_unchanged(
    tmp_path: Path, settings: Settings, how: str
) -> None:
    run([write(tmp_path / "orders.csv", ORDERS)], settings)
    before = _snapshot(settings)
    big = _big_orders(tmp_path / "orders_big.csv", 400_000)
    proc = _cli(settings, str(big))
    staging = settings.home_dir / ".staging"
    deadline = time.monotonic() + 60
    while not list(staging.glob("*/in/orders/*.parquet")):  # midway: chunks are staged
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
    proc.wait(timeout=60)
    if how == "interrupt":
        assert proc.returncode == 130
        assert b"nothing was written" in proc.stderr.read()
    assert _snapshot(settings) == before
    # The next ingest cleans what the dead one left and works.
    assert run([big], settings).kinds["orders"].accepted == 400_000
    assert not list(staging.glob("*"))


def test_a_crash_after_moving_files_but_before_the_manifest_is_invisible(
    tmp_path: Path, settings: Settings
) -> None:
    run([write(tmp_path / "orders.csv", ORDERS)], settings)
    version, counts, _ = _snapshot(settings)
    proc = _cli(
        settings,
        str(_big_orders(tmp_path / "orders_big.csv", 1000)),
        env={"KIZUNA_CRASH_AT": "before-manifest"},
    )
    proc.wait(timeout=120)
    assert proc.returncode == 137
    # Files were moved in, but nothing lists them: readers see the old lake.
    assert _snapshot(settings)[:2] == (version, counts)
    assert len(list((settings.home_dir / "lake" / "orders").rglob("*.parquet"))) > len(
        Lake(settings).files("orders")
    )
    run([write(tmp_path / "customers.csv", "customer_id\nc1\n")], settings)
    assert len(list((settings.home_dir / "lake" / "orders").rglob("*.parquet"))) == len(
        Lake(settings).files("orders")
    )
