"""A real Kizuna server: the simulated retailer, four trained champions, uvicorn on a port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kizuna.features.store import apply, materialize
from kizuna.serving.keys import SCOPES, KeyStore
from kizuna.settings import Settings
from kizuna.training.runs import train_and_register
from kizuna.training.trainer import TrainConfig
from tests.world import CLI, VALUE_DAYS, cli_env


@dataclass
class Server:
    url: str
    settings: Settings
    keys: dict[str, str]  # scope (or "all") -> key
    process: subprocess.Popen

    @property
    def log(self) -> str:
        """What the server has written to its output so far."""
        return self.process.log_path.read_text()

    def client(self, scope: str | None = "all") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"} if scope else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait_page_warm(self, seconds: float = 120) -> None:
        """Until /readyz says the marketer page's start-up figures are prepared."""
        deadline = time.monotonic() + seconds
        while (warming := httpx.get(f"{self.url}/readyz").json()["page_warming"]) != []:
            assert time.monotonic() < deadline, f"the page is still preparing {warming}"
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(settings: Settings, port: int) -> subprocess.Popen:
    env = cli_env(
        settings,
        # Deterministic decisions for the rule tests; exploration is unit-tested.
        KIZUNA_OFFER_EXPLORATION="0",
        KIZUNA_MODEL_POLL_SECONDS="1",
    )
    # The server's output goes to a file beside its home (a pipe nobody reads could fill
    # and stall it), where a test can read what the server logged.
    path = server_log(settings, port)
    with path.open("a") as log:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    process.log_path = path  # type: ignore[attr-defined]
    return process


def server_log(settings: Settings, port: int) -> Path:
    """Where the server started on ``port`` over ``settings`` writes its output."""
    return settings.home_dir.parent / f"server-{port}.log"


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{process.log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server was not ready in time")


@pytest.fixture(scope="session")
def trained_home(sim_world, tmp_path_factory) -> Settings:
    """A copy of the simulated retailer with its online store loaded and four champions."""
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(sim_world.settings.home_dir, root / "home")
    settings = sim_world.settings.model_copy(
        update={"home": root / "home", "mlruns": root / "mlruns"}
    )
    apply(settings)
    materialize(settings)
    train_and_register(settings, config=TrainConfig(value_days=VALUE_DAYS, max_train_cutoffs=4))
    return settings


@contextmanager
def serving(home: Settings, keys: dict[str, str]) -> Iterator[Server]:
    """`kizuna serve` on ``home`` on a free port, ready; stopped on exit."""
    port = free_port()
    process = start(home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield Server(url, home, keys, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def server(trained_home) -> Server:
    store = KeyStore(trained_home)
    keys = {scope: store.create(f"test-{scope}", (scope,)) for scope in SCOPES}
    keys["all"] = store.create("test-all", ("score", "lists", "offers", "events"))
    with serving(trained_home, keys) as running:
        yield running


def own_copy(trained: Settings, root: Path) -> Settings:
    """A copy of ``trained``'s home and MLflow store under ``root``, for a test that
    changes what it serves."""
    home = trained.model_copy(update={"home": root / "home", "mlruns": root / "mlruns"})
    shutil.copytree(trained.home_dir, home.home_dir)
    shutil.copytree(trained.mlruns_dir, home.mlruns_dir)
    return home


@pytest.fixture(scope="session")
def scratch_server(trained_home, tmp_path_factory) -> Server:
    """A server on its own copy of the trained home (home and MLflow store), for the tests
    that change what the shared one serves: the contract fuzzing and the erasures."""
    home = own_copy(trained_home, tmp_path_factory.mktemp("scratch"))
    store = KeyStore(home)
    keys = {scope: store.create(f"scratch-{scope}", (scope,)) for scope in SCOPES}
    with serving(home, keys) as running:
        yield running
