"""The score book: every customer's scores from the champion models, computed in batch.

Scoring one customer per request through Feast and four models costs milliseconds; the
book instead scores every customer of the online store at once (vectorized LightGBM over
numpy-backed frames) when it is built, when a champion changes and when events arrive
for a customer, and a request reads its customers' finished records. A customer the book
does not know gets the models' scores of a brand-new customer, marked ``cold_start``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from kizuna.serving.reasons import FrameRow, top_reasons
from kizuna.settings import Settings
from kizuna.training import registry
from kizuna.training.repurchase import HORIZONS
from kizuna.training.trainer import MODEL_NAMES

log = logging.getLogger(__name__)

# The service with every feature the four models read (the others are subsets of it).
SERVICE = "offers_v1"
# What the offer rules read about a customer (eligibility, consent, margin).
PROFILE = (
    "avg_order_value",
    "order_count_lifetime",
    "loyalty_tier",
    "country",
    "rfm_segment",
    "consent_email",
    "consent_sms",
    "consent_push",
)


class ServingError(RuntimeError):
    """Serving cannot start or answer as configured; the message says what to do."""


@dataclass(frozen=True)
class Champions:
    """The champion model of each kind and its registered version."""

    models: dict[str, Any]
    versions: dict[str, str]

    @classmethod
    def load(cls, settings: Settings) -> Champions:
        """The registry's champions, set to predict with ``settings.score_threads``."""
        models, versions = {}, {}
        for name in MODEL_NAMES:
            version = registry.champion_version(settings, name)
            if version is None:
                raise ServingError(
                    f"no champion for kizuna-{name} in {settings.tracking_uri}; "
                    "run `kizuna train all` (or `make run`) first"
                )
            models[name] = registry.load(settings, name, version)
            # Trained on one thread; scoring a whole customer base uses the machine.
            models[name].n_jobs = settings.score_threads
            versions[name] = version
        return cls(models, versions)


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _new_customer(features: list[str], now: datetime) -> pd.DataFrame:
    """The feature row of a customer with no history: counts 0, the rest unknown."""
    from kizuna.features.catalog import FEATURES

    kinds = {f.name: f.type for f in FEATURES}
    row: dict[str, Any] = {}
    for name in features:
        kind = kinds.get(name)
        if kind == "int" or name.startswith(("order_count", "spend_", "sessions", "page_views")):
            row[name] = 0
        elif kind == "bool" or kind == "string":
            row[name] = None
        else:
            row[name] = np.nan
    row["tenure_days"] = 0.0
    row["consent_profiling"] = True
    frame = pd.DataFrame([row])
    frame["customer_id"] = "__new__"
    frame["event_timestamp"] = pd.Timestamp(now)
    return frame


def score_frame(models: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """Every model's outputs for every row of ``frame`` (one customer each), vectorized:
    the columns of the score book and of ``kizuna score``'s file."""
    churn = models["churn"].predict(frame)
    timing = models["repurchase"].predict(frame)
    value = models["value"].predict(frame)
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "features_at": pd.to_datetime(frame["event_timestamp"], utc=True),
            "churn_probability": churn["churn_probability"].to_numpy(),
            "risk_band": churn["risk_band"].to_numpy(),
            "value_12m": value["predicted_value"].to_numpy(),
            "rfm_segment": frame["rfm_segment"].to_numpy(),
            "consent_profiling": frame["consent_profiling"].to_numpy(),
        }
    )
    for column in timing.columns:
        out[column] = timing[column].to_numpy()
    out["value_at_risk"] = out["churn_probability"] * out["value_12m"]
    expected = pd.to_timedelta(out["expected_days_to_next_purchase"], unit="D")
    out["expected_next_purchase_at"] = out["features_at"] + expected
    for channel in ("email", "sms", "push"):
        out[f"consent_{channel}"] = frame[f"consent_{channel}"].to_numpy()
    out["days_since_last_contact"] = frame["days_since_last_contact"].to_numpy()
    offers = models["offers"]
    for channel in ("email", "sms", "push"):
        mine = [o for o in offers.offers_ if offers.offer_channels_.get(o) == channel]
        if not mine:
            continue
        predicted = offers.predict(frame.assign(channel=channel), offers=mine)
        out[f"p_buy_control_{channel}"] = predicted["p_buy_control"].to_numpy()
        for offer in mine:
            out[f"uplift_{offer}"] = predicted[f"uplift_{offer}"].to_numpy()
            out[f"p_buy_{offer}"] = predicted[f"p_buy_{offer}"].to_numpy()
    for column in PROFILE:
        out[f"profile_{column}"] = frame[column].to_numpy()
    return out


