"""Answers that follow the data without making a request wait for them.

The KPIs and the category cycles are recomputed when the lake changes, which every event
batch does (a few seconds at 100,000 customers). :class:`Refreshing` keeps the last answer
and, when the data's version moves, serves it while one background thread computes the
next; only the very first answer is computed in the request. So a page after an event
batch is as fast as before it, and shows the new figures a few seconds later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Refreshing(Generic[T]):
    """The answer of ``compute`` for the data's ``version()``, refreshed behind the requests.

    Args:
        compute: the answer for the data as it is now (may take seconds).
        version: cheap; changes whenever ``compute``'s answer would.
        name: for the log.
    """

    def __init__(self, compute: Callable[[], T], version: Callable[[], Hashable], name: str):
        self._compute, self._version, self.name = compute, version, name
        self._lock = threading.Lock()
        self._answer: tuple[Hashable, T] | None = None
        self._worker: threading.Thread | None = None
        self.error: str | None = None

    def get(self, wait: bool = True) -> T | None:
        """The current answer, or the previous one while the current one is computed.
        Raises what ``compute`` raises when there is no answer yet at all.

        Args:
            wait: when there is no answer yet and another thread is computing the first
                (the start-up warm-up), wait for it; with False return None instead.
        """
        version = self._version()
        answer = self._answer
        if answer is not None and answer[0] == version:
            return answer[1]
        if answer is None:
            # The first answer: the requests that wait, wait for the one compute.
            if not self._lock.acquire(blocking=wait):
                return None
            try:
                if self._answer is None or self._answer[0] != version:
                    self._answer = (version, self._compute())
                return self._answer[1]
            finally:
                self._lock.release()
        self._refresh(version)
        return answer[1]

    def _refresh(self, version: Hashable) -> None:
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return

            def work() -> None:
                try:
                    self._answer = (version, self._compute())
                    self.error = None
                except Exception as exc:  # keep serving the last answer; say why
                    log.exception("could not refresh %s", self.name)
                    self.error = f"{type(exc).__name__}: {exc}"

            self._worker = threading.Thread(target=work, name=f"refresh-{self.name}", daemon=True)
            self._worker.start()

    def wait(self, seconds: float = 60) -> None:
        """Wait for a refresh in flight (tests and benchmarks)."""
        worker = self._worker
        if worker is not None:
            worker.join(seconds)
