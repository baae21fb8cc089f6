"""Reading input files in chunks: CSV (plain or gzip) and Parquet, with clear refusals.

A file that is not what it claims gets one :class:`SourceError` naming the file, what
was expected and what was found, before anything is written.

How a retailer's CSV is written (separator, encoding, decimal comma, words for true and
false, column names) is declared per ingest or saved once in an options file
(:func:`load_format`); both become a :class:`DeclaredFormat`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import tomllib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kizuna.features.validate import DEFAULT_FORMAT, ValueFormat

log = logging.getLogger(__name__)

SNIFF_BYTES = 64 * 1024
SEPARATORS = ",;\t|"
_SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class SourceError(ValueError):
    """An input file that cannot be read as the table it claims to be."""


@dataclass
class ReadOptions:
    """How to read a CSV: separator (None sniffs), header row, or names for a headerless file.

    ``values`` is how numbers and booleans are written (decimal comma, ``ja``/``nein``);
    ingest passes it to validation with every chunk.
    """

    sep: str | None = None
    names: list[str] | None = None
    whitespace: bool = False
    encoding: str = "utf-8"
    extra: dict = field(default_factory=dict)
    values: ValueFormat = DEFAULT_FORMAT


def _separator(text: str | None) -> str | None:
    if text is None:
        return None
    sep = _SEPARATOR_NAMES.get(text.lower(), text)
    if len(sep) != 1 or sep.isalnum() or sep in "\"'\r\n ":
        raise SourceError(
            f"separator {text!r} is not one character like , ; | or \\t; "
            "write e.g. --sep ';' (or sep = \";\" in the options file)"
        )
    return sep


def _encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise SourceError(
            f"unknown encoding {name!r}; use e.g. --encoding utf-8, latin-1, cp1252 or utf-16"
        ) from None
    return name


def _words(value: Any, key: str) -> tuple[str, ...]:
    words = [value] if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise SourceError(f'{key}: expected a word or a list of words, e.g. {key} = ["ja"]')
    return tuple(words)


@dataclass(frozen=True)
class DeclaredFormat:
    """A source's format as declared by flags or an options file; None means not declared.

    ``mapping`` renames columns: a dict theirs -> ours, or the ``--map`` text
    ``"theirs=ours,..."``.
    """

    sep: str | None = None
    encoding: str | None = None
    decimal: str | None = None
    true_words: tuple[str, ...] | None = None
    false_words: tuple[str, ...] | None = None
    mapping: dict[str, str] | str | None = None

    def over(self, base: DeclaredFormat) -> DeclaredFormat:
        """This declaration, taking from ``base`` what it leaves out (flags over a file)."""
        mine = {f.name: getattr(self, f.name) for f in fields(self)}
        return DeclaredFormat(
            **{k: v if v is not None else getattr(base, k) for k, v in mine.items()}
        )

    def declares_format(self) -> bool:
        """Whether anything beyond the column mapping is declared."""
        return any(getattr(self, f.name) is not None for f in fields(self) if f.name != "mapping")

    def read_options(self) -> ReadOptions:
        """ReadOptions for a file in this format.

        Raises:
            SourceError: a separator, encoding, decimal mark or word list that cannot be.
        """
        try:
            values = ValueFormat(
                decimal=self.decimal or ".",
                true_words=frozenset(self.true_words or ()),
                false_words=frozenset(self.false_words or ()),
            )
        except ValueError as exc:
            raise SourceError(str(exc)) from exc
        return ReadOptions(
            sep=_separator(self.sep),
            encoding=_encoding(self.encoding or "utf-8"),
            values=values,
        )


OPTION_KEYS = {
    "sep": "sep",
    "encoding": "encoding",
    "decimal": "decimal",
    "true": "true_words",
    "false": "false_words",
    "map": "mapping",
}


def load_format(path: Path) -> DeclaredFormat:
    """Read a saved format from a TOML (``.toml``) or JSON (``.json``) options file.

    Keys: ``sep``, ``encoding``, ``decimal`` (text), ``true`` and ``false`` (a word or a
    list of words) and ``map`` (a table ``theirs = "ours"``, or ``"theirs=ours,..."``).

    Raises:
        SourceError: the file is missing, not valid TOML/JSON, or holds an unknown key or
            a value of the wrong type.
    """
    where = f"options file {path}"
    if path.suffix.lower() not in (".toml", ".json"):
        raise SourceError(f"{where}: name it *.toml or *.json so its format is known")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{where}: cannot be read ({exc}); check the path") from exc
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{where}: not valid {path.suffix[1:].upper()} ({exc})") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{where}: expected a table of options ({', '.join(OPTION_KEYS)})")
    unknown = sorted(set(data) - set(OPTION_KEYS))
    if unknown:
        raise SourceError(
            f"{where}: unknown option(s) {', '.join(unknown)}; "
            f"the options are {', '.join(OPTION_KEYS)}"
        )
    declared: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("true", "false"):
            declared[OPTION_KEYS[key]] = _words(value, key)
        elif key == "map":
            ok = isinstance(value, str) or (
                isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            )
            if not ok:
                raise SourceError(f'{where}: map: expected a table of theirs = "ours" names')
            declared["mapping"] = value
        elif isinstance(value, str):
            declared[OPTION_KEYS[key]] = value
        else:
            raise SourceError(f'{where}: {key}: expected text, e.g. {key} = ";"')
    return DeclaredFormat(**declared)


@dataclass
class Chunk:
    """Raw rows (every value a string for CSV) and how far through the file we are."""

    frame: pd.DataFrame
    bytes_done: int
    bytes_total: int


def _is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def _head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    with _open(path) as fh:
        head = fh.read(n)
    if _is_gzip(head):
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read(n)
        except (OSError, EOFError) as exc:
            raise SourceError(
                f"{path}: looks gzip-compressed but cannot be unpacked ({exc})"
            ) from exc
    return head


def _open(path: Path):
    try:
        return open(path, "rb")  # the callers close it
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot be opened ({exc.strerror}); check that it exists and is readable"
        ) from exc


def _wide(encoding: str) -> bool:
    return codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))


def file_format(path: Path, encoding: str = "utf-8") -> str:
    """'parquet' or 'csv', from the file's first bytes rather than its name."""
    if not path.exists():
        raise SourceError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; name a file (or a folder of contract files)")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty; expected a CSV or Parquet table")
    with _open(path) as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    head = _head(path)
    if not head.strip() or head.strip() == codecs.BOM_UTF8:
        raise SourceError(f"{path}: the file is empty; expected a CSV or Parquet table")
    if _wide(encoding):
        return "csv"
    if head.startswith(_UTF16_BOMS):
        raise SourceError(
            f'{path}: is UTF-16 text (as Excel\'s "Unicode text" saves it); '
            "pass --encoding utf-16, or save it as CSV UTF-8"
        )
    if b"\x00" in head:
        raise SourceError(
            f"{path}: expected a CSV or Parquet table, found binary data "
            "(is it a spreadsheet or an archive? export it as CSV)"
        )
    return "csv"