class ScoreBook:
    """Scores of every customer in ``features``, ready to serve.

    Args:
        champions: the models and their versions.
        features: one row per customer: ``customer_id``, ``event_timestamp`` (when the
            features were computed) and every feature of ``offers_v1``.
        now: the moment the book was built (freshness is measured from it).
    """

    def __init__(self, champions: Champions, features: pd.DataFrame, now: datetime) -> None:
        started = time.perf_counter()
        self.champions = champions
        self.built_at = now
        frame = features.reset_index(drop=True)
        self.table = self._score(frame)
        self.records = {
            r["customer_id"]: r for r in (self._record(row) for row in self._rows(frame))
        }
        cold = _new_customer(list(features.columns.drop(["customer_id", "event_timestamp"])), now)
        cold_table = self._score(cold)
        self.cold_start = self._record(next(self._rows(cold, cold_table)))
        self.cold_start["cold_start"] = True
        self._json: dict[str, bytes] = {}
        self._cold_offer = self._offer_row(self._offer_columns(cold_table), 0)
        self._lookup = self._lookup_of(self.table)
        self.mean_order_value = float(np.nanmean(self.table["profile_avg_order_value"]))
        self.seconds = time.perf_counter() - started
        log.info("scored %d customers in %.2f s", len(self.records), self.seconds)

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        table = score_frame(self.champions.models, frame)
        self._contributions = self.champions.models["churn"].contributions(frame)
        return table

    def _rows(self, frame: pd.DataFrame, table: pd.DataFrame | None = None):
        """(feature row, score row, reasons) per customer, without per-row pandas work."""
        table = self.table if table is None else table
        contributions = self._contributions
        names = list(contributions.columns)
        values = contributions.to_numpy()
        columns = {c: frame[c].to_numpy() for c in frame.columns}
        scores = table.to_dict("records")
        for i, score in enumerate(scores):
            row = FrameRow(columns, i)
            yield row, score, top_reasons(names, values[i], row)

    def _record(self, parts) -> dict[str, Any]:
        _, score, reasons = parts
        profiling = score["consent_profiling"]
        record: dict[str, Any] = {
            "customer_id": score["customer_id"],
            "cold_start": False,
            "scored": profiling is not False,
        }
        if not record["scored"]:
            record["reason"] = "the customer opted out of profiling: no scores"
            return record
        at = score["features_at"].to_pydatetime()
        expected_at = score["expected_next_purchase_at"]
        record.update(
            {
                "churn": {
                    "probability": _clean(score["churn_probability"]),
                    "band": score["risk_band"],
                },
                "repurchase": {
                    **{f"p_buy_{h}d": _clean(score[f"p_buy_{h}d"]) for h in HORIZONS},
                    "expected_days": _clean(score["expected_days_to_next_purchase"]),
                    "expected_date": None
                    if pd.isna(expected_at)
                    else expected_at.date().isoformat(),
                },
                "value_12m": _clean(score["value_12m"]),
                "value_at_risk": _clean(score["value_at_risk"]),
                "rfm_segment": _clean(score["rfm_segment"]),
                "reasons": reasons,
                "model_versions": dict(self.champions.versions),
                "features_as_of": at.isoformat(),
                "feature_age_hours": round((self.built_at - at) / timedelta(hours=1), 2),
            }
        )
        return record

    def update(self, features: pd.DataFrame, now: datetime) -> None:
        """Rescore some customers (after their events) and swap their records in."""
        frame = features.reset_index(drop=True)
        self.built_at = max(self.built_at, now)
        table = self._score(frame)
        records = {
            r["customer_id"]: r for r in (self._record(row) for row in self._rows(frame, table))
        }
        kept = self.table[~self.table["customer_id"].isin(set(table["customer_id"]))]
        merged = pd.concat([kept, table], ignore_index=True)
        lookup = self._lookup_of(merged)
        # Readers see the old or the new table and lookup, never a half-built one.
        self.table, self._lookup = merged, lookup
        self.records.update(records)
        for customer_id in records:
            self._json.pop(customer_id, None)

    @staticmethod
    def _offer_columns(table: pd.DataFrame) -> dict[str, np.ndarray]:
        """The offer model's outputs and the rule inputs as arrays, read per decision."""
        prefixes = ("uplift_", "p_buy_", "profile_")
        return {c: table[c].to_numpy() for c in table.columns if c.startswith(prefixes)}

    @classmethod
    def _lookup_of(cls, table: pd.DataFrame) -> tuple[dict[str, int], dict[str, np.ndarray]]:
        """Customer -> row, and the offer columns: one value, so the two always match."""
        index = {c: i for i, c in enumerate(table["customer_id"])}
        return index, cls._offer_columns(table)

    @staticmethod
    def _offer_row(columns: dict[str, np.ndarray], i: int) -> tuple[dict, dict]:
        outputs, profile = {}, {}
        for name, values in columns.items():
            if name.startswith("profile_"):
                profile[name.removeprefix("profile_")] = _clean(values[i])
            else:
                outputs[name] = _clean(values[i])
        return outputs, profile

    def offer_inputs(self, customer_id: str) -> tuple[dict, dict]:
        """The offer model's outputs and the rule inputs of one customer (cold start when
        unknown): ``uplift_<offer>``, ``p_buy_<offer>``, ``p_buy_control_<channel>``."""
        index, columns = self._lookup  # one read: index and arrays always match
        i = index.get(customer_id)
        outputs, profile = self._cold_offer if i is None else self._offer_row(columns, i)
        outputs = {**outputs, "mean_order_value": self.mean_order_value}
        return outputs, profile

    def score_json(self, customer_id: str) -> bytes:
        """:meth:`score` as JSON bytes, serialized once per record and cached."""
        cached = self._json.get(customer_id)
        if cached is None:
            cached = json.dumps(self.score(customer_id), separators=(",", ":")).encode()
            if customer_id in self.records:
                self._json[customer_id] = cached
        return cached

    def score(self, customer_id: str) -> dict[str, Any]:
        """The record of one customer; the cold-start record when unknown."""
        found = self.records.get(customer_id)
        if found is not None:
            return found
        return {**self.cold_start, "customer_id": customer_id}

    def __len__(self) -> int:
        return len(self.records)


