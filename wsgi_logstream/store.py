"""Where jobs live between requests: the store interface and its in-memory kind.

The WSGI layer (:mod:`wsgi_logstream.jobs`) talks to jobs only through
:class:`JobStore`, and to a job's log only through the
:class:`~wsgi_logstream.channel.Channel` interface (``reader(since)``,
``first_seq``, ``next_seq``, ``summary``, ``last_progress``). A shared store
(Redis, for several gunicorn workers and hosts) implements both against its
own storage; nothing in the WSGI layer changes.

Retention is lazy: finished jobs are forgotten when the store is next used,
after ``keep_finished`` seconds or beyond ``max_finished`` of them, so no
timer thread is left running in the host process.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["JobStore", "MemoryStore"]


class JobStore(ABC):
    """What the jobs app needs from a store."""

    @abstractmethod
    def add(self, job: Job) -> None:
        """Keep ``job`` (a new, running one)."""

    @abstractmethod
    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None if unknown or forgotten."""

    @abstractmethod
    def jobs(self) -> list[Job]:
        """Running and recent jobs, newest first."""


class MemoryStore(JobStore):
    """Jobs in a dict in this process: one worker process, any number of threads."""

    def __init__(self, *, keep_finished: float = 3600.0, max_finished: int = 100) -> None:
        self.keep_finished = keep_finished
        self.max_finished = max_finished
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise ValueError(f"job id {job.id!r} is already taken")
            self._jobs[job.id] = job
            self._prune()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            self._prune()
            return sorted(self._jobs.values(), key=lambda job: job.created, reverse=True)

    def _prune(self) -> None:
        now = time.time()
        finished = []
        for job in self._jobs.values():
            job.check_timeout()
            ended = job.ended
            if ended is not None:
                finished.append((ended, job.id))
        finished.sort()
        excess = len(finished) - self.max_finished
        for position, (ended, job_id) in enumerate(finished):
            if position < excess or now - ended > self.keep_finished:
                del self._jobs[job_id]
