"""CDNOW transaction logs (Fader & Hardie): one row per customer-day purchase.

Two layouts are read: the master file (header ``customer_id date number_of_cds
dollar_value``) and the 1/10 sample (no header: ``master_id sample_id date cds dollars``).
Customers are ``cdnow-<id>`` (leading zeros dropped), so CDNOW can share a lake with other
data. Each row becomes an order ``cdnow-<id>-<YYYYMMDD>-<n>`` (n counts same-day rows);
customers are derived with their first purchase as ``signup_at``, since the cohort is
defined by its first purchase in Q1 1997.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from kizuna.features.presets import Preset
from kizuna.features.sources import ReadOptions
from kizuna.settings import Settings

SAMPLE_NAMES = ["customer_id", "sample_id", "date", "number_of_cds", "dollar_value"]
NEEDED = {"customer_id", "date", "dollar_value"}


class Cdnow(Preset):
    name = "cdnow"
    description = "CDNOW transaction log (master file or the 1/10 sample); orders + customers."
    example = "kizuna ingest --preset cdnow ../shared/data/cdnow/CDNOW_master.txt"
    quarantine_kind = "orders"

    def read_options(self, path: Path) -> ReadOptions:
        with open(path, encoding="ascii", errors="replace") as fh:
            first = fh.readline().split()
        has_header = bool(first) and not first[0].isdigit()
        names = (
            None
            if has_header
            else (SAMPLE_NAMES if len(first) == 5 else SAMPLE_NAMES[:1] + SAMPLE_NAMES[2:])
        )
        return ReadOptions(whitespace=True, names=names, encoding="ascii")

    def check_columns(self, columns: list[str]) -> str | None:
        missing = NEEDED - set(columns)
        if missing:
            wanted, absent = ", ".join(sorted(NEEDED)), ", ".join(sorted(missing))
            return f"expected CDNOW columns {wanted}, missing {absent}"
        return None

    def map_chunk(
        self, raw: pd.DataFrame, state: dict, settings: Settings
    ) -> dict[str, pd.DataFrame]:
        customer = "cdnow-" + raw["customer_id"].str.strip().str.lstrip("0").replace("", "0")
        day = raw["date"].str.strip()
        key = customer + "-" + day
        seen: dict[str, int] = state.setdefault("same_day", {})
        position = key.groupby(key, sort=False).cumcount() + 1 + key.map(seen).fillna(0).astype(int)
        seen.update(
            pd.Series(position.to_numpy(), index=key.to_numpy()).groupby(level=0).max().to_dict()
        )
        orders = pd.DataFrame(
            {
                "order_id": key + "-" + position.astype(str),
                "customer_id": customer,
                # A purchase day, not a time: noon UTC keeps it on the same date everywhere.
                "ordered_at": pd.to_datetime(day, format="%Y%m%d", errors="coerce").dt.strftime(
                    "%Y-%m-%dT12:00:00Z"
                ),
                "amount": raw["dollar_value"],
                "_source_row": raw.index,
            },
            index=raw.index,
        )
        bad_day = orders["ordered_at"].isna() & day.ne("")
        orders.loc[bad_day, "ordered_at"] = day[bad_day]  # let validation name the bad value
        return {"orders": orders}

    def derive(
        self, con: duckdb.DuckDBPyConnection, staged: Path, stager, reports, ingestor
    ) -> None:
        customers = con.execute(
            f"SELECT customer_id, min(ordered_at) AS signup_at "
            f"FROM read_parquet('{staged / 'orders'}/*.parquet') GROUP BY customer_id"
        ).df()
        self.stage_derived("customers", customers, stager, reports, ingestor)
