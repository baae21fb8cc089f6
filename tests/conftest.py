"""Shared fixtures: a fresh KIZUNA_HOME per test and the real datasets in ../shared/data."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kizuna.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# A fixed clock, so the future-timestamp rule does not depend on when tests run.
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public datasets; skip without them, fail in CI (KIZUNA_REQUIRE_SHARED=1)."""
    if not SHARED.exists():
        if os.environ.get("KIZUNA_REQUIRE_SHARED") == "1":
            pytest.fail(f"KIZUNA_REQUIRE_SHARED=1 but {SHARED} is missing")
        pytest.skip(f"real datasets not found at {SHARED}; CI provides them")
    return SHARED


# The simulated retailer shared by the model and serving tests (built once per session).
from tests.world import sim_world  # noqa: E402, F401

#: Fixtures that build the simulated retailer or a trained home (tens of seconds once per
#: session, and the tests on them train, serve or materialize): their tests are slow.
SLOW_FIXTURES = {"sim_world", "trained_home", "server", "scratch_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test on a slow fixture ``slow``, so ``make test-fast`` leaves it out
    without each module having to remember."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
