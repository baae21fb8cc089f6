"""The lake: Parquet files by kind and month, made visible all at once by a manifest.

A file under ``lake/`` counts only once ``lake/_manifest.json`` lists it. An ingest writes
aside (``.staging/``), moves its files in, then replaces the manifest in one
``os.replace``: a crash at any moment leaves the lake, as every reader sees it, exactly
as it was. Files a crashed ingest left behind are removed by the next writer.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from kizuna.features.contracts import CONTRACTS, contract_for
from kizuna.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


class LakeBusyError(RuntimeError):
    """Another process is writing to the lake."""


@dataclass
class Manifest:
    """What the lake holds: files per kind (relative to the lake) and the ingests behind them."""

    version: int = 0
    files: dict[str, list[str]] = field(default_factory=dict)
    quarantine: list[str] = field(default_factory=list)
    ingests: list[dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "files": self.files,
                "quarantine": self.quarantine,
                "ingests": self.ingests,
            },
            indent=1,
        )


class Lake:
    """Read and commit to the lake under ``settings.home``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.lake_dir
        self.quarantine_root = settings.quarantine_dir

    # -- reading -----------------------------------------------------------------------
    def manifest(self) -> Manifest:
        path = self.root / MANIFEST
        if not path.exists():
            return Manifest()
        data = json.loads(path.read_text())
        return Manifest(
            version=data["version"],
            files=data["files"],
            quarantine=data.get("quarantine", []),
            ingests=data.get("ingests", []),
        )

    def files(self, kind: str) -> list[Path]:
        """The Parquet files of ``kind`` that the lake holds now."""
        contract_for(kind)
        return [self.root / f for f in self.manifest().files.get(kind, [])]

    def quarantine_files(self, kind: str | None = None) -> list[Path]:
        paths = [self.quarantine_root / f for f in self.manifest().quarantine]
        if kind is not None:
            paths = [p for p in paths if p.parent.name == kind]
        return paths

    def relation_sql(self, kind: str) -> str:
        """A DuckDB table expression over ``kind`` (an empty one when nothing landed)."""
        files = self.files(kind)
        if not files:
            return empty_relation_sql(kind)
        listed = ", ".join(f"'{p}'" for p in files)
        return f"read_parquet([{listed}], union_by_name = true)"

    def read(self, kind: str, con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
        """All rows of ``kind`` as a DataFrame (for small lakes, tests and notebooks)."""
        con = con or duckdb.connect()
        return con.sql(f"select * from {self.relation_sql(kind)}").df()

    def quarantine(self, kind: str, what: str = "rejected") -> pd.DataFrame:
        """Quarantined rows of ``kind``: ``rejected`` (raw rows) or ``conflicts``."""
        paths = [p for p in self.quarantine_files(kind) if p.name.endswith(f"-{what}.parquet")]
        if not paths:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)

    def counts(self) -> dict[str, int]:
        con = duckdb.connect()
        return {
            kind: con.execute(f"select count(*) from {self.relation_sql(kind)}").fetchone()[0]
            for kind in CONTRACTS
        }

    # -- writing -----------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[LakeWriter]:
        """Hold the lake's write lock; clean what a crashed writer left; yield a writer."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / ".lock"
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LakeBusyError(
                    f"another kizuna process is writing to {self.root}; wait for it to finish "
                    "and run the command again"
                ) from None
            try:
                self._remove_orphans()
                yield LakeWriter(self)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_orphans(self) -> None:
        manifest = self.manifest()
        listed = {self.root / f for kind in manifest.files.values() for f in kind}
        for kind in CONTRACTS:
            folder = self.root / kind
            if not folder.exists():
                continue
            for path in folder.rglob("*.parquet"):
                if path not in listed:
                    log.warning("removing %s, left by an ingest that did not finish", path)
                    path.unlink()
        listed_q = {self.quarantine_root / f for f in manifest.quarantine}
        if self.quarantine_root.exists():
            for path in self.quarantine_root.rglob("*.parquet"):
                if path not in listed_q:
                    log.warning("removing %s, left by an ingest that did not finish", path)
                    path.unlink()
        staging = self.settings.staging_dir
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


class LakeWriter:
    """Collects staged files and commits them in one manifest swap."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def commit(
        self,
        data_files: dict[str, list[tuple[Path, str]]],
        quarantine_files: list[tuple[Path, str]],
        record: dict,
    ) -> Manifest:
        """Move staged files to their places and publish them.

        Args:
            data_files: per kind, (staged path, path relative to the lake) pairs.
            quarantine_files: (staged path, path relative to the quarantine folder) pairs.
            record: what to remember of this ingest in the manifest.
        """
        manifest = self.lake.manifest()
        for kind, pairs in data_files.items():
            for staged, rel in pairs:
                target = self.lake.root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
                manifest.files.setdefault(kind, []).append(rel)
        for staged, rel in quarantine_files:
            target = self.lake.quarantine_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            manifest.quarantine.append(rel)
        crash_point("before-manifest")
        manifest.version += 1
        manifest.ingests.append({**record, "committed_at": datetime.now(UTC).isoformat()})
        tmp = self.lake.root / f".{MANIFEST}.tmp"
        with open(tmp, "w") as fh:
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.lake.root / MANIFEST)
        _fsync_dir(self.lake.root)
        return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def crash_point(name: str) -> None:
    """Die here, as a power cut would, when ``KIZUNA_CRASH_AT`` names this point.

    Fault injection for the atomicity tests; a no-op otherwise.
    """
    if os.environ.get("KIZUNA_CRASH_AT") == name:
        os._exit(137)


_DUCK_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
}


def duck_type(column_type: str) -> str:
    return _DUCK_TYPES[column_type]


def empty_relation_sql(kind: str) -> str:
    cols = ", ".join(
        f"CAST(NULL AS {duck_type(c.type)}) AS {c.name}" for c in contract_for(kind).columns
    )
    return f"(SELECT {cols}, CAST(NULL AS VARCHAR) AS _row_hash LIMIT 0)"
