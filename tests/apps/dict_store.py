"""A job store that keeps nothing but plain data, in another process.

The store's data (records, entries, summaries as dicts) lives in a
``multiprocessing`` manager's server process; the :class:`DictStore` this
process uses holds only a proxy. If the jobs app needed anything of a job
beyond the store interface (a live object, a thread, a callback), it could
not get it through here: so a passing contract suite proves the interface is
enough for a store in another process, as the Redis store is.
"""

from __future__ import annotations

import threading
import time
from multiprocessing.managers import BaseManager
from typing import Any, Sequence

from wsgi_logstream.channel import Entry, Summary
from wsgi_logstream.record import JobRecord, Progress
from wsgi_logstream.shared import LogSlice, StoreLog, StoreReader


class Backend:
    """Lives in the manager's process: dicts of plain data, and a condition for readers who wait."""

    def __init__(self, max_history: int, keep_finished: float, max_finished: int) -> None:
        self.max_history = max_history
        self.keep_finished = keep_finished
        self.max_finished = max_finished
        self.records: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.changed = threading.Condition()

    def create(self, record: dict[str, Any]) -> bool:
        with self.changed:
            self._prune()
            if record["id"] in self.records:
                return False
            self.records[record["id"]] = dict(record)
            self.logs[record["id"]] = []
            return True

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.changed:
            self._prune()
            record = self.records.get(job_id)
            return None if record is None else dict(record)

    def list(self) -> list[dict[str, Any]]:
        with self.changed:
            self._prune()
            return sorted((dict(r) for r in self.records.values()), key=lambda r: r["created"], reverse=True)

    def begin(self, job_id: str, started: float) -> bool:
        with self.changed:
            record = self.records.get(job_id)
            if record is None or record["status"] != "queued" or record["cancel_requested"]:
                return False
            if record["lease_until"] is not None and started > record["lease_until"]:
                return False  # not begun in time: lost
            record.update(status="running", started=started, lease_until=None)  # no lease: one process
            return True

    def finish(self, job_id: str, summary: dict[str, Any]) -> bool:
        with self.changed:
            record = self.records.get(job_id)
            if record is None or record["status"] not in ("queued", "running"):
                return False
            ended = JobRecord.from_dict(record).ended_with(Summary.from_dict(summary))
            record.update(ended.to_dict())
            self.changed.notify_all()
            return True

    def request_cancel(self, job_id: str) -> str | None:
        with self.changed:
            record = self.records.get(job_id)
            if record is None or record["status"] not in ("queued", "running"):
                return None
            record["cancel_requested"] = True
            return str(record["status"])

    def append(self, job_id: str, entries: list[dict[str, Any]], progress: dict[str, Any] | None) -> None:
        with self.changed:
            record = self.records.get(job_id)
            if record is None or record["status"] not in ("queued", "running"):
                return
            log = self.logs[job_id]
            log.extend(entries)
            del log[: max(len(log) - self.max_history, 0)]
            record["records"] += sum(1 for entry in entries if entry["kind"] == "log")
            record["next_seq"] = entries[-1]["seq"] + 1 if entries else record["next_seq"]
            record["first_seq"] = log[0]["seq"] if log else record["next_seq"]
            if progress is not None:
                record["progress"] = progress
            self.changed.notify_all()

    def read(
        self, job_id: str, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None] | None:
        with self.changed:
            record = self.records.get(job_id)
            if record is None:
                return None
            entries = [entry for entry in self.logs[job_id] if entry["seq"] > after][:limit]
            summary = JobRecord.from_dict(record).summary()
            return entries, int(record["next_seq"]), None if summary is None else summary.to_dict()

    def wait(self, job_id: str, after: int, timeout: float) -> None:
        def ready() -> bool:
            record = self.records.get(job_id)
            return record is None or record["next_seq"] > after + 1 or record["status"] not in ("queued", "running")

        with self.changed:
            self.changed.wait_for(ready, timeout)

    def _prune(self) -> None:
        now = time.time()
        finished = sorted(
            (r["ended"] or 0.0, job_id)
            for job_id, r in self.records.items()
            if r["status"] not in ("queued", "running")
        )
        excess = len(finished) - self.max_finished
        for position, (ended, job_id) in enumerate(finished):
            if position < excess or now - ended > self.keep_finished:
                del self.records[job_id]
                del self.logs[job_id]


class _Manager(BaseManager):
    pass


_Manager.register("Backend", Backend)


class DictStore:
    """A :class:`~wsgi_logstream.store.JobStore` whose data is in another process."""

    def __init__(self, *, max_history: int = 10_000, keep_finished: float = 3600.0, max_finished: int = 100) -> None:
        self._manager = _Manager()
        self._manager.start()
        self._backend: Any = self._manager.Backend(max_history, keep_finished, max_finished)  # type: ignore[attr-defined]

    def shutdown(self) -> None:
        self._backend = None
        self._manager.shutdown()

    # -- JobStore ------------------------------------------------------------------

    def create(self, record: JobRecord) -> None:
        if not self._backend.create(record.to_dict()):
            raise ValueError(f"job id {record.id!r} is already taken")

    def get(self, job_id: str) -> JobRecord | None:
        data = self._backend.get(job_id)
        return None if data is None else JobRecord.from_dict(data)

    def list(self) -> list[JobRecord]:
        return [JobRecord.from_dict(data) for data in self._backend.list()]

    def finish(self, job_id: str, summary: Summary) -> bool:
        return bool(self._backend.finish(job_id, summary.to_dict()))

    def request_cancel(self, job_id: str) -> bool:
        status = self._backend.request_cancel(job_id)
        if status == "queued":
            now = time.time()
            self.finish(job_id, Summary("cancelled", now, now, 0))
        return status is not None

    def reader(self, job_id: str, since: int) -> StoreReader:
        return StoreReader(self, job_id, since)

    def open_log(self, job_id: str) -> StoreLog:
        return StoreLog(self, self, job_id)

    # -- EntryLog, for the reader and the log -------------------------------------------

    def begin(self, job_id: str, started: float) -> bool:
        return bool(self._backend.begin(job_id, started))

    def append(self, job_id: str, entries: Sequence[Entry], progress: Progress | None) -> None:
        plain = (
            None if progress is None else {"done": progress.done, "total": progress.total, "message": progress.message}
        )
        self._backend.append(job_id, [entry.to_dict() for entry in entries], plain)

    def read(self, job_id: str, after: int, limit: int) -> LogSlice | None:
        got = self._backend.read(job_id, after, limit)
        if got is None:
            return None
        entries, next_seq, summary = got
        return LogSlice(
            [Entry.from_dict(e) for e in entries], next_seq, None if summary is None else Summary.from_dict(summary)
        )

    def wait(self, job_id: str, after: int, timeout: float) -> None:
        self._backend.wait(job_id, after, timeout)
