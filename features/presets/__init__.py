"""Presets: mappings from known foreign formats onto Kizuna's contracts.

A preset is not a loader of its own: it says how to read the file, maps each raw chunk to
contract rows (keeping each row's ``_source_row`` so rejections quarantine the original
line), and may derive further tables in DuckDB once everything is staged. Validation,
deduplication, quarantine and the atomic commit are the same ingest path as any file's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import duckdb
import pandas as pd

from kizuna.features.contracts import Contract, contract_for
from kizuna.features.sources import ReadOptions
from kizuna.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from kizuna.features.ingest import Ingestor, KindReport


class Preset:
    """Base class; subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    description: ClassVar[str]
    example: ClassVar[str]
    #: where rows rejected before reaching a contract are reported and quarantined
    quarantine_kind: ClassVar[str] = "orders"
    #: contracts of staging-only tables the preset validates against (by table name)
    contracts: ClassVar[dict[str, Contract]] = {}

    def read_options(self, path: Path) -> ReadOptions:
        return ReadOptions()

    def check_columns(self, columns: list[str]) -> str | None:
        """None when the file has what the preset needs; otherwise what is missing."""
        return None

    def map_chunk(
        self, raw: pd.DataFrame, state: dict, settings: Settings
    ) -> dict[str, pd.DataFrame]:
        """Contract rows for one raw chunk, by kind, each with a ``_source_row`` column.

        The key ``"_rejected"`` may hold a Series of reasons indexed by source row, for
        rows the preset itself refuses.
        """
        raise NotImplementedError

    def derive(
        self,
        con: duckdb.DuckDBPyConnection,
        staged: Path,
        stager,
        reports: dict[str, KindReport],
        ingestor: Ingestor,
    ) -> None:
        """Build further tables from what was staged (roll-ups); nothing by default."""

    # helpers for subclasses -------------------------------------------------------------
    @staticmethod
    def stage_derived(
        kind: str,
        frame: pd.DataFrame,
        stager,
        reports: dict[str, KindReport],
        ingestor: Ingestor,
    ) -> None:
        """Validate derived rows like any others and stage them; refused ones are quarantined."""
        from kizuna.features.ingest import KindReport

        contract = contract_for(kind)
        rep = reports.setdefault(kind, KindReport(kind))
        rep.read += len(frame)
        result = ingestor.validate_frame(frame, contract)
        for reasons in result.reasons:
            rep.rejected.update(reasons.split("; "))
        rep.rejected_rows += len(result.rejected_index)
        if len(result.rejected_index):
            bad = frame.loc[result.rejected_index].copy()
            bad["_reasons"] = result.reasons.to_numpy()
            bad["_kind"] = kind
            bad["_source_file"] = f"derived by preset from {', '.join(ingestor_sources(ingestor))}"
            stager.rejected_rows(kind, bad)
        stager.accepted(kind, result.accepted, contract)


def ingestor_sources(ingestor) -> list[str]:
    return [str(p) for p in getattr(ingestor, "source_paths", [])]


def _registry() -> dict[str, Preset]:
    from kizuna.features.presets.cdnow import Cdnow
    from kizuna.features.presets.hillstrom import Hillstrom
    from kizuna.features.presets.online_retail import OnlineRetail

    return {p.name: p for p in (Cdnow(), OnlineRetail(), Hillstrom())}


def preset_names() -> list[str]:
    return list(_registry())


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a ValueError listing the presets there are."""
    presets = _registry()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; use one of: {', '.join(presets)}")
    return presets[name]
