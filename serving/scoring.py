"""The score book: every customer's scores from the champion models, computed in batch.

Scoring one customer per request through Feast and four models costs milliseconds; the
book instead scores every customer of the online store at once (vectorized LightGBM over
numpy-backed frames) when it is built, when a champion changes and when events arrive
for a customer, and a request reads its customers' finished records. It scores with the
champions that exist and says which are missing. A customer the lake knows but without a
feature vector yet gets the models' scores of a brand-new customer, marked ``cold_start``;
an id Kizuna has never seen gets no made-up score.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import ChainMap
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.serving.reasons import FrameRow, top_reasons
from kizuna.settings import Settings
from kizuna.training import registry
from kizuna.training.models import MODEL_NAMES, SPECS, resolve
from kizuna.training.repurchase import HORIZON_DAYS, HORIZONS

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
_CONSENTS = ("consent_email", "consent_sms", "consent_push")
# What the marketer lists filter, sort and explain by, beside the scores.
LIST_FACTS = ("days_since_last_order", "spend_lifetime", "tenure_days", "top_category")

# The score book's timing moments -> the days after the features' time they are, and the
# record's dates of them (the median is the expected next purchase).
_TIMING_AT = {
    "expected_next_purchase_p25_at": "p25_days_to_next_purchase",
    "expected_next_purchase_at": "median_days_to_next_purchase",
    "expected_next_purchase_p75_at": "p75_days_to_next_purchase",
}
_TIMING_DATES = {
    "expected_date_p25": "expected_next_purchase_p25_at",
    "expected_date": "expected_next_purchase_at",
    "expected_date_p75": "expected_next_purchase_p75_at",
}


class ServingError(RuntimeError):
    """Serving cannot start or answer as configured; the message says what to do."""


class MissingModelError(ServingError):
    """An answer needs a model that has no champion being served.

    Args:
        missing: the absent models this answer needs, each with why it is absent and
            what to do.
        needed_by: what needs them, e.g. "the at-risk list".
    """

    def __init__(self, missing: dict[str, str], needed_by: str) -> None:
        self.missing = missing
        super().__init__(f"{needed_by} needs {', '.join(missing)}: " + "; ".join(missing.values()))


class UnknownCustomerError(ServingError, KeyError):
    """Kizuna has never seen this customer: no customer row, order or event."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(
            f"unknown customer {customer_id!r}: ingest the customer or send an event "
            "for them (POST /v1/events) first"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclass(frozen=True)
class Champions:
    """The champion model of each kind that could be loaded, and why the others are absent.

    ``versions`` holds the loaded ones; ``missing`` the reason and remedy of every other
    model; ``registry`` the champion versions the registry named at load time (None where
    there was none), which the champion watcher compares with the registry's."""

    models: dict[str, Any]
    versions: dict[str, str]
    missing: dict[str, str]
    registry: dict[str, str | None]

    @classmethod
    def load(cls, settings: Settings) -> Champions:
        """The registry's champions, set to predict with ``settings.score_threads``.

        Serves whichever champions exist; raises :class:`ServingError` only when there
        is none at all."""
        models, versions, missing, seen = {}, {}, {}, {}
        for name in MODEL_NAMES:
            version = seen[name] = registry.champion_version(settings, name)
            if version is None:
                missing[name] = f"no champion registered for kizuna-{name}: {SPECS[name].to_train}"
                continue
            try:
                models[name] = registry.load(settings, name, version)
            except Exception as exc:  # a broken version must not take the others down
                log.exception("could not load kizuna-%s version %s", name, version)
                missing[name] = (
                    f"the champion kizuna-{name} version {version} could not be loaded "
                    f"({type(exc).__name__}: {exc}): {SPECS[name].to_train} or roll back with "
                    f"`kizuna models rollback {name}`"
                )
                continue
            # Trained on one thread; scoring a whole customer base uses the machine.
            models[name].n_jobs = settings.score_threads
            versions[name] = version
        if not models:
            raise ServingError(
                f"no champion model in {settings.tracking_uri} ("
                + "; ".join(missing.values())
                + "); run `kizuna train all` (or `make run`) first"
            )
        for reason in missing.values():
            log.warning("serving without a model: %s", reason)
        return cls(models, versions, missing, seen)

    def require(self, names: tuple[str, ...], needed_by: str) -> None:
        """Raise :class:`MissingModelError` when any of ``names`` is not served."""
        absent = {n: self.missing[n] for n in names if n not in self.models}
        if absent:
            raise MissingModelError(absent, needed_by)

    def missing_models(self) -> list[dict[str, str]]:
        """The absent models as the API lists them: model, registered model, reason."""
        return [
            {"model": name, "registered_model": f"kizuna-{name}", "reason": reason}
            for name, reason in self.missing.items()
        ]


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, times to UTC Timestamps, NaN and NaT to None."""
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value, tz=UTC)
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


def _arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each column as a numpy array without copying; times as UTC ``datetime64`` (a
    time zone would turn them into one Python object per row)."""
    out = {}
    for name, column in frame.items():
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            column = column.dt.tz_convert(None)
        out[name] = column.to_numpy()
    return out


