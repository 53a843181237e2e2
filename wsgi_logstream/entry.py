"""What a log holds: entries (records, progress, sections) and the summary of how it ended.

Plain data, shared by the channel (:mod:`wsgi_logstream.channel`, which
re-exports both), the formats and the stores.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol

__all__ = ["Entry", "Journal", "Record", "Summary"]

#: A log record as a channel's inbox holds it, before it is numbered: ``(created, levelno,
#: levelname, name, message, line)``, the fields of a ``"log"`` :class:`Entry` in its constructor's order.
Record = tuple[float, int, str, str, str, str]


class Entry:
    """One thing that happened: a log record (``kind == "log"``), progress, or a section's start or end.

    A ``"section"`` entry (:mod:`wsgi_logstream.sections`) keeps its name in
    ``message``, ``"start"`` or ``"end"`` in ``line``, its depth (1 for the
    outermost) in ``levelno``, and, at its end, its status (``"ok"`` or
    ``"error"``) in ``levelname`` and its duration in seconds in ``done``.

    A ``"partial"`` entry is a log record's line while it is being rewritten
    with CR (a progress bar): the next state of that line, or its final
    ``"log"`` entry, takes the same sequence number and replaces it
    (``Channel.append_partial``).
    """

    __slots__ = (
        "created",
        "done",
        "encoded",
        "end",
        "kind",
        "levelname",
        "levelno",
        "line",
        "message",
        "name",
        "seq",
        "total",
    )
    #: The slots that are the entry's data (``to_dict``); the others are the channel's bookkeeping.
    fields = ("created", "done", "kind", "levelname", "levelno", "line", "message", "name", "seq", "total")

    def __init__(
        self,
        kind: str,
        created: float,
        levelno: int = 0,
        levelname: str = "",
        name: str = "",
        message: str = "",
        line: str = "",
        done: float = 0.0,
        total: float | None = None,
    ) -> None:
        self.seq = 0
        self.kind = kind
        self.created = created
        self.levelno = levelno
        self.levelname = levelname
        self.name = name
        self.message = message
        self.line = line
        self.done = done
        self.total = total
        # Characters in the channel up to and including this entry (set by the channel): lets a
        # reader bound its chunk with one subtraction instead of a loop over what it takes.
        self.end = 0
        # Wire bytes per format (``response.cache_key`` -> bytes), filled by the first of several
        # readers to encode this entry so that the others only join (``response.entry_encoder``).
        self.encoded: dict[object, bytes] | None = None

    def __repr__(self) -> str:
        return f"<Entry {self.seq} {self.kind} {self.line or self.message!r}>"

    @classmethod
    def progress(cls, created: float, done: float, total: float | None, message: str | None) -> Entry:
        """A progress entry, as every log's ``append_progress`` makes it."""
        return cls("progress", created, message=message or "", done=done, total=total)

    @classmethod
    def section(cls, created: float, action: str, name: str, depth: int, status: str, elapsed: float) -> Entry:
        """A section's start or end, as every log's ``append_section`` makes it (where each field goes: above)."""
        return cls("section", created, depth, status, "", name, action, elapsed)

    @classmethod
    def log(cls, seq: int, record: Record) -> Entry:
        """The ``"log"`` entry numbered ``seq`` for an inbox's ``record``."""
        entry = cls("log", *record)
        entry.seq = seq
        return entry

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for a store in another process."""
        return {name: getattr(self, name) for name in self.fields}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        entry = cls(
            str(data["kind"]),
            float(data["created"]),
            int(data.get("levelno", 0)),
            str(data.get("levelname", "")),
            str(data.get("name", "")),
            str(data.get("message", "")),
            str(data.get("line", "")),
            float(data.get("done", 0.0)),
            None if data.get("total") is None else float(data["total"]),
        )
        entry.seq = int(data["seq"])
        return entry


@dataclass(frozen=True)
class Summary:
    """How an operation ended. ``status`` is ok, error, timeout or cancelled."""

    status: str
    started: float
    ended: float
    records: int
    error: str | None = None
    traceback: str | None = None

    @property
    def elapsed(self) -> float:
        return max(self.ended - self.started, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            status=str(data["status"]),
            started=float(data["started"]),
            ended=float(data["ended"]),
            records=int(data["records"]),
            error=None if data.get("error") is None else str(data["error"]),
            traceback=None if data.get("traceback") is None else str(data["traceback"]),
        )


class Journal(Protocol):
    """Where a channel also hands its entries, in order (a job's file: :mod:`wsgi_logstream.journal`)."""

    #: Entries to write, added under the channel's lock (each line once, at its last state).
    pending: deque[Entry]

    def flush(self) -> None:
        """Write what is pending; called by the appending thread, outside the lock, once enough is."""
