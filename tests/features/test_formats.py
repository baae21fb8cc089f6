"""Retailers' own file formats: declared once, read right, or refused with what to pass.

Each format goes through the real ``ingest()`` and the real ``kizuna ingest`` command, and
the tests read back what landed in the lake.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from kizuna.features.ingest import IngestError, ingest
from kizuna.features.lake import Lake
from kizuna.features.validate import REASON_DOCS
from kizuna.settings import Settings
from tests.conftest import NOW
from tests.world import kizuna

HEADER = "order_id,customer_id,ordered_at,amount,is_return"


def run(paths, settings: Settings, **kw):
    return ingest([Path(p) for p in paths], settings, now=NOW, **kw)


def orders(home: Path) -> pd.DataFrame:
    return Lake(Settings(home=home)).read("orders").sort_values("order_id").reset_index(drop=True)


def refused(result: subprocess.CompletedProcess, home: Path) -> str:
    """The one-line error of a refused CLI ingest (exit 2, no traceback, nothing written)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ")
    assert Lake(Settings(home=home)).manifest().version == 0
    return " ".join(lines)


# -- Parquet ------------------------------------------------------------------------------


def test_pandas_parquet_with_nanoseconds_lands_cut_to_microseconds(
    tmp_path: Path, settings: Settings
) -> None:
    frame = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "customer_id": ["c1", "c2"],
            "ordered_at": pd.to_datetime(
                ["2024-01-01 10:00:00.123456789", "2024-02-01 00:00:00.000000001"]
            ),
            "amount": [12.5, 3.0],
        }
    )
    assert str(frame["ordered_at"].dtype) == "datetime64[ns]"  # pandas' default
    frame.to_parquet(tmp_path / "orders.parquet")

    assert run([tmp_path / "orders.parquet"], settings).kinds["orders"].accepted == 2
    assert orders(settings.home_dir)["ordered_at"].tolist() == [
        pd.Timestamp("2024-01-01 10:00:00.123456", tz="UTC"),
        pd.Timestamp("2024-02-01 00:00:00", tz="UTC"),
    ]

    home = tmp_path / "cli"
    result = kizuna("ingest", str(tmp_path / "orders.parquet"), home=home)
    assert result.returncode == 0, result.stderr
    assert orders(home)["ordered_at"].iloc[0] == pd.Timestamp("2024-01-01 10:00:00.123456Z")


# -- CSV text: byte-order mark, separators, encodings -----------------------------------


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\no1,c1,2024-01-01,12.5,\n".encode())
    assert run([path], settings).kinds["orders"].accepted == 1
    assert orders(settings.home_dir)[["order_id", "amount"]].values.tolist() == [["o1", 12.5]]

    home = tmp_path / "cli"
    assert kizuna("ingest", str(path), home=home).returncode == 0
    assert orders(home)["order_id"].tolist() == ["o1"]