def _text_encoding(encoding: str) -> str:
    """The codec to decode with: UTF-8 drops a leading byte-order mark (Excel writes one)."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _not_encoded(path: Path, encoding: str, where: str) -> str:
    fix = (
        "pass --encoding latin-1 (or cp1252, or the encoding it was saved in), or re-save it "
        "as UTF-8"
        if codecs.lookup(encoding).name == "utf-8"
        else "pass --encoding with the encoding it was saved in (utf-8, latin-1, cp1252, ...)"
    )
    return f"{path}: not {encoding} text ({where}); {fix}"


def _decode_sample(path: Path, head: bytes, encoding: str) -> str:
    codec = _text_encoding(encoding)
    try:
        return head.decode(codec)
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a character cut by the sample's end
            return head[: exc.start].decode(codec, errors="ignore")
        where = f"byte 0x{head[exc.start]:02x} at offset {exc.start}"
        raise SourceError(_not_encoded(path, encoding, where)) from exc


def sniff_separator(sample: str) -> str:
    first = sample.splitlines()[0] if sample else ""
    try:
        return csv.Sniffer().sniff(first, delimiters=SEPARATORS).delimiter
    except csv.Error:
        return ","


def _one_column_header(path: Path, header: list[str], sep: str) -> None:
    """A header read as one column holding another separator: the separator is wrong."""
    if len(header) != 1:
        return
    others = [c for c in SEPARATORS if c != sep and c in header[0]]
    if others:
        shown = "\\t" if others[0] == "\t" else others[0]
        raise SourceError(
            f"{path}: the header {header[0]!r} splits into one column with separator "
            f"{sep!r}; pass --sep '{shown}' (or sep = \"{shown}\" in the options file)"
        )


def _parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"{path}: starts like Parquet but cannot be read ({exc}); export it again"
        ) from exc


def read_columns(path: Path, options: ReadOptions) -> list[str]:
    """The column names of a file, without reading its rows."""
    if file_format(path, options.encoding) == "parquet":
        return list(_parquet(path).schema_arrow.names)
    if options.names is not None:
        return list(options.names)
    sample = _decode_sample(path, _head(path), options.encoding)
    sep = r"\s+" if options.whitespace else (options.sep or sniff_separator(sample))
    try:
        header = pd.read_csv(io.StringIO(sample), sep=sep, nrows=0, dtype=str).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = " ".join(str(exc).split())
        raise SourceError(
            f"{path}: expected a table with a header row, found {detail}; check the first "
            "line's separators and quotes"
        ) from exc
    columns = [str(c).strip() for c in header]
    if not options.whitespace:
        _one_column_header(path, columns, sep)
    return columns


class _CountingReader(io.RawIOBase):
    """Wraps a binary file to count the compressed bytes consumed, for progress."""

    def __init__(self, raw) -> None:
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        b[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self.raw.tell()


def _parquet_chunks(path: Path, options: ReadOptions, chunk_rows: int) -> Iterator[Chunk]:
    total = path.stat().st_size
    pf = _parquet(path)
    done_rows, n_rows = 0, max(pf.metadata.num_rows, 1)
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            done_rows += batch.num_rows
            frame = batch.to_pandas()
            yield Chunk(frame, int(total * done_rows / n_rows), total)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: a damaged Parquet file ({exc}); export it again") from exc


def _frames(reader, path: Path) -> Iterator[pd.DataFrame]:
    """The reader's chunks; rows longer than the header are said once, in the log."""
    said = False
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = next(reader, None)
        for w in caught:
            if not issubclass(w.category, pd.errors.ParserWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            elif not said:
                said = True
                log.warning(
                    "%s: some rows have more values than the header has columns; the values "
                    "past the last column are ignored (harmless for a trailing separator)",
                    path,
                )
        if frame is None:
            return
        yield frame


def iter_chunks(path: Path, options: ReadOptions, chunk_rows: int) -> Iterator[Chunk]:
    """Yield the file's rows in chunks of at most ``chunk_rows``."""
    if file_format(path, options.encoding) == "parquet":
        yield from _parquet_chunks(path, options, chunk_rows)
        return
    total = path.stat().st_size
    head = _head(path)
    sample = _decode_sample(path, head, options.encoding)
    sep = None if options.whitespace else (options.sep or sniff_separator(sample))
    raw = _open(path)
    try:
        counting = _CountingReader(raw)
        stream = gzip.GzipFile(fileobj=counting) if _is_gzip(raw.read(2)) else counting
        raw.seek(0)
        text = io.TextIOWrapper(
            io.BufferedReader(stream), encoding=_text_encoding(options.encoding), newline=""
        )
        try:
            reader = pd.read_csv(
                text,
                sep=r"\s+" if options.whitespace else sep,
                dtype="string[pyarrow]",
                keep_default_na=False,
                header=None if options.names is not None else "infer",
                names=options.names,
                chunksize=chunk_rows,
                skipinitialspace=True,
                # A row longer than the header (a trailing separator) must not turn the
                # first column into the index and shift every value one column left.
                index_col=None if options.whitespace else False,
                **options.extra,
            )
            for frame in _frames(reader, path):
                frame.columns = [str(c).strip() for c in frame.columns]
                yield Chunk(frame, raw.tell(), total)
        except UnicodeDecodeError as exc:
            where = f"{exc.reason} at byte {exc.start} of a block"
            raise SourceError(_not_encoded(path, options.encoding, where)) from exc
        except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
            detail = " ".join(str(exc).split())
            raise SourceError(
                f"{path}: not a well-formed table: {detail}; check that line's separators and "
                "quotes (a separator other than the header's needs --sep)"
            ) from exc
        except (OSError, EOFError) as exc:  # a gzip stream cut short or corrupt
            raise SourceError(f"{path}: cannot be read to the end ({exc}); copy it again") from exc
    finally:
        raw.close()
