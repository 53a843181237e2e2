"""Everything the command reads of a job, in one place.

The jobs API is the library's (:mod:`wsgi_logstream.jobs`); the command needs
only a job's path, how far its log has got, whether it ended and how, and how
many jobs of an app are running. Reading them here, and nowhere else in the
command, keeps a change of that API to a few lines of this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..record import ACTIVE

if TYPE_CHECKING:
    from ..jobs import JobHandle, JobsApp

__all__ = ["ending", "job_path", "next_seq", "running", "start", "wait"]


def start(app: JobsApp) -> JobHandle:
    """Start the app's target once, now (as at launch)."""
    return app.start()


def job_path(job: JobHandle) -> str:
    """The job's path below the jobs app (``/<id>``)."""
    return f"/{job.id}"


def next_seq(job: JobHandle) -> int:
    """The sequence number the job's next log entry will get."""
    record = job.record
    return record.next_seq if record is not None else 1


def wait(job: JobHandle, timeout: float | None) -> bool:
    """Wait until the job has ended; True if it did within ``timeout``."""
    return job.wait(timeout)


def ending(job: JobHandle) -> str:
    """How the job ended, for the terminal: ``ok``, ``error: boom``, ``cancelled``..."""
    record = job.record
    if record is None:
        return "forgotten"
    return f"{record.status}: {record.error}" if record.error else record.status


def running(app: JobsApp) -> int:
    """How many of the app's jobs are running now."""
    return sum(1 for record in app.records() if record.status in ACTIVE)
