"""One place for paths, URIs and policies, read from the environment (``KIZUNA_*``).

Nothing is read or created at import time: call :func:`get_settings` when you need them.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Kizuna's configuration. Every field can be set as ``KIZUNA_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="KIZUNA_", extra="ignore")

    home: Path = Field(
        default=Path("./data"),
        description="Folder that holds everything Kizuna writes (lake, quarantine, features).",
    )
    source_timezone: str = Field(
        default="UTC",
        description="Time zone assumed for timestamps that carry no offset of their own.",
    )
    future_tolerance: timedelta = Field(
        default=timedelta(days=1),
        description="How far past 'now' a timestamp may lie before it is rejected as future.",
    )
    unknown_customers: Literal["accept", "reject"] = Field(
        default="accept",
        description="What to do with orders, events or exposures of customers never seen.",
    )
    ingest_chunk_rows: int = Field(
        default=500_000, ge=1_000, description="Rows read and validated at a time by ingest."
    )
    duckdb_memory_limit: str = Field(
        default="2GB", description="Memory DuckDB may use before it spills to disk."
    )
    mlruns: Path = Field(
        default=Path("./mlruns"),
        description="Folder of the default MLflow store (a SQLite file and the artifacts).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (e.g. postgresql://...); default: SQLite in `mlruns`.",
    )
    seed: int = Field(default=7, description="Seed of every model's training, logged with it.")
    offer_margin_rate: float = Field(
        default=0.3, ge=0, le=1, description="Margin on an incremental order's value."
    )
    contact_cost_email: float = Field(default=0.01, ge=0, description="Cost of one e-mail.")
    contact_cost_sms: float = Field(default=0.05, ge=0, description="Cost of one SMS.")
    contact_cost_push: float = Field(default=0.005, ge=0, description="Cost of one push.")
    offer_exploration: float = Field(
        default=0.05, ge=0, le=1, description="Share of decisions chosen at random (logged)."
    )
    contacts_per_week: int = Field(
        default=2, ge=0, description="Most offers per customer and channel in 7 days."
    )
    model_poll_seconds: float = Field(
        default=30, gt=0, description="How often the API checks the registry for new champions."
    )
    lake_poll_seconds: float = Field(
        default=2,
        gt=0,
        description="How often the API looks for consent and profile changes ingested from "
        "files (profile_changes, unsubscribe events) and rescores those customers.",
    )
    offer_cooldown_days: int = Field(
        default=14, ge=0, description="Days before the same offer goes to a customer again."
    )
    score_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "LightGBM threads when scoring every customer at once (kizuna score, the API's "
            "score book); unset: every core."
        ),
    )

    @property
    def home_dir(self) -> Path:
        """``home`` made absolute, so nothing depends on the working directory later."""
        return self.home.expanduser().resolve()

    @property
    def lake_dir(self) -> Path:
        return self.home_dir / "lake"

    @property
    def quarantine_dir(self) -> Path:
        return self.home_dir / "quarantine"

    @property
    def staging_dir(self) -> Path:
        return self.home_dir / ".staging"

    @property
    def mlruns_dir(self) -> Path:
        return self.mlruns.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        """Where MLflow runs and the model registry live."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlruns_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        """Where the default store keeps artifacts (models, plots, tables)."""
        return self.mlruns_dir / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
