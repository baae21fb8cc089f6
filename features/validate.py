"""Row validation: a chunk of raw rows in, typed accepted rows and reasoned rejections out.

Every reason is a stable code ``<column>:<what>`` (for example ``amount:not_a_number``),
listed with its meaning in docs/data.md. A row can have several reasons; they are joined
with ``"; "``.

How a source writes numbers and booleans beyond the defaults (a decimal comma, ``ja`` and
``nein``) is a :class:`ValueFormat`; ingest passes a file's declared format with each of
its chunks, so every chunk is read as declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
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
# 12,50 or 1.234,50: what a decimal comma looks like.
_COMMA_NUMBER = r"[+-]?(?:\d+|\d{1,3}(?:\.\d{3})+),\d+"
# 1.234 or 1.234,50: dots that group thousands, under a decimal comma.
_GROUPED = r"[+-]?\d{1,3}(?:\.\d{3})+(?:,\d+)?"

# Reason codes that are not about one column's value.
REASON_DOCS: dict[str, str] = {
    "missing": "A required value is empty.",
    "not_a_number": "The value is not a number (or an infinite one).",
    "decimal_comma": "The value is a number with a decimal comma (12,50); declare the "
    'format with `--decimal ,` (or `decimal = ","` in the options file).',
    "not_an_integer": "The value is a number with a fraction (or beyond 2^53) where a whole "
    "number is needed.",
    "not_a_timestamp": "The value is not a date or time Kizuna can read (ISO 8601 works).",
    "not_a_boolean": "The value is not one of true/false, yes/no, 1/0, t/f, y/n; declare "
    "the file's own words with `--true ja --false nein` (or `true`/`false` in the options "
    "file).",
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


def _words(words: Iterable[str]) -> frozenset[str]:
    return frozenset(str(w).strip().lower() for w in words if str(w).strip())


@dataclass(frozen=True)
class ValueFormat:
    """How a source writes numbers and booleans, beyond what is always understood.

    Args:
        decimal: ``"."`` (the default) or ``","``; under a comma, a dot may only group
            thousands (``1.234,50`` is 1234.5).
        true_words: more words read as true in boolean columns (any case).
        false_words: more words read as false in boolean columns (any case).

    Raises:
        ValueError: a decimal mark other than ``.`` or ``,``, or a word declared both ways.
    """

    decimal: str = "."
    true_words: frozenset[str] = field(default_factory=frozenset)
    false_words: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.decimal not in (".", ","):
            raise ValueError(
                f"decimal mark {self.decimal!r} is not supported; use --decimal , "
                "for 12,50 or --decimal . (the default) for 12.50"
            )
        object.__setattr__(self, "true_words", _words(self.true_words))
        object.__setattr__(self, "false_words", _words(self.false_words))
        both = sorted(self.true_words & self.false_words)
        if both:
            raise ValueError(
                f"{', '.join(both)} declared both true and false; name each word once, "
                "with --true or with --false"
            )

    @property
    def trues(self) -> frozenset[str]:
        return (TRUE_WORDS - self.false_words) | self.true_words

    @property
    def falses(self) -> frozenset[str]:
        return (FALSE_WORDS - self.true_words) | self.false_words


DEFAULT_FORMAT = ValueFormat()


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
    # Typed timestamps (Parquet) come in any unit, pandas' default being nanoseconds; the
    # lake keeps microseconds, so finer parts are cut off rather than refused.
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    if pd.api.types.is_datetime64_dtype(s.dtype):
        local = s.dt.tz_localize(source_tz, ambiguous="NaT", nonexistent="NaT")
        return local.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
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


def parse_booleans(s: pd.Series, fmt: ValueFormat = DEFAULT_FORMAT) -> tuple[pd.Series, pd.Series]:
    """Parse to nullable booleans; returns (values, invalid mask)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), pd.Series(False, index=s.index)
    text = _as_text(s).str.lower()
    values = pd.Series(pd.NA, index=s.index, dtype="boolean")
    values[text.isin(fmt.trues)] = True
    values[text.isin(fmt.falses)] = False
    invalid = text.notna() & values.isna()
    return values, invalid


Check = tuple[np.ndarray, str]  # rows that fail, and the reason code they get


def _mask(values: pd.Series) -> np.ndarray:
    return values.fillna(False).to_numpy(dtype=bool)


def _first_wins(checks: list[Check]) -> list[Check]:
    """Keep, per row, only the first failing check: one reason per column."""
    out: list[Check] = []
    taken: np.ndarray | None = None
    for mask, code in checks:
        fresh = mask if taken is None else mask & ~taken
        if fresh.any():
            out.append((fresh, code))
        taken = mask if taken is None else taken | mask
    return out


def _is_text(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype)


def parse_numbers(s: pd.Series, fmt: ValueFormat = DEFAULT_FORMAT) -> pd.Series:
    """Parse to float64; what is not a finite number in ``fmt`` becomes NaN."""
    if fmt.decimal == "," and _is_text(s):
        text = _as_text(s)
        grouped = text.str.fullmatch(_GROUPED).fillna(False).astype(bool)
        text = text.where(~grouped, text.str.replace(".", "", regex=False))
        # Under a decimal comma a dot that groups nothing is a mistake, not a decimal mark.
        text = text.mask(text.str.contains(".", regex=False).fillna(False).astype(bool))
        s = text.str.replace(",", ".", regex=False)
    values = pd.to_numeric(s, errors="coerce").astype("float64")
    return values.where(np.isfinite(values))


# Past 2**53 a float no longer holds every whole number, nor an id-like count exactly.
_LARGEST_WHOLE = 2.0**53