def latest_vectors(settings: Settings, at: datetime | None = None) -> pd.DataFrame:
    """Every customer's latest feature vector, read in bulk in DuckDB.

    The same rows the online store holds: per view, each customer's row of the latest
    snapshot at or before ``at`` (default now) — what ``materialize`` loaded — or a later
    row of the real-time push log (``features/pushed/<view>/``). One row per customer with
    ``event_timestamp`` = the oldest of its views' times. Reading Feast's SQLite store
    value by value costs about 2 ms per customer; this costs seconds for a million.
    """
    import duckdb

    from kizuna.features.catalog import VIEWS
    from kizuna.features.compute import snapshots_dir

    at = at or datetime.now(UTC)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    root = snapshots_dir(settings)
    parts = []
    for n, view in enumerate(VIEWS):
        files = [str(root / f"{view}.parquet")]
        pushed = settings.home_dir / "features" / "pushed" / view
        if pushed.exists() and any(pushed.glob("*.parquet")):
            files.append(str(pushed / "*.parquet"))
        if not (root / f"{view}.parquet").exists():
            raise ServingError(f"no feature snapshots in {root}; run `make run` first")
        parts.append(
            f"""v{n} AS (SELECT * EXCLUDE (rank) FROM (
                    SELECT *, row_number() OVER (PARTITION BY customer_id
                                                 ORDER BY event_timestamp DESC) AS rank
                    FROM read_parquet({files}, union_by_name = true)
                    WHERE event_timestamp <= $at) WHERE rank = 1)"""
        )
    joined = " ".join(f"JOIN v{n} USING (customer_id)" for n in range(1, len(VIEWS)))
    stamps = ", ".join(f"v{n}.event_timestamp" for n in range(len(VIEWS)))
    frame = con.execute(
        f"WITH {', '.join(parts)} SELECT least({stamps}) AS oldest, * "
        f"FROM v0 {joined} ORDER BY customer_id",
        {"at": at},
    ).df()
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("event_timestamp")])
    frame = frame.rename(columns={"oldest": "event_timestamp"})
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    # The on-demand feature, as Feast's request_time_features computes it at request time.
    since = (at.timestamp() - frame["last_order_epoch"].astype(float)) / 86_400.0
    frame["days_since_last_order_now"] = np.where(
        frame["last_order_epoch"].isna(), frame["days_since_last_order"], since.clip(lower=0)
    )
    return frame


def online_frame(settings: Settings, customer_ids: list[str]) -> pd.DataFrame:
    """The online store's ``offers_v1`` vectors of ``customer_ids``, one row each, with
    ``event_timestamp``: when the oldest of the customer's feature views was computed."""
    import warnings

    from kizuna.features.store import REQUEST_TIME, open_store

    store = open_store(settings)
    moment = datetime.now(UTC).timestamp()
    rows = [{"customer_id": c, REQUEST_TIME: moment} for c in customer_ids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = store.get_online_features(
            features=store.get_feature_service(SERVICE), entity_rows=rows
        )
        frame = response.to_df(include_event_timestamps=True)
    stamps = [c for c in frame.columns if c.endswith("__ts")]
    seconds = frame[stamps].replace(0, np.nan).min(axis=1)
    frame = frame.drop(columns=[*stamps, REQUEST_TIME], errors="ignore")
    frame["event_timestamp"] = pd.to_datetime(seconds, unit="s", utc=True)
    return frame
