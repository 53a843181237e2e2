"""Download: the whole log of a job as a file, streamed.

``GET /<id>/log.txt``, ``GET /<id>/log.ndjson``, or any format of ``GET
/<id>`` with ``?download=1``, answer the job's log as it stands when asked
(a running job's file ends there, with a summary that says it is running),
with ``Content-Disposition: attachment``. It is read through the same reader
and response as a stream, so it goes out in bounded chunks whatever its size:
from the journal (:mod:`wsgi_logstream.journal`) for what memory no longer
holds, then from memory. Lines neither kept are reported where they were
(``-- 9000 lines not kept: ... --`` in text, an ``event: dropped`` object with
a ``reason`` in NDJSON) and counted as dropped in the summary. ``?level=`` and
``?grep=`` filter a download as they filter a stream.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from .channel import Entry, Summary
from .filters import FilteredReader
from .formats import Format
from .options import Options
from .request import STREAM_HEADERS, StreamRequest, parse_stream_request
from .response import StreamResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .record import JobRecord
    from .store import JobStore, LogReader

__all__ = ["DOWNLOAD_PATHS", "DownloadFormat", "SnapshotReader", "open_download", "serve_download"]

#: The paths below a job that download its log, and the format each one is.
DOWNLOAD_PATHS = {"log.txt": "text", "log.ndjson": "ndjson"}
_EXTENSIONS = {"text": "log", "ndjson": "ndjson", "html": "html", "sse": "txt"}
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def serve_download(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    record: JobRecord,
    store: JobStore,
    options: Options,
    name: str | None,
) -> Iterable[bytes]:
    """The job's whole log as a file: ``name`` is its format (``text``, ``ndjson``), or None for the request's."""
    request = parse_stream_request(environ, ("GET", "HEAD"))
    if name is not None:
        request = replace(request, format=name)
    journaled = getattr(store, "journal_dir", None) is not None
    not_kept = (
        "beyond the journal's caps (journal_max_bytes, journal_total_bytes) and the memory's max_history"
        if journaled
        else "the store keeps only its last max_history lines (give it journal_dir= to keep the whole log)"
    )
    return open_download(
        start_response,
        request,
        request.make_format(ansi=options.ansi),
        record,
        lambda: store.reader(record.id, 0),
        not_kept=not_kept,
        heartbeat=options.heartbeat,
    )


def open_download(
    start_response: StartResponse,
    request: StreamRequest,
    fmt: Format,
    record: JobRecord,
    reader: Callable[[], LogReader],
    *,
    not_kept: str,
    heartbeat: float,
) -> Iterable[bytes]:
    """Start the download's response and return its body (nothing for ``HEAD``)."""
    filename = f"{_SAFE.sub('-', record.id)}.{_EXTENSIONS.get(fmt.name, 'txt')}"
    headers = [
        ("Content-Type", fmt.media_type),
        *STREAM_HEADERS,
        *fmt.headers,
        ("Content-Disposition", f'attachment; filename="{filename}"'),
    ]
    start_response("200 OK", headers)
    if request.head_only:
        return []
    started = record.started if record.started is not None else record.created
    running = Summary("running", started, time.time(), record.records)
    log_reader: LogReader = SnapshotReader(reader(), record.next_seq, running)
    if request.filter is not None:
        log_reader = FilteredReader(log_reader, request.filter)
    return StreamResponse(
        log_reader, DownloadFormat(fmt, not_kept), title=record.title, started=started, heartbeat=heartbeat
    )


class SnapshotReader:
    """The log as it stands now: a reader that ends at the sequence number it started at.

    What ``download`` reads: a running job's file ends where the job was when
    it was asked for, with a summary that says it is still running.
    """

    def __init__(self, reader: LogReader, stop: int, running: Summary) -> None:
        self._reader = reader
        self._stop = stop  # the first sequence number not to send
        self._next = 0
        self._running = running
        self._done = False

    @property
    def missed(self) -> int:
        return self._reader.missed

    @property
    def at_end(self) -> bool:
        return self._done or self._reader.at_end

    @property
    def summary(self) -> Summary | None:
        return self._reader.summary or self._running

    @property
    def next_seq(self) -> int:
        return self._reader.next_seq if self._reader.summary is not None else self._stop

    def take(self) -> tuple[int, Sequence[Entry]]:
        if self._done:
            return 0, ()
        missed, batch = self._reader.take()
        kept = [entry for entry in batch if entry.seq < self._stop]
        if len(kept) < len(batch) or (batch and batch[-1].seq >= self._stop - 1):
            self._done = True
        elif not batch and not missed and self._reader.summary is None:
            self._done = True  # nothing more now: the snapshot is complete
        return missed, kept

    def wait(self, timeout: float | None) -> None:
        if not self._done:
            self._reader.wait(timeout)

    def close(self) -> None:
        self._reader.close()


class DownloadFormat(Format):
    """A format whose "missed" lines are lines the store did not keep, and says so."""

    def __init__(self, fmt: Format, reason: str) -> None:
        self._format = fmt
        self._reason = reason
        self.name = fmt.name
        self.media_type = fmt.media_type
        self.headers = fmt.headers

    def head(self, title: str, started: float) -> bytes:
        return self._format.head(title, started)

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        if not missed:
            return self._format.batch(0, entries)
        lines = f"{missed} line{'' if missed == 1 else 's'}"
        if self.name == "ndjson":
            note = json.dumps({"event": "dropped", "count": missed, "reason": f"not kept: {self._reason}"}) + "\n"
        else:
            note = f"-- {lines} not kept: {self._reason} --\n"
        return note.encode() + self._format.batch(0, entries)

    def keepalive(self) -> bytes:
        return self._format.keepalive()

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        return self._format.end(summary, dropped, seq)
