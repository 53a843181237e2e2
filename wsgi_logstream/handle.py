"""A job this process started: what :meth:`JobsApp.start <wsgi_logstream.jobs.JobsApp.start>` returns."""

from __future__ import annotations

import time
from typing import Protocol

from .operation import Operation
from .record import JobRecord
from .store import JobStore

__all__ = ["JobHandle"]


class Jobs(Protocol):
    """What a handle needs of the jobs app that made it."""

    store: JobStore

    def lookup(self, job_id: str) -> JobRecord | None: ...


class JobHandle:
    """A job this process started (:meth:`JobsApp.start`): its id, its record, and waiting for it."""

    def __init__(self, app: Jobs, job_id: str, operation: Operation | None) -> None:
        self.id = job_id
        self._app = app
        self._operation = operation

    @property
    def url_path(self) -> str:
        """The job's path below the jobs app's mount point."""
        return f"/{self.id}"

    @property
    def record(self) -> JobRecord | None:
        """The job as stored now (None once forgotten)."""
        return self._app.lookup(self.id)

    @property
    def status(self) -> str:
        record = self.record
        return "forgotten" if record is None else record.status

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the target has returned (a queued job: until it ended); True if it did within ``timeout``."""
        if self._operation is not None:
            return self._operation.done.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # run elsewhere: only the store knows
            record = self.record
            if record is None or record.finished:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05 if deadline is None else max(min(0.05, deadline - time.monotonic()), 0))

    def cancel(self) -> bool:
        """Ask the job to stop; True if it was still running."""
        return self._app.store.request_cancel(self.id)
