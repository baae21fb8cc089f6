"""Reading input files in chunks: CSV (plain or gzip) and Parquet, with clear refusals.

A file that is not what it claims gets one :class:`SourceError` naming the file, what
was expected and what was found, before anything is written.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

SNIFF_BYTES = 64 * 1024


class SourceError(ValueError):
    """An input file that cannot be read as the table it claims to be."""


@dataclass
class ReadOptions:
    """How to read a CSV: separator (None sniffs), header row, or names for a headerless file."""

    sep: str | None = None
    names: list[str] | None = None
    whitespace: bool = False
    encoding: str = "utf-8"
    extra: dict = field(default_factory=dict)


@dataclass
class Chunk:
    """Raw rows (every value a string for CSV) and how far through the file we are."""

    frame: pd.DataFrame
    bytes_done: int
    bytes_total: int


def _is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def _head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    with open(path, "rb") as fh:
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


def file_format(path: Path) -> str:
    """'parquet' or 'csv', from the file's first bytes rather than its name."""
    if not path.exists():
        raise SourceError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; name a file (or a folder of contract files)")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty; expected a CSV or Parquet table")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    head = _head(path)
    if not head.strip():
        raise SourceError(f"{path}: the file is empty; expected a CSV or Parquet table")
    if b"\x00" in head:
        raise SourceError(
            f"{path}: expected a CSV or Parquet table, found binary data "
            "(is it a spreadsheet or an archive? export it as CSV)"
        )
    return "csv"


def _decode_sample(path: Path, head: bytes, encoding: str) -> str:
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a character cut by the sample's end
            return head[: exc.start].decode(encoding)
        raise SourceError(
            f"{path}: not {encoding} text (byte 0x{head[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8, or pass --encoding with the file's encoding (e.g. latin-1)"
        ) from exc


def sniff_separator(sample: str) -> str:
    first = sample.splitlines()[0] if sample else ""
    try:
        return csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_columns(path: Path, options: ReadOptions) -> list[str]:
    """The column names of a file, without reading its rows."""
    if file_format(path) == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    if options.names is not None:
        return list(options.names)
    sample = _decode_sample(path, _head(path), options.encoding)
    sep = r"\s+" if options.whitespace else (options.sep or sniff_separator(sample))
    try:
        header = pd.read_csv(io.StringIO(sample), sep=sep, nrows=0, dtype=str).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"{path}: expected a table with a header row, found {exc}") from exc
    return [str(c).strip() for c in header]


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


def iter_chunks(path: Path, options: ReadOptions, chunk_rows: int) -> Iterator[Chunk]:
    """Yield the file's rows in chunks of at most ``chunk_rows``."""
    total = path.stat().st_size
    if file_format(path) == "parquet":
        pf = pq.ParquetFile(path)
        done_rows, n_rows = 0, max(pf.metadata.num_rows, 1)
        for batch in pf.iter_batches(batch_size=chunk_rows):
            done_rows += batch.num_rows
            yield Chunk(batch.to_pandas(), int(total * done_rows / n_rows), total)
        return
    head = _head(path)
    sample = _decode_sample(path, head, options.encoding)
    sep = None if options.whitespace else (options.sep or sniff_separator(sample))
    raw = open(path, "rb")  # noqa: SIM115 - closed in finally below
    try:
        counting = _CountingReader(raw)
        stream = gzip.GzipFile(fileobj=counting) if _is_gzip(raw.read(2)) else counting
        raw.seek(0)
        text = io.TextIOWrapper(io.BufferedReader(stream), encoding=options.encoding, newline="")
        reader = pd.read_csv(
            text,
            sep=r"\s+" if options.whitespace else sep,
            dtype="string[pyarrow]",
            keep_default_na=False,
            header=None if options.names is not None else "infer",
            names=options.names,
            chunksize=chunk_rows,
            skipinitialspace=True,
            **options.extra,
        )
        try:
            for frame in reader:
                frame.columns = [str(c).strip() for c in frame.columns]
                yield Chunk(frame, raw.tell(), total)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{path}: not {options.encoding} text ({exc.reason} at byte {exc.start} of a "
                "block); re-save it as UTF-8, or pass --encoding with the file's encoding "
                "(e.g. latin-1)"
            ) from exc
        except pd.errors.ParserError as exc:
            raise SourceError(f"{path}: not a well-formed table: {exc}") from exc
    finally:
        raw.close()
