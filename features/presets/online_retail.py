"""UCI Online Retail and Online Retail II: invoice lines rolled up into orders.

Both releases' column names are read. Each line is checked on its own first: a line
without a customer id cannot be attributed and is quarantined with the reason
``customer_id:missing``. Accepted lines become ``order_lines`` (numbered in file order
within their invoice); invoices become ``orders`` (amount = sum of quantity x price,
rounded to cents); invoices starting with ``C`` are cancellations and become returns
(negative amount, ``is_return``); customers are derived with their most frequent country.
Ids are namespaced (``oretail-<invoice>``, ``oretail-<customer id>``), so the data can
share a lake with other sources and the two releases' overlapping month deduplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import duckdb
import pandas as pd

from kizuna.features.contracts import Column, Contract
from kizuna.features.presets import Preset
from kizuna.features.sources import ReadOptions
from kizuna.settings import Settings

# Release II names first, the original release's second.
ALIASES = {
    "order_id": ("Invoice", "InvoiceNo"),
    "product_id": ("StockCode",),
    "quantity": ("Quantity",),
    "ordered_at": ("InvoiceDate",),
    "unit_price": ("Price", "UnitPrice"),
    "customer_id": ("Customer ID", "CustomerID"),
    "country": ("Country",),
}

# One invoice line with its invoice's fields, validated before the roll-up.
RETAIL_LINE = Contract(
    kind="online_retail_line",
    description="An Online Retail invoice line with its invoice's fields.",
    key=("order_id", "line_number"),
    partition_by=None,
    columns=(
        Column("order_id", "string", True, "Invoice number; a leading C marks a cancellation."),
        Column("line_number", "int", True, "Position within the invoice.", minimum=1),
        Column("product_id", "string", True, "StockCode."),
        Column("quantity", "float", True, "Units; negative on cancellations."),
        Column("unit_price", "float", True, "Price per unit.", minimum=0),
        Column("customer_id", "string", True, "Customer ID."),
        Column("ordered_at", "timestamp", True, "InvoiceDate, UK local time.", not_in_future=True),
        Column("country", "string", False, "Country."),
    ),
)


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


class OnlineRetail(Preset):
    name = "online-retail"
    description = (
        "UCI Online Retail / Online Retail II invoice lines; orders + order_lines + customers, "
        "cancellations as returns."
    )
    example = (
        "kizuna ingest --preset online-retail "
        "../shared/data/online-retail-ii/online_retail_II_2009-12_2010-12.csv.gz"
    )
    quarantine_kind = "order_lines"
    contracts: ClassVar[dict[str, Contract]] = {"online_retail_line": RETAIL_LINE}

    def read_options(self, path: Path) -> ReadOptions:
        return ReadOptions(sep=",", encoding="utf-8")

    def check_columns(self, columns: list[str]) -> str | None:
        missing = [ours for ours, theirs in ALIASES.items() if _pick(columns, theirs) is None]
        if missing:
            wanted = ", ".join(ALIASES[m][0] for m in missing)
            return f"expected Online Retail columns, missing {wanted}"
        return None

    def map_chunk(
        self, raw: pd.DataFrame, state: dict, settings: Settings
    ) -> dict[str, pd.DataFrame]:
        cols = list(raw.columns)
        lines = pd.DataFrame(
            {ours: raw[_pick(cols, theirs)] for ours, theirs in ALIASES.items()}, index=raw.index
        )
        # Excel exports write ids as 12345.0; the id is the integer part.
        customer = lines["customer_id"].str.strip().str.replace(r"\.0$", "", regex=True)
        lines["customer_id"] = ("oretail-" + customer).where(customer != "", "")
        lines["order_id"] = "oretail-" + lines["order_id"].str.strip()
        counts: dict[str, int] = state.setdefault("line_counts", {})
        order = lines["order_id"].str.strip()
        position = (
            order.groupby(order, sort=False).cumcount()
            + 1
            + order.map(counts).fillna(0).astype(int)
        )
        counts.update(
            pd.Series(position.to_numpy(), index=order.to_numpy()).groupby(level=0).max().to_dict()
        )
        lines["line_number"] = position.astype(str)
        lines["_source_row"] = raw.index
        return {"online_retail_line": lines}

    def derive(
        self, con: duckdb.DuckDBPyConnection, staged: Path, stager, reports, ingestor
    ) -> None:
        src = f"read_parquet('{staged / 'online_retail_line'}/*.parquet')"
        if not (staged / "online_retail_line").exists():
            return
        orders = con.execute(
            f"""SELECT order_id, any_value(customer_id) AS customer_id,
                       min(ordered_at) AS ordered_at,
                       round(sum(quantity * unit_price), 2) AS amount,
                       0.0 AS discount_amount,
                       starts_with(order_id, 'oretail-C') AS is_return
                FROM {src} GROUP BY order_id"""
        ).df()
        lines = con.execute(
            f"SELECT order_id, line_number, product_id, quantity, unit_price FROM {src}"
        ).df()
        customers = con.execute(
            f"""SELECT customer_id, mode(country) AS country FROM {src}
                WHERE customer_id IS NOT NULL GROUP BY customer_id"""
        ).df()
        self.stage_derived("customers", customers, stager, reports, ingestor)
        self.stage_derived("orders", orders, stager, reports, ingestor)
        self.stage_derived("order_lines", lines, stager, reports, ingestor)