def score_frame(models: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """Every served model's outputs for every row of ``frame`` (one customer each),
    vectorized: the columns of the score book and of ``kizuna score``'s file. An absent
    model's columns are absent (``value_at_risk`` needs both churn and value)."""
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "features_at": pd.to_datetime(frame["event_timestamp"], utc=True),
            "rfm_segment": frame["rfm_segment"].to_numpy(),
            "consent_profiling": frame["consent_profiling"].to_numpy(),
        }
    )
    for name, model in sorted(models.items(), key=lambda item: MODEL_NAMES.index(item[0])):
        resolve(SPECS[name].book_columns)(model, frame, out)
    if {"churn_probability", "value_predicted"} <= set(out.columns):
        out["value_at_risk"] = out["churn_probability"] * out["value_predicted"]
    for channel in CONSENT_CHANNELS:
        out[f"consent_{channel}"] = frame[f"consent_{channel}"].to_numpy()
    out["days_since_last_contact"] = frame["days_since_last_contact"].to_numpy()
    for column in PROFILE:
        out[f"profile_{column}"] = frame[column].to_numpy()
    for column in LIST_FACTS:
        out[column] = frame[column].to_numpy()
    out["loyalty_tier"] = out["profile_loyalty_tier"]
    out["country"] = out["profile_country"]
    return out


# What a row of an opted-out customer keeps in an export: who, when, the consent flags
# and the loyalty programme's own tier and country (facts the retailer gave, not profiling).
UNSCORED_KEEPS = ("customer_id", "features_at", "loyalty_tier", "country", "scored")


