"""A newly promoted champion is picked up without a restart and without a failed request.

Runs last among the serving tests (it changes the champion the others read).
"""

from __future__ import annotations

import threading
import time

from kizuna.training import registry
from kizuna.training.runs import train_and_register
from kizuna.training.trainer import TrainConfig
from tests.world import VALUE_DAYS


def test_champion_swap_under_load_fails_no_request(server) -> None:
    settings = server.settings
    old = registry.champion_version(settings, "churn")
    (trained,), _ = train_and_register(
        settings, ["churn"], TrainConfig(seed=11, value_days=VALUE_DAYS, max_train_cutoffs=3)
    )
    new = trained.verdict.version
    assert new != old
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with server.client("score") as c:
            while not stop.is_set():
                response = c.post("/v1/scores", json={"customer_ids": ["C000001", "C000002"]})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["scores"][0]["model_versions"]["churn"])

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(1)
    if trained.verdict.alias != "champion":
        registry.promote(settings, "churn", new, "testing the swap under load")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not versions or versions[-1] != new):
        time.sleep(0.5)
    time.sleep(1)
    stop.set()
    for client in clients:
        client.join()
    assert len(statuses) > 50
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert versions[0] == old and versions[-1] == new
    with server.client("score") as c:
        assert c.get("/v1/models").json()["models"]["churn"]["version"] == new
