"""Everything the command reads of a job, in one place.

The jobs API is the library's (:mod:`wsgi_logstream.jobs`); the command needs
only a job's path, how far its log has got, whether it ended and how, and how
many jobs of an app are running. Reading them here, and nowhere else in the
command, keeps a change of that API to a few lines of this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..jobs import Job, JobsApp

__all__ = ["ending", "job_path", "next_seq", "running", "start", "wait"]


def start(app: JobsApp) -> Job:
    """Start the app's target once, now (as at launch)."""
    return app.start()


def job_path(job: Job) -> str:
    """The job's path below the jobs app (``/<id>``)."""
    return f"/{job.id}"


def next_seq(job: Job) -> int:
    """The sequence number the job's next log entry will get."""
    return job.channel.next_seq


def wait(job: Job, timeout: float | None) -> bool:
    """Wait until the job has ended; True if it did within ``timeout``."""
    return job.wait(timeout)


def ending(job: Job) -> str:
    """How the job ended, for the terminal: ``ok``, ``error: boom``, ``cancelled``..."""
    summary = job.channel.summary
    error = f": {summary.error}" if summary is not None and summary.error else ""
    return f"{job.status}{error}"


def running(app: JobsApp) -> int:
    """How many of the app's jobs are running now."""
    return sum(1 for job in app.store.jobs() if job.status == "running")
