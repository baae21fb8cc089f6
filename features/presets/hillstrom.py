"""Kevin Hillstrom's MineThatData e-mail test (2008): a randomized three-arm campaign.

Each of the 64,000 rows becomes a customer ``hillstrom-<row>`` (covariates kept as
``attr_*``) and an exposure: the Mens or Womens e-mail, or the control group (no
``offer_id``), each assigned with probability 1/3. The file has no dates: the campaign
is dated 2008-03-01 and its outcomes, observed over the two weeks after the send, are
dated seven days later — a visit as a ``session`` event, a conversion as an order of
``spend`` — so any outcome window of 7 to 14 days counts them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from kizuna.features.presets import Preset
from kizuna.features.sources import ReadOptions
from kizuna.settings import Settings

SENT_AT = "2008-03-01T00:00:00Z"
OUTCOME_AT = "2008-03-08T00:00:00Z"
VISIT_AT = "2008-03-07T23:00:00Z"
ARMS = {
    "Mens E-Mail": "hillstrom-mens-email",
    "Womens E-Mail": "hillstrom-womens-email",
    "No E-Mail": None,
}
COVARIATES = (
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
)
NEEDED = {*COVARIATES, "segment", "visit", "conversion", "spend"}


class Hillstrom(Preset):
    name = "hillstrom"
    description = "Hillstrom e-mail test: customers, offers, exposures (with control), outcomes."
    example = (
        "kizuna ingest --preset hillstrom ../shared/data/hillstrom/"
        "Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv.gz"
    )
    quarantine_kind = "exposures"

    def read_options(self, path: Path) -> ReadOptions:
        return ReadOptions(sep=",", encoding="utf-8")

    def check_columns(self, columns: list[str]) -> str | None:
        missing = NEEDED - set(columns)
        if missing:
            return f"expected Hillstrom columns, missing {', '.join(sorted(missing))}"
        return None

    def map_chunk(
        self, raw: pd.DataFrame, state: dict, settings: Settings
    ) -> dict[str, pd.DataFrame]:
        row = pd.Series(raw.index.astype(str), index=raw.index)
        customer = "hillstrom-" + row
        arm = raw["segment"].str.strip()
        offer = arm.map(ARMS)
        unknown_arm = ~arm.isin(list(ARMS))
        customers = pd.DataFrame(
            {"customer_id": customer, "consent_email": "true", "_source_row": raw.index},
            index=raw.index,
        )
        for name in COVARIATES:
            customers[f"attr_{name}"] = raw[name]
        exposures = pd.DataFrame(
            {
                "exposure_id": "hillstrom-x-" + row,
                "customer_id": customer,
                "offer_id": offer,
                "sent_at": SENT_AT,
                "channel": "email",
                "propensity": "0.3333333333333333",
                "_source_row": raw.index,
            },
            index=raw.index,
        )
        exposures.loc[unknown_arm, "sent_at"] = ""
        converted = raw["conversion"].str.strip() == "1"
        visited = raw["visit"].str.strip() == "1"
        orders = pd.DataFrame(
            {
                "order_id": "hillstrom-o-" + row[converted],
                "customer_id": customer[converted],
                "ordered_at": OUTCOME_AT,
                "amount": raw.loc[converted, "spend"],
                "_source_row": raw.index[converted],
            },
            index=raw.index[converted],
        )
        events = pd.DataFrame(
            {
                "event_id": "hillstrom-v-" + row[visited],
                "customer_id": customer[visited],
                "occurred_at": VISIT_AT,
                "type": "session",
                "_source_row": raw.index[visited],
            },
            index=raw.index[visited],
        )
        rejected = pd.Series("segment:not_allowed", index=raw.index[unknown_arm])
        return {
            "customers": customers,
            "exposures": exposures[~unknown_arm],
            "orders": orders,
            "events": events,
            "_rejected": rejected,
        }

    def derive(
        self, con: duckdb.DuckDBPyConnection, staged: Path, stager, reports, ingestor
    ) -> None:
        offers = pd.DataFrame(
            {
                "offer_id": [o for o in ARMS.values() if o],
                "kind": "content",
                "value": 0.0,
                "cost": 0.0,
                "channel": "email",
                "valid_from": SENT_AT,
                "valid_to": SENT_AT,
            }
        )
        self.stage_derived("offers", offers, stager, reports, ingestor)
