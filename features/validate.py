"""Row validation: a chunk of raw rows in, typed accepted rows and reasoned rejections out.

Every reason is a stable code ``<column>:<what>`` (for example ``amount:not_a_number``),
listed with its meaning in docs/data.md. A row can have several reasons; they are joined
with ``"; "``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from kizuna.features.contracts import (
    ELIGIBILITY_KEYS,
    EVENT_VALUE_RANGES,
    Column,
    Contract,
)

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
_OFFSET = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")

# Reason codes that are not about one column's value.
REASON_DOCS: dict[str, str] = {
    "missing": "A required value is empty.",
    "not_a_number": "The value is not a number.",
    "not_an_integer": "The value is a number with a fraction where a whole number is needed.",
    "not_a_timestamp": "The value is not a date or time Kizuna can read (ISO 8601 works).",
    "not_a_boolean": "The value is not one of true/false, yes/no, 1/0, t/f, y/n.",
    "not_allowed": "The value is not in the column's list of allowed values.",
    "below_minimum": "The value is below the column's minimum.",
    "above_maximum": "The value is above the column's maximum.",
    "in_future": "The timestamp lies after now plus the tolerance (KIZUNA_FUTURE_TOLERANCE).",
    "negative_not_return": "A negative amount on a row that is not a return.",
    "positive_return": "A return (is_return = true) with a positive amount.",
    "zero": "A quantity of 0.",
    "out_of_range": "An NPS, CSAT or review value outside its scale.",
    "before_valid_from": "An offer that ends before it starts.",
    "not_positive": "A propensity of 0: the assignment could not have happened.",
    "not_json_object": "Eligibility that is not a JSON object with known keys.",
    "unknown_customer": "No such customer, with KIZUNA_UNKNOWN_CUSTOMERS=reject.",
    "conflicts_with_lake": "The key is already in the lake with different content.",
    "conflicts_in_file": "The key appears more than once in the input with different content.",
}


@dataclass
class ValidationResult:
    """Accepted rows (typed, contract columns) and the positions and reasons of rejected ones."""

    accepted: pd.DataFrame
    rejected_index: pd.Index
    reasons: pd.Series  # indexed like the input, only rejected rows


def _blank(s: pd.Series) -> pd.Series:
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        return s.isna() | (s.astype("string[pyarrow]").str.strip() == "")
    return s.isna()


def _as_text(s: pd.Series) -> pd.Series:
    out = s.astype("string[pyarrow]").str.strip()
    return out.mask(out == "")


def parse_timestamps(s: pd.Series, source_tz: str) -> pd.Series:
    """Parse to UTC. Values with an offset keep it; naive values are read in ``source_tz``."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.dt.tz_localize(source_tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    text = _as_text(s)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    present = text.notna()
    if not present.any():
        return out
    has_offset = present & text.str.contains(_OFFSET, na=False)
    naive = present & ~has_offset
    if has_offset.any():
        parsed = pd.to_datetime(text[has_offset], errors="coerce", utc=True, format="ISO8601")
        out[has_offset] = parsed.astype("datetime64[us, UTC]")
    if naive.any():
        parsed = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        bad = parsed.isna()
        if bad.any():  # not ISO 8601: let pandas try the common other layouts
            parsed[bad] = pd.to_datetime(text[naive][bad], errors="coerce", format="mixed")
        parsed = parsed.dt.tz_localize(source_tz, ambiguous="NaT", nonexistent="NaT")
        out[naive] = parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return out


def parse_booleans(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse to nullable booleans; returns (values, invalid mask)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), pd.Series(False, index=s.index)
    text = _as_text(s).str.lower()
    values = pd.Series(pd.NA, index=s.index, dtype="boolean")
    values[text.isin(TRUE_WORDS)] = True
    values[text.isin(FALSE_WORDS)] = False
    invalid = text.notna() & values.isna()
    return values, invalid


