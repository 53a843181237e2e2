"""A job as plain data: what any process can hold and any web worker can show.

A :class:`JobRecord` holds no thread, lock or callback, only values that a
store in another process (Redis, a database) can keep and give back: who
started the job, its status and times, its last progress, where its log
starts and ends, and how it ended. Running the job is the business of
whoever runs it (a web thread, a task-queue worker, the command line).

A job's status has one source: the record as stored, settled by
:func:`due_ending`. A running job past its deadline has timed out, and one
whose runner stopped renewing its lease is lost, whoever looks first; the
jobs app writes that ending to the store at that first look, so the list, the
JSON and every reader agree from then on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from .channel import Summary

__all__ = ["ACTIVE", "FINAL", "STATUSES", "JobRecord", "Progress", "due_ending"]

#: Every status a job can have. ``queued``: waiting for a worker (task queues);
#: ``running``; then one of :data:`FINAL`.
STATUSES = ("queued", "running", "ok", "error", "timeout", "cancelled", "lost")
ACTIVE = frozenset({"queued", "running"})
FINAL = frozenset(STATUSES) - ACTIVE


@dataclass(frozen=True)
class Progress:
    """The last ``progress()`` a job reported."""

    done: float
    total: float | None = None
    message: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """One job, as stored. Times are epoch seconds (``time.time()``)."""

    id: str
    title: str
    created: float
    owner: str | None = None
    status: str = "queued"
    started: float | None = None
    ended: float | None = None
    #: When a queued or running job times out (``created`` + the ``timeout`` option).
    deadline: float | None = None
    #: Until when the job's runner has promised to be alive; None: it runs in
    #: the process that serves it, and cannot be lost without the store. A
    #: queued job's lease is the time by which a worker must begin it.
    lease_until: float | None = None
    cancel_requested: bool = False
    progress: Progress | None = None
    #: Log records appended so far (not counting progress events).
    records: int = 0
    #: The sequence numbers of the oldest entry still held and of the next one.
    first_seq: int = 1
    next_seq: int = 1
    error: str | None = None
    traceback: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def summary(self) -> Summary | None:
        """How the job ended, or None while it is queued or running."""
        if not self.finished:
            return None
        started = self.started if self.started is not None else self.created
        return Summary(
            status=self.status,
            started=started,
            ended=self.ended if self.ended is not None else started,
            records=self.records,
            error=self.error,
            traceback=self.traceback,
        )

    def ended_with(self, summary: Summary) -> JobRecord:
        """This record, finished as ``summary`` says."""
        return replace(
            self,
            status=summary.status,
            started=self.started if self.started is not None else summary.started,
            ended=summary.ended,
            records=max(self.records, summary.records),
            error=summary.error,
            traceback=summary.traceback,
            lease_until=None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe data."""
        data = asdict(self)
        data["progress"] = None if self.progress is None else asdict(self.progress)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        fields = dict(data)
        progress = fields.get("progress")
        fields["progress"] = None if progress is None else Progress(**progress)
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in fields.items() if key in known})


def due_ending(record: JobRecord, now: float) -> Summary | None:
    """The ending a queued or running job has reached by ``now`` without its runner saying so.

    Past its deadline it has timed out; past its lease, the process running
    it is gone (killed, out of memory, host down) and it is lost, as is a
    queued job that no worker began in time (the broker lost it, or no
    worker runs). None if
    neither, or if it already finished.
    """
    if record.finished:
        return None
    started = record.started if record.started is not None else record.created
    if record.deadline is not None and now >= record.deadline:
        allowed = record.deadline - record.created
        return Summary("timeout", started, now, record.records, error=f"timed out after {_seconds(allowed)}")
    if record.lease_until is not None and now > record.lease_until:
        if record.status == "queued":  # the lease a queued job is given: a worker must begin it by then
            waited = _seconds(record.lease_until - record.created)
            return Summary("lost", started, now, record.records, error=f"no worker began this job within {waited}")
        return Summary(
            "lost", started, now, record.records, error="the process running this job stopped (its lease expired)"
        )
    return None


def _seconds(value: float) -> str:
    return f"{value:g}s" if math.isfinite(value) else "?"