def _number_column(
    col: Column, raw: pd.Series, blank: np.ndarray, fmt: ValueFormat
) -> tuple[pd.Series, list[Check]]:
    values = parse_numbers(raw, fmt)
    not_a_number = ~blank & values.isna().to_numpy()
    checks: list[Check] = []
    if fmt.decimal == "." and not_a_number.any() and _is_text(raw):
        comma = _as_text(raw).str.fullmatch(_COMMA_NUMBER).fillna(False).to_numpy(dtype=bool)
        checks.append((not_a_number & comma, f"{col.name}:decimal_comma"))
    checks.append((not_a_number, f"{col.name}:not_a_number"))
    if col.type == "int":
        fraction = _mask((values != np.floor(values)) | (values.abs() > _LARGEST_WHOLE))
        checks.append((fraction & values.notna().to_numpy(), f"{col.name}:not_an_integer"))
    if col.minimum is not None:
        checks.append((_mask(values < col.minimum), f"{col.name}:below_minimum"))
    if col.maximum is not None:
        checks.append((_mask(values > col.maximum), f"{col.name}:above_maximum"))
    if col.type == "int":
        # Rows with a value too large to be whole are rejected above; NaN keeps the cast safe.
        values = values.where(values.abs() <= _LARGEST_WHOLE).round().astype("Int64")
    return values, checks


def _parse_column(
    col: Column, raw: pd.Series, source_tz: str, fmt: ValueFormat
) -> tuple[pd.Series, list[Check]]:
    """Typed values and the failing checks of one column (most basic problem first)."""
    blank = _mask(_blank(raw))
    checks: list[Check] = []
    if col.required:
        checks.append((blank, f"{col.name}:missing"))
    if col.type == "string":
        values = _as_text(raw)
        if col.allowed is not None:
            values = values.str.lower()
            checks.append(
                (_mask(values.notna() & ~values.isin(col.allowed)), f"{col.name}:not_allowed")
            )
    elif col.type in ("float", "int"):
        values, number_checks = _number_column(col, raw, blank, fmt)
        checks.extend(number_checks)
    elif col.type == "timestamp":
        values = parse_timestamps(raw, source_tz)
        checks.append((~blank & values.isna().to_numpy(), f"{col.name}:not_a_timestamp"))
    elif col.type == "bool":
        values, bad = parse_booleans(raw, fmt)
        checks.append((bad.to_numpy(dtype=bool), f"{col.name}:not_a_boolean"))
    else:  # pragma: no cover - the contract's Literal forbids it
        raise AssertionError(col.type)
    return values, checks


def _eligibility_ok(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) <= set(ELIGIBILITY_KEYS)


def _row_rules(kind: str, typed: dict[str, pd.Series]) -> list[Check]:
    """Cross-column rules of each kind."""
    out: list[Check] = []
    if kind == "orders":
        is_return = typed["is_return"].fillna(False).to_numpy(dtype=bool)
        amount = typed["amount"]
        out.append((_mask(amount < 0) & ~is_return, "amount:negative_not_return"))
        out.append((_mask(amount > 0) & is_return, "amount:positive_return"))
    elif kind == "order_lines":
        out.append((_mask(typed["quantity"] == 0), "quantity:zero"))
    elif kind == "events":
        value = typed["value"]
        bad = np.zeros(len(value), dtype=bool)
        for event_type, (low, high) in EVENT_VALUE_RANGES.items():
            of_type = _mask(typed["type"] == event_type)
            bad |= of_type & _mask(value.isna() | (value < low) | (value > high))
        out.append((bad, "value:out_of_range"))
    elif kind == "offers":
        out.append((_mask(typed["valid_to"] < typed["valid_from"]), "valid_to:before_valid_from"))
        elig = typed["eligibility"]
        present = elig.notna()
        bad = np.zeros(len(elig), dtype=bool)
        bad[present.to_numpy()] = ~elig[present].map(_eligibility_ok).to_numpy(dtype=bool)
        out.append((bad, "eligibility:not_json_object"))
    elif kind == "exposures":
        out.append((_mask(typed["propensity"] == 0), "propensity:not_positive"))
    return out


def validate(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    source_tz: str,
    now: datetime,
    future_tolerance: pd.Timedelta,
    value_format: ValueFormat | None = None,
) -> ValidationResult:
    """Validate ``frame`` (raw values, any dtypes) against ``contract``.

    Columns the contract does not know are dropped, except ``attr_*`` columns on customers.
    Missing optional columns are added empty. Missing required columns are the caller's
    job to refuse before calling this (a file-level error, not a row-level one).

    Numbers and booleans are read in ``value_format`` (None: the default format).
    """
    fmt = value_format or DEFAULT_FORMAT
    index = frame.index
    typed: dict[str, pd.Series] = {}
    checks: list[Check] = []
    horizon = pd.Timestamp(now).tz_convert("UTC") + future_tolerance
    for col in contract.columns:
        raw = frame[col.name] if col.name in frame else pd.Series(None, index=index, dtype=object)
        values, column_checks = _parse_column(col, raw, source_tz, fmt)
        if col.not_in_future:
            column_checks.append((_mask(values > horizon), f"{col.name}:in_future"))
        typed[col.name] = values
        checks.extend(_first_wins(column_checks))
    checks.extend((mask, code) for mask, code in _row_rules(contract.kind, typed) if mask.any())

    rejected = np.zeros(len(index), dtype=bool)
    for mask, _ in checks:
        rejected |= mask
    positions = np.flatnonzero(rejected)
    reasons: list[list[str]] = [[] for _ in positions]
    for mask, code in checks:
        for i in np.flatnonzero(mask[positions]):
            reasons[i].append(code)
    joined = pd.Series(["; ".join(r) for r in reasons], index=index[positions], dtype=object)

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
        rejected_index=index[rejected],
        reasons=joined,
    )