def _parse_column(col: Column, raw: pd.Series, source_tz: str) -> tuple[pd.Series, pd.Series]:
    """Typed values and a Series of reason codes ('' where fine) for one column."""
    reasons = pd.Series("", index=raw.index, dtype=object)
    blank = _blank(raw)
    if col.type == "string":
        values = _as_text(raw)
        if col.allowed is not None:
            values = values.str.lower()
            bad = values.notna() & ~values.isin(col.allowed)
            reasons[bad] = f"{col.name}:not_allowed"
    elif col.type in ("float", "int"):
        values = pd.to_numeric(raw, errors="coerce")
        bad = ~blank & values.isna()
        reasons[bad] = f"{col.name}:not_a_number"
        values = values.astype("float64")
        if col.type == "int":
            frac = values.notna() & (values != np.floor(values))
            reasons[frac] = f"{col.name}:not_an_integer"
            values = values.round().astype("Int64")
        if col.minimum is not None:
            reasons[(values < col.minimum).fillna(False) & (reasons == "")] = (
                f"{col.name}:below_minimum"
            )
        if col.maximum is not None:
            reasons[(values > col.maximum).fillna(False) & (reasons == "")] = (
                f"{col.name}:above_maximum"
            )
    elif col.type == "timestamp":
        values = parse_timestamps(raw, source_tz)
        reasons[~blank & values.isna()] = f"{col.name}:not_a_timestamp"
    elif col.type == "bool":
        values, bad = parse_booleans(raw)
        reasons[bad] = f"{col.name}:not_a_boolean"
    else:  # pragma: no cover - the contract's Literal forbids it
        raise AssertionError(col.type)
    if col.required:
        reasons[blank] = f"{col.name}:missing"
    return values, reasons


def _eligibility_ok(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) <= set(ELIGIBILITY_KEYS)


def _row_rules(kind: str, typed: dict[str, pd.Series], index: pd.Index) -> list[pd.Series]:
    """Cross-column rules of each kind, as reason Series ('' where fine)."""
    out: list[pd.Series] = []

    def reason(mask: pd.Series, code: str) -> None:
        r = pd.Series("", index=index, dtype=object)
        r[mask.fillna(False).astype(bool)] = code
        out.append(r)

    if kind == "orders":
        is_return = typed["is_return"].fillna(False).astype(bool)
        amount = typed["amount"]
        reason((amount < 0) & ~is_return, "amount:negative_not_return")
        reason((amount > 0) & is_return, "amount:positive_return")
    elif kind == "order_lines":
        reason(typed["quantity"] == 0, "quantity:zero")
    elif kind == "events":
        value = typed["value"]
        for event_type, (low, high) in EVENT_VALUE_RANGES.items():
            of_type = typed["type"] == event_type
            reason(of_type & (value.isna() | (value < low) | (value > high)), "value:out_of_range")
    elif kind == "offers":
        reason(typed["valid_to"] < typed["valid_from"], "valid_to:before_valid_from")
        elig = typed["eligibility"]
        present = elig.notna()
        ok = elig[present].map(_eligibility_ok).astype(bool)
        bad = pd.Series(False, index=index)
        bad[present] = ~ok
        reason(bad, "eligibility:not_json_object")
    elif kind == "exposures":
        reason(typed["propensity"] == 0, "propensity:not_positive")
    return out


def validate(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    source_tz: str,
    now: datetime,
    future_tolerance: pd.Timedelta,
) -> ValidationResult:
    """Validate ``frame`` (raw values, any dtypes) against ``contract``.

    Columns the contract does not know are dropped, except ``attr_*`` columns on customers.
    Missing optional columns are added empty. Missing required columns are the caller's
    job to refuse before calling this (a file-level error, not a row-level one).
    """
    index = frame.index
    typed: dict[str, pd.Series] = {}
    reason_cols: list[pd.Series] = []
    horizon = pd.Timestamp(now).tz_convert("UTC") + future_tolerance
    for col in contract.columns:
        raw = frame[col.name] if col.name in frame else pd.Series(None, index=index, dtype=object)
        values, reasons = _parse_column(col, raw, source_tz)
        if col.not_in_future:
            reasons[(values > horizon).fillna(False) & (reasons == "")] = f"{col.name}:in_future"
        typed[col.name] = values
        reason_cols.append(reasons)
    reason_cols.extend(_row_rules(contract.kind, typed, index))

    joined = reason_cols[0].copy()
    for r in reason_cols[1:]:
        both = (joined != "") & (r != "")
        joined = joined.where(r == "", r.where(~both, joined + "; " + r))
    rejected = joined != ""

    accepted = pd.DataFrame(typed, index=index)[~rejected]
    if contract.kind == "customers":
        for name in frame.columns:
            if str(name).startswith("attr_"):
                accepted[name] = frame.loc[~rejected, name]
    if "is_return" in accepted:
        accepted["is_return"] = accepted["is_return"].fillna(False)
    if "discount_amount" in accepted:
        accepted["discount_amount"] = accepted["discount_amount"].fillna(0.0)
    return ValidationResult(
        accepted=accepted,
        rejected_index=index[rejected.to_numpy()],
        reasons=joined[rejected],
    )