def test_semicolons_are_sniffed_or_declared_and_a_wrong_sep_names_the_right_one(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(HEADER.replace(",", ";") + "\no1;c1;2024-01-01;12.5;\no2;c2;2024-01-02;4;\n")
    with pytest.raises(IngestError, match=r"splits into one column .* pass --sep ';'"):
        run([path], settings, sep=",")
    assert run([path], settings).kinds["orders"].accepted == 2  # sniffed
    assert orders(settings.home_dir)["amount"].tolist() == [12.5, 4.0]

    home = tmp_path / "cli"
    assert kizuna("ingest", str(path), "--sep", ";", home=home).returncode == 0
    assert orders(home)["customer_id"].tolist() == ["c1", "c2"]


def test_latin1_without_its_encoding_is_one_clear_error_naming_the_option(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes("customer_id,country\nc1,Espa\xf1a\n".encode("latin-1"))
    home = tmp_path / "cli"
    message = refused(kizuna("ingest", str(path), home=home), home)
    assert f"{path}: not utf-8 text" in message
    assert "pass --encoding latin-1" in message

    with pytest.raises(IngestError, match="pass --encoding latin-1"):
        run([path], settings)
    assert Lake(settings).manifest().version == 0
    run([path], settings, encoding="latin-1")
    assert Lake(settings).read("customers")["country"].tolist() == ["España"]


# -- values: decimal commas and the file's own yes/no words -------------------------------


def test_decimal_commas_are_quarantined_by_default_and_read_with_decimal_comma(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id;customer_id;ordered_at;amount;is_return\n"
        "o1;c1;2024-01-01;12,50;\n"
        "o2;c1;2024-01-02;1.234,50;\n"
        "o3;c1;2024-01-03;7;\n"
    )
    report = run([path], settings)
    assert report.kinds["orders"].accepted == 1
    assert dict(report.kinds["orders"].rejected) == {"amount:decimal_comma": 2}
    quarantined = Lake(settings).quarantine("orders").sort_values("_source_row")
    assert quarantined["amount"].tolist() == ["12,50", "1.234,50"]  # kept as written
    assert set(quarantined["_reasons"]) == {"amount:decimal_comma"}
    assert "--decimal ," in REASON_DOCS["decimal_comma"]

    again = run([path], settings, decimal=",").kinds["orders"]
    assert (again.accepted, again.already_in_lake) == (2, 1)  # o3 landed the first time
    assert orders(settings.home_dir)["amount"].tolist() == [12.5, 1234.5, 7.0]

    home = tmp_path / "cli"
    plain = kizuna("ingest", str(path), home=home)
    assert plain.returncode == 0, plain.stderr
    assert "2 x amount:decimal_comma" in plain.stdout
    assert "--decimal ," in plain.stdout  # the hint says what to pass
    declared = kizuna("ingest", str(path), "--decimal", ",", home=home)
    assert declared.returncode == 0, declared.stderr
    assert orders(home)["amount"].tolist() == [12.5, 1234.5, 7.0]


def test_boolean_words_are_declared_repeatable_and_case_insensitive(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(
        "customer_id,consent_email,consent_sms\n"
        "c1,ja,Nein\nc2,JA,x\nc3,nein,\nc4,yes,0\nc5,vielleicht,ja\n"
    )
    report = run([path], settings)
    assert report.kinds["customers"].accepted == 1  # only c4 speaks English
    assert dict(report.kinds["customers"].rejected) == {
        "consent_email:not_a_boolean": 4,
        "consent_sms:not_a_boolean": 3,
    }
    assert "--true" in REASON_DOCS["not_a_boolean"] and "--false" in REASON_DOCS["not_a_boolean"]

    home = tmp_path / "cli"
    args = ["--true", "ja", "--true", "X", "--false", "NEIN"]
    result = kizuna("ingest", str(path), *args, home=home)
    assert result.returncode == 0, result.stderr
    customers = Lake(Settings(home=home)).read("customers").set_index("customer_id")
    consent = customers[["consent_email", "consent_sms"]].astype("boolean")
    assert consent.loc["c1"].tolist() == [True, False]
    assert consent.loc["c2"].tolist() == [True, True]
    assert consent.loc["c3"].tolist() == [False, pd.NA]
    assert consent.loc["c4"].tolist() == [True, False]  # the defaults still hold
    # A word nobody declared is still refused, and the summary says how to declare it.
    assert "c5" not in consent.index
    assert "1 x consent_email:not_a_boolean" in result.stdout
    assert "--true ja --false nein" in result.stdout


# -- a saved options file -----------------------------------------------------------------

GERMAN = (
    "\ufeffBestellung;Kunde;Datum;Betrag;Retoure\n"
    "B1;K1;2024-03-01;12,50;nein\n"
    "B2;K1;2024-03-02;-4,00;ja\n"
    "B3;K2;2024-03-03;1.000,00;NEIN\n"
)
OPTIONS = {
    "sep": ";",
    "encoding": "utf-8",
    "decimal": ",",
    "true": ["ja"],
    "false": ["nein"],
    "map": {
        "Bestellung": "order_id",
        "Kunde": "customer_id",
        "Datum": "ordered_at",
        "Betrag": "amount",
        "Retoure": "is_return",
    },
}
TOML = """\
# How this shop's export is written; pass it with --options-file.
sep = ";"
encoding = "utf-8"
decimal = ","
true = ["ja"]
false = ["nein"]

[map]
Bestellung = "order_id"
Kunde = "customer_id"
Datum = "ordered_at"
Betrag = "amount"
Retoure = "is_return"
"""
EXPECTED = [["B1", "K1", 12.5, False], ["B2", "K1", -4.0, True], ["B3", "K2", 1000.0, False]]


def _landed(home: Path) -> list[list]:
    frame = orders(home)[["order_id", "customer_id", "amount", "is_return"]]
    return [[o, c, a, bool(r)] for o, c, a, r in frame.itertuples(index=False)]


def test_a_saved_options_file_declares_the_whole_format_once(
    tmp_path: Path, settings: Settings
) -> None:
    data = tmp_path / "bestellungen.csv"
    data.write_text(GERMAN, encoding="utf-8")
    as_json = tmp_path / "ingest.json"
    as_json.write_text(json.dumps(OPTIONS))
    report = run([data], settings, kind="orders", options_file=as_json)
    assert report.kinds["orders"].accepted == 3
    assert _landed(settings.home_dir) == EXPECTED

    as_toml = tmp_path / "ingest.toml"
    as_toml.write_text(TOML)
    home = tmp_path / "cli"
    result = kizuna("ingest", str(data), "--kind=orders", f"--options-file={as_toml}", home=home)
    assert result.returncode == 0, result.stderr
    assert _landed(home) == EXPECTED


def test_flags_override_the_options_file_and_a_bad_file_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    data = tmp_path / "bestellungen.csv"
    data.write_text(GERMAN.replace("12,50", "12.50").replace(";", "|"), encoding="utf-8")
    options = tmp_path / "ingest.toml"
    options.write_text(TOML)
    # The file says ";" and ","; this delivery came with "|" and one dotted number.
    report = run([data], settings, kind="orders", options_file=options, sep="|")
    assert report.kinds["orders"].accepted == 2
    assert dict(report.kinds["orders"].rejected) == {"amount:not_a_number": 1}

    bad = tmp_path / "bad.toml"
    for text, message in [
        ("seperator = ';'\n", "unknown option(s) seperator; the options are sep,"),
        ("sep = [\n", "not valid TOML"),
        ("decimal = ';'\n", "use --decimal , for 12,50"),
        ("true = ['ja']\nfalse = ['JA']\n", "ja declared both true and false"),
        ("map = 3\n", 'expected a table of theirs = "ours" names'),
    ]:
        bad.write_text(text)
        with pytest.raises(IngestError) as caught:
            run([data], settings, kind="orders", options_file=bad)
        assert message in str(caught.value)
    assert Lake(settings).manifest().version == 1  # only the good ingest above
