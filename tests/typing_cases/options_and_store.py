"""Checked by mypy in tests/test_design.py: the lines ending in "# error" must be errors, and only they."""

from __future__ import annotations

import threading
from typing import Sequence

from wsgi_logstream import jobs, logstream
from wsgi_logstream.channel import Entry, Summary
from wsgi_logstream.record import JobRecord
from wsgi_logstream.shared import StoreLog, StoreReader
from wsgi_logstream.store import JobLog, JobStore, LogReader


def work() -> None:
    pass


fine = logstream(work, heartbeat=5, title="Reindex", level="INFO")
typo = logstream(work, heartbeet=5)  # error
wrong_type = logstream(work, max_buffer="many")  # error
fine_jobs = jobs(work, max_history=100, timeout=60.0, allow_start=False)
typo_jobs = jobs(work, keep_finshed=10)  # error


class ThirdPartyStore:
    """A store written elsewhere: no base class, only the Protocol's methods."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}

    def create(self, record: JobRecord) -> None:
        self.records[record.id] = record

    def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def list(self) -> list[JobRecord]:
        return list(self.records.values())

    def finish(self, job_id: str, summary: Summary) -> bool:
        return False

    def request_cancel(self, job_id: str) -> bool:
        return False

    def reader(self, job_id: str, since: int) -> LogReader:
        return StoreReader(self, job_id, since)

    def open_log(self, job_id: str) -> JobLog:
        return StoreLog(self, self, job_id)

    def begin(self, job_id: str, started: float) -> bool:
        return True

    def append(self, job_id: str, entries: Sequence[Entry], progress: object) -> None: ...

    def read(self, job_id: str, after: int, limit: int) -> None: ...

    def wait(self, job_id: str, after: int, timeout: float) -> None: ...


class MissingMethods:
    def get(self, job_id: str) -> JobRecord | None:
        return None


good: JobStore = ThirdPartyStore()
bad: JobStore = MissingMethods()  # error
used = jobs(work, store=ThirdPartyStore())
event = threading.Event()
