"""Malformed files: ingest refuses them with one clear message, or quarantines rows with
reasons; a refusal leaves the lake byte for byte as it was."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kizuna.features.ingest import IngestError, ingest
from kizuna.features.lake import Lake
from kizuna.features.sources import SourceError
from kizuna.features.validate import REASON_DOCS
from kizuna.settings import Settings
from tests.conftest import NOW
from tests.world import kizuna

COLUMNS = ["order_id", "customer_id", "ordered_at", "amount", "is_return"]
GOOD = {
    "order_id": ["o1", "o2", "x-17", "o1"],
    "customer_id": ["c1", "c2", "Jos\xe9"],
    "ordered_at": ["2024-01-05", "2024-02-01T10:00:00Z", "2024-03-01 09:30"],
    "amount": ["10.5", "3", "0", "-2"],
    "is_return": ["", "true", "no", "1"],
}
BAD = [
    "",
    " ",
    "2024-13-45",
    "yesterday",
    "31/02/2024",
    "9" * 400,
    "1e400",
    "-1e309",
    "nan",
    "inf",
    "12,50",
    '"',
    '"unterminated',
    'a "quoted" word',
    "a,b",
    "a;b",
    "\r",
    "\u2028",
    "\U0001f600",
    "maybe",
    "2099-01-01",
]


def _sometimes(draw, one_in: int) -> bool:
    """True about once in ``one_in`` draws."""
    # sampled_from, not integers: hypothesis favours integer boundaries, which would make
    # every rare mutation common.
    # True in the middle: hypothesis leans towards the first element.
    return draw(st.sampled_from([False] * (one_in // 2) + [True] + [False] * (one_in // 2)))


@st.composite
def csv_files(draw) -> bytes:
    """A CSV that is wrong in one or more ways: values, column counts, separators, quotes,
    encodings, truncation; or no CSV at all."""
    shape = draw(st.sampled_from(["rows"] * 5 + ["bytes"] + ["rows"] * 5 + ["empty"]))
    if shape == "bytes":
        return draw(st.binary(max_size=400))
    if shape == "empty":
        return draw(st.sampled_from([b"", b"\n\n", b"\xef\xbb\xbf", b" \t \n"]))
    header = list(COLUMNS)
    if _sometimes(draw, 5):  # columns missing or in another order
        header = draw(st.permutations(header))[: draw(st.integers(1, len(header)))]
    lines = [header]
    for _ in range(draw(st.integers(1, 12))):
        row = [draw(st.sampled_from(BAD if _sometimes(draw, 4) else GOOD[c])) for c in header]
        if _sometimes(draw, 10):  # wrong column counts
            extra = draw(st.sampled_from([-2, -1, 1, 2]))
            row = row[:extra] if extra < 0 else row + ["extra"] * extra
        lines.append(row)
    sep = draw(st.sampled_from([",", ",", ";", "\t"]))
    text = "\n".join(
        (draw(st.sampled_from([";", ","])) if i and _sometimes(draw, 8) else sep).join(line)
        for i, line in enumerate(lines)
    )
    text += draw(st.sampled_from(["\n", "\n", "", "\r\n", '"']))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-8-sig"]))
    data = text.encode(encoding, "replace")
    if _sometimes(draw, 6):  # cut off anywhere, even inside a character
        data = data[: draw(st.integers(0, len(data)))]
    if _sometimes(draw, 12):
        data = data.replace(b"\n", b"\n\x00", 1)  # a NUL byte: not text
    if _sometimes(draw, 16):
        data = gzip.compress(data)[: draw(st.integers(10, 200))]  # a gzip cut short
    return data


def _fingerprint(home: Path) -> dict[str, str]:
    """Every file under the lake and the quarantine, with a hash of its bytes."""
    out = {}
    for folder in ("lake", "quarantine"):
        for path in sorted((home / folder).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(home))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A home whose lake already holds orders and a quarantined row."""
    root = tmp_path_factory.mktemp("baseline")
    path = root / "orders.csv"
    path.write_text(
        "order_id,customer_id,ordered_at,amount\n"
        "b1,c1,2024-01-05,10.5\nb2,c2,2024-02-01,4\nb3,c3,oops,1\n"
    )
    settings = Settings(home=root / "home", mlruns=root / "mlruns")
    ingest([path], settings, now=NOW)
    assert Lake(settings).manifest().version == 1
    return root / "home"


def _check_landed(settings: Settings, report, version_before: int) -> None:
    lake = Lake(settings)
    assert lake.manifest().version == version_before + 1
    rep = report.kinds.get("orders")
    if rep is None:
        return
    assert sum(rep.rejected.values()) >= rep.rejected_rows  # no row without a reason
    for reason in rep.rejected:
        column, code = reason.split(":")
        assert column in COLUMNS and code in REASON_DOCS, reason
    quarantined = lake.quarantine("orders")
    assert (quarantined["_reasons"].str.len() > 0).all()
    orders = lake.read("orders")
    assert orders[["order_id", "customer_id", "ordered_at", "amount"]].notna().all().all()
    assert np.isfinite(orders["amount"].to_numpy(dtype=float)).all()


@pytest.mark.slow
@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=csv_files())
def test_a_malformed_file_is_refused_clearly_or_its_rows_quarantined(
    baseline: Path, data: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(baseline, home)
        settings = Settings(home=home, mlruns=Path(tmp) / "mlruns")
        path = Path(tmp) / "orders.csv"
        path.write_bytes(data)
        before = _fingerprint(home)
        version = Lake(settings).manifest().version
        try:
            report = ingest([path], settings, now=NOW)
        except (IngestError, SourceError) as exc:
            message = str(exc)
            event(f"refused: {message.split(': ', 2)[1][:40] if ': ' in message else message}")
            assert message.strip() and "\n" not in message.strip(), message
            assert str(path) in message, message
            assert _fingerprint(home) == before
            return
        event("landed")
        _check_landed(settings, report, version)


def _cut_gzip(at: int | None) -> bytes:
    """Gzip-compressed orders cut at byte ``at`` (None: halfway, past the sniffed head)."""
    rows = "".join(f"o{i},c{i % 7},2024-01-01,{i % 50}.5\n" for i in range(20_000))
    packed = gzip.compress(("order_id,customer_id,ordered_at,amount\n" + rows).encode())
    return packed[: at if at is not None else len(packed) // 2]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.csv.gz", _cut_gzip(60), "looks gzip-compressed but cannot be unpacked"),
        ("orders.csv.gz", _cut_gzip(None), "cannot be read to the end"),
        (
            "orders.parquet",
            b"PAR1 this is not really parquet",
            "starts like Parquet but cannot be read",
        ),
    ],
)
def test_the_cli_refuses_a_damaged_file_in_one_line_and_exit_2(
    baseline: Path, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    home = tmp_path / "home"
    shutil.copytree(baseline, home)
    before = _fingerprint(home)
    path = tmp_path / name
    path.write_bytes(content)
    result = kizuna("ingest", str(path), home=home)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr
    assert _fingerprint(home) == before