def withhold_opted_out(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``scored`` column, and for every customer who opted out of profiling
    every score, segment, offer and behavioural fact emptied (docs/data.md: such a customer
    is never scored). The rows stay, so a CRM sync still sees the customer and knows not
    to target them."""
    allowed = table["consent_profiling"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    out = table.assign(scored=allowed)
    if allowed.all():
        return out
    blocked = ~allowed
    for column in out.columns:
        if column in UNSCORED_KEEPS or column.startswith("consent_"):
            continue
        values = out[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
            values = values.astype(object if values.dtype == bool else "Int64")
        elif not (
            pd.api.types.is_float_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)
        ):
            values = values.astype(object)
        out[column] = values.mask(blocked)
    return out


# -- each model's columns in the score book and its block of a customer's record ----------
# (named by its spec's ``book_columns`` and ``record_block``)
def churn_columns(model: Any, frame: pd.DataFrame, out: pd.DataFrame) -> None:
    churn = model.predict(frame)
    out["churn_probability"] = churn["churn_probability"].to_numpy()
    out["risk_band"] = churn["risk_band"].to_numpy()


def value_columns(model: Any, frame: pd.DataFrame, out: pd.DataFrame) -> None:
    out["value_predicted"] = model.predict(frame)["predicted_value"].to_numpy()
    # The value label's window: 365 days unless the history was too short for it.
    out["value_window_days"] = int(model.value_days)


def repurchase_columns(model: Any, frame: pd.DataFrame, out: pd.DataFrame) -> None:
    timing = model.predict(frame)
    for column in timing.columns:
        values = timing[column]
        # A nullable flag (overdue) as True / False / None: the records are JSON.
        nullable = isinstance(values.dtype, pd.BooleanDtype)
        out[column] = values.to_numpy(object, na_value=None) if nullable else values.to_numpy()
    # The median day and the P25-P75 range as moments; NaT beyond the model's horizon.
    for at, days in _TIMING_AT.items():
        out[at] = out["features_at"] + pd.to_timedelta(out[days], unit="D")


def churn_block(score: Mapping[str, Any]) -> dict[str, Any]:
    return {"probability": score["churn_probability"], "band": score["risk_band"]}


def repurchase_block(score: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **{f"p_buy_{h}d": score[f"p_buy_{h}d"] for h in HORIZONS},
        "median_days": score["median_days_to_next_purchase"],
        **{
            key: None if score[at] is None else score[at].date().isoformat()
            for key, at in _TIMING_DATES.items()
        },
        "unlikely_within_days": HORIZON_DAYS if score["buy_unlikely_within_horizon"] else None,
        "overdue": score["overdue"],
    }


def value_block(score: Mapping[str, Any]) -> dict[str, Any]:
    return {"predicted": score["value_predicted"], "window_days": score["value_window_days"]}


def offer_columns(offers: Any, frame: pd.DataFrame, out: pd.DataFrame) -> None:
    """Add the offer model's columns to ``out``: per channel P(buy | no offer), and per
    offer of the channel its uplift and P(buy | offer)."""
    for channel in CONSENT_CHANNELS:
        mine = [o for o in offers.offers_ if offers.offer_channels_.get(o) == channel]
        if not mine:
            continue
        predicted = offers.predict(frame.assign(channel=channel), offers=mine)
        out[f"p_buy_control_{channel}"] = predicted["p_buy_control"].to_numpy()
        for offer in mine:
            out[f"uplift_{offer}"] = predicted[f"uplift_{offer}"].to_numpy()
            out[f"p_buy_{offer}"] = predicted[f"p_buy_{offer}"].to_numpy()


@dataclass(frozen=True)
class _BookRows:
    """One version of the book's customers: their scores, features and churn inputs, row
    by row. An update builds a new one and swaps it in whole, so a reader holding one
    never sees a half-merged book. ``reasons`` and ``json`` fill in as they are asked for
    (or by :meth:`ScoreBook.fill_reasons`); writing them into a replaced version is
    harmless."""

    table: pd.DataFrame
    features: pd.DataFrame
    index: dict[str, int]
    scores: dict[str, np.ndarray]
    feature_values: dict[str, np.ndarray]
    churn_matrix: np.ndarray
    reasons: list[list[str] | None]
    json: dict[str, bytes]

    @classmethod
    def of(cls, features: pd.DataFrame, table: pd.DataFrame, churn: Any) -> _BookRows:
        """``features`` and their scores ``table`` (one customer per row), unexplained
        (``churn`` None: no churn model, so no reasons to explain)."""
        matrix = np.empty((len(features), 0)) if churn is None else churn.matrix(features)
        return cls._derived(table, features, matrix, [None] * len(table), {})

    @classmethod
    def _derived(cls, table, features, churn_matrix, reasons, json) -> _BookRows:
        """The rows with their index and column arrays derived from the frames."""
        return cls(
            table=table,
            features=features,
            index={c: i for i, c in enumerate(table["customer_id"])},
            scores=_arrays(table),
            feature_values=_arrays(features),
            churn_matrix=churn_matrix,
            reasons=reasons,
            json=json,
        )

    def merged(self, new: _BookRows) -> _BookRows:
        """These rows with ``new``'s customers replaced or added (reasons and JSON of the
        untouched customers carried over)."""
        kept = ~self.table["customer_id"].isin(list(new.index)).to_numpy()
        positions = np.flatnonzero(kept)
        return self._derived(
            pd.concat([self.table.iloc[positions], new.table], ignore_index=True),
            pd.concat([self.features.iloc[positions], new.features], ignore_index=True),
            np.concatenate([self.churn_matrix[positions], new.churn_matrix]),
            [self.reasons[i] for i in positions] + list(new.reasons),
            # dict() copies in one step: requests may add to self.json meanwhile.
            {c: b for c, b in dict(self.json).items() if c not in new.index},
        )

    def without(self, customer_ids: set[str]) -> _BookRows:
        """These rows less ``customer_ids`` (an erasure)."""
        kept = ~self.table["customer_id"].isin(list(customer_ids)).to_numpy()
        positions = np.flatnonzero(kept)
        return self._derived(
            self.table.iloc[positions].reset_index(drop=True),
            self.features.iloc[positions].reset_index(drop=True),
            self.churn_matrix[positions],
            [self.reasons[i] for i in positions],
            {c: b for c, b in dict(self.json).items() if c not in customer_ids},
        )

    def explain(self, rows: list[int], churn: Any) -> None:
        """Fill in the reasons of ``rows`` (one SHAP pass of the churn model over them;
        none without a churn model)."""
        if not rows:
            return
        if churn is None:
            for i in rows:
                self.reasons[i] = []
            return
        values = churn.contribution_values(self.churn_matrix[rows])
        names = churn.features_
        for k, i in enumerate(rows):
            self.reasons[i] = top_reasons(names, values[k], FrameRow(self.feature_values, i))


class ScoreBook:
    """Scores of every customer in ``features``, ready to serve.

    The four models score every customer in one vectorized pass when the book is built; a
    request reads its customers' rows, and a customer's record (the JSON a request returns)
    is assembled on first request and kept. The reasons cost a SHAP pass of the churn
    model (about 0.4 ms per customer on two cores, several times the scores), so the book
    does not wait for them: :meth:`fill_reasons` works through every customer in chunks
    (the API runs it in the background once it is ready), and a customer asked for before
    their turn gets theirs on the spot (about 1 ms).

    :meth:`update` rescores the customers of an event batch into a small layer read before
    the base rows, so it costs what the batch costs, not what the book holds; the layer is
    folded into the base once it holds more than :data:`FOLD_SHARE` of it.

    Only the served champions score: an absent model's block of a record is None (see
    :class:`Champions`). A customer with no order yet is marked ``cold_start``; one the lake
    knows without a feature vector gets the scores of a brand-new customer (also
    ``cold_start``); any other id raises :class:`UnknownCustomerError`.

    Args:
        champions: the models and their versions.
        features: one row per customer: ``customer_id``, ``event_timestamp`` (when the
            features were computed) and every feature of ``offers_v1``.
        now: the moment the book was built (freshness is measured from it).
        without_vectors: customers the lake knows (a customer row, an order or an event)
            who have no feature vector yet (:func:`customers_without_vectors`).
    """

    # The updated customers' layer is folded into the base beyond this share of it (or
    # FOLD_MIN rows, whichever is larger).
    FOLD_SHARE = 0.02
    FOLD_MIN = 5_000

    def __init__(
        self,
        champions: Champions,
        features: pd.DataFrame,
        now: datetime,
        without_vectors: Collection[str] = (),
    ) -> None:
        started = time.perf_counter()
        self.champions = champions
        self.built_at = now
        self._without_vectors = frozenset(without_vectors)
        self._churn = champions.models.get("churn")
        frame = features.reset_index(drop=True)
        base = _BookRows.of(frame, score_frame(champions.models, frame), self._churn)
        # (base rows, updated customers' rows or None, customers in all): swapped whole,
        # so a reader sees one version or the next, never a half-built one.
        self._state: tuple[_BookRows, _BookRows | None, int] = (base, None, len(base.index))
        self._table: tuple[tuple, pd.DataFrame] | None = None
        cold = _new_customer(list(features.columns.drop(["customer_id", "event_timestamp"])), now)
        cold_rows = _BookRows.of(cold, score_frame(champions.models, cold), self._churn)
        cold_rows.explain([0], self._churn)
        self.cold_start = {**self._record(cold_rows, 0), "cold_start": True}
        self._cold_offer = self._offer_row(cold_rows, 0)
        self.mean_order_value = float(np.nanmean(base.table["profile_avg_order_value"]))
        self._closed = threading.Event()
        self.seconds = time.perf_counter() - started
        log.info("scored %d customers in %.2f s", len(self), self.seconds)

    @property
    def table(self) -> pd.DataFrame:
        """Every customer's scores, one row each (the lists filter and sort it)."""
        state = self._state
        base, recent, _ = state
        if recent is None:
            return base.table
        cached = self._table
        if cached is None or cached[0] is not state:
            current = base.merged(recent).table  # built once per version, on demand
            self._table = cached = (state, current)
        return cached[1]

    def _find(self, customer_id: str) -> tuple[_BookRows | None, int]:
        base, recent, _ = self._state  # one read: the layers always match
        if recent is not None:
            i = recent.index.get(customer_id)
            if i is not None:
                return recent, i
        i = base.index.get(customer_id)
        return (None, -1) if i is None else (base, i)

    def _record(self, rows: _BookRows, i: int) -> dict[str, Any]:
        score = {name: _clean(values[i]) for name, values in rows.scores.items()}
        profiling = score["consent_profiling"]
        record: dict[str, Any] = {
            "customer_id": score["customer_id"],
            # No order yet: the models know the customer only from sign-up and engagement.
            "cold_start": not score["profile_order_count_lifetime"],
            "scored": profiling is not False,
            "loyalty_tier": score["loyalty_tier"],
        }
        if not record["scored"]:
            record["reason"] = "the customer opted out of profiling: no scores"
            return record
        if rows.reasons[i] is None:
            rows.explain([i], self._churn)
        at = score["features_at"].to_pydatetime()
        served = self.champions.models  # an absent model's block is None
        record.update(
            {
                name: resolve(spec.record_block)(score) if name in served else None
                for name, spec in SPECS.items()
                if spec.record_block
            }
        )
        record.update(
            {
                "value_at_risk": score.get("value_at_risk"),
                "rfm_segment": score["rfm_segment"],
                "reasons": rows.reasons[i] if self._churn is not None else None,
                "model_versions": dict(self.champions.versions),
                "features_as_of": at.isoformat(),
                "feature_age_hours": round((self.built_at - at) / timedelta(hours=1), 2),
            }
        )
        return record

    def update(self, features: pd.DataFrame, now: datetime) -> None:
        """Rescore some customers (after their events) and swap their rows in."""
        frame = features.reset_index(drop=True)
        new = _BookRows.of(frame, score_frame(self.champions.models, frame), self._churn)
        new.explain(list(range(len(frame))), self._churn)
        base, recent, _ = self._state
        recent = new if recent is None else recent.merged(new)
        if len(recent.index) > max(self.FOLD_MIN, self.FOLD_SHARE * len(base.index)):
            base, recent = base.merged(recent), None
        count = len(base.index)
        if recent is not None:
            count += sum(c not in base.index for c in recent.index)
        self.built_at = max(self.built_at, now)
        self._state = (base, recent, count)

    def forget(self, customer_ids: set[str]) -> int:
        """Drop erased customers (privacy erasure); returns how many the book held. They
        are unknown from then on (a 404), not cold-start."""
        base, recent, _ = self._state
        held = sum(1 for c in customer_ids if c in base.index or (recent and c in recent.index))
        held += sum(1 for c in customer_ids if c in self._without_vectors)
        base = base.without(customer_ids)
        recent = None if recent is None else recent.without(customer_ids)
        self._without_vectors = self._without_vectors - set(customer_ids)
        count = len(base.index)
        if recent is not None:
            count += sum(c not in base.index for c in recent.index)
        self._state = (base, recent, count)
        return held

    def fill_reasons(self, chunk: int = 2_000, pause: float = 0.0) -> int:
        """Compute the reasons of every customer still without them, ``chunk`` at a time
        (sleeping ``pause`` seconds between chunks, to leave the CPU to requests), until
        done or :meth:`close`; returns how many it explained. (Updated customers are
        explained when they are rescored.)"""
        done = position = 0
        while not self._closed.is_set():
            base = self._state[0]
            if position >= len(base.reasons):
                break
            end = min(position + chunk, len(base.reasons))
            todo = [i for i in range(position, end) if base.reasons[i] is None]
            base.explain(todo, self._churn)
            done += len(todo)
            position = end
            if pause:
                time.sleep(pause)
        return done

    def reasons_share(self) -> float:
        """The share of the base rows whose reasons are ready (1.0 once
        :meth:`fill_reasons` has been through them)."""
        reasons = self._state[0].reasons
        return 1.0 if not reasons else 1 - reasons.count(None) / len(reasons)

    def reasons_of(self, customer_ids: list[str]) -> list[list[str]]:
        """The reasons of these known customers, those still missing in one SHAP pass."""
        found = [self._find(c) for c in customer_ids]
        missing: dict[int, tuple[_BookRows, set[int]]] = {}
        for rows, i in found:
            if rows is not None and rows.reasons[i] is None:
                missing.setdefault(id(rows), (rows, set()))[1].add(i)
        for rows, positions in missing.values():
            rows.explain(sorted(positions), self._churn)
        return [(rows.reasons[i] or []) if rows is not None else [] for rows, i in found]

    def facts_of(self, customer_ids: list[str]) -> list[Mapping[str, Any] | None]:
        """Each customer's feature values and scores as one read-only mapping (scores
        first), for reasons that read both; None for an id without a row."""
        out: list[Mapping[str, Any] | None] = []
        for customer_id in customer_ids:
            rows, i = self._find(customer_id)
            out.append(
                None
                if rows is None
                else ChainMap(FrameRow(rows.scores, i), FrameRow(rows.feature_values, i))
            )
        return out

    def close(self) -> None:
        """Stop :meth:`fill_reasons` (the book was replaced)."""
        self._closed.set()

    @staticmethod
    def _offer_row(rows: _BookRows, i: int) -> tuple[dict, dict]:
        outputs, profile = {}, {}
        for name, values in rows.scores.items():
            if name.startswith("profile_"):
                profile[name.removeprefix("profile_")] = _clean(values[i])
            elif name.startswith(("uplift_", "p_buy_")):
                outputs[name] = _clean(values[i])
        return outputs, profile

    def profile_of(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's profile as the features see it now (tier, country and effective
        consent: profile changes and unsubscribes applied), or None without a vector."""
        rows, i = self._find(customer_id)
        if rows is None:
            return None
        scores = rows.scores
        out = {
            name: _clean(scores[name][i])
            for name in ("loyalty_tier", "country", "consent_profiling", *_CONSENTS)
        }
        return {k: v for k, v in out.items() if v is not None}

    def knows(self, customer_id: str) -> bool:
        """Whether the customer has scores or at least a cold-start record here."""
        return customer_id in self._without_vectors or self._find(customer_id)[0] is not None

    def offer_inputs(self, customer_id: str) -> tuple[dict, dict]:
        """The offer model's outputs and the rule inputs of one customer (a brand-new
        customer's without a feature vector): ``uplift_<offer>``, ``p_buy_<offer>``,
        ``p_buy_control_<channel>``. Raises :class:`MissingModelError` without an offer
        model, :class:`UnknownCustomerError` for a customer Kizuna has never seen."""
        self.champions.require(("offers",), "the next best offer")
        rows, i = self._find(customer_id)
        if rows is None and customer_id not in self._without_vectors:
            raise UnknownCustomerError(customer_id)
        outputs, profile = self._cold_offer if rows is None else self._offer_row(rows, i)
        outputs = {**outputs, "mean_order_value": self.mean_order_value}
        return outputs, profile

    def score_json(self, customer_id: str) -> bytes:
        """:meth:`score` as JSON bytes, serialized once per record and kept."""
        rows, i = self._find(customer_id)
        if rows is None:
            return json.dumps(self.score(customer_id), separators=(",", ":")).encode()
        cached = rows.json.get(customer_id)
        if cached is None:
            cached = json.dumps(self._record(rows, i), separators=(",", ":")).encode()
            rows.json[customer_id] = cached
        return cached

    def score(self, customer_id: str) -> dict[str, Any]:
        """The record of one customer: a brand-new customer's for one without a feature
        vector; :class:`UnknownCustomerError` for one Kizuna has never seen."""
        rows, i = self._find(customer_id)
        if rows is None:
            if customer_id not in self._without_vectors:
                raise UnknownCustomerError(customer_id)
            return {**self.cold_start, "customer_id": customer_id}
        return self._record(rows, i)

    def __len__(self) -> int:
        return self._state[2]


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


def customers_without_vectors(settings: Settings, vectors: pd.DataFrame) -> set[str]:
    """The customers the lake knows (a customer row, an order or an event) who have no
    row in ``vectors``: signed up or seen after the latest snapshot."""
    import duckdb

    from kizuna.features.lake import Lake

    lake = Lake(settings)
    con = duckdb.connect()
    con.register("vectors", vectors[["customer_id"]])
    known = " UNION ".join(
        f"SELECT customer_id FROM {lake.relation_sql(kind)}"
        for kind in ("customers", "orders", "events")
    )
    rows = con.execute(
        f"SELECT DISTINCT customer_id FROM ({known}) WHERE customer_id IS NOT NULL "
        "AND customer_id NOT IN (SELECT customer_id FROM vectors)"
    ).fetchall()
    return {str(row[0]) for row in rows}


def online_frame(settings: Settings, customer_ids: list[str], store: Any = None) -> pd.DataFrame:
    """The online store's ``offers_v1`` vectors of ``customer_ids``, one row each, with
    ``event_timestamp``: when the oldest of the customer's feature views was computed.
    ``store``: an open FeatureStore (default: open one)."""
    import warnings

    from kizuna.features.store import REQUEST_TIME, open_store

    store = store or open_store(settings)
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
