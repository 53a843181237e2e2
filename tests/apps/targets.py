"""Targets shared by tests."""

from __future__ import annotations

import logging
import threading


class CountingTarget:
    """A target that counts its runs (to prove a rejected request ran nothing) and logs ``ran <n>``."""

    def __init__(self, logger: str = "tests.target") -> None:
        self.runs = 0
        self._log = logging.getLogger(logger)
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.runs += 1
            runs = self.runs
        self._log.info("ran <%s>", runs)
