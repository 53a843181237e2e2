"""Fan-out contenders: one job, many viewers, under gunicorn's gevent worker.

``gunicorn -k gevent --pythonpath bench app_fanout:application``. One app
serves the three contenders of the fan-out workload (``bench/run.py --only
fanout``), so that all three run the same producer and the same protocol:

* ``GET /logstream/setup``: starts a ``wsgi_logstream.jobs`` job (whose
  operation waits for ``/go``) and answers its id; viewers then ``GET
  /logstream/<id>?format=...`` (any of the four formats);
* ``GET /ceiling``: the bare ceiling, a viewer's generator reading
  pre-formatted lines from one shared list (no ``logging``, nothing per
  viewer but a cursor and a join); a producer greenlet appends the lines and
  wakes the viewers through one shared event it replaces each time. With
  ``?format=sse`` (``html``, ``ndjson``) the list holds each line framed by
  plain f-strings as that format of the library frames it, so that a ceiling
  viewer sends the same bytes as a library viewer of that format;
* ``GET /recipe``: the broadcast recipe people write: a handler on the root
  logger formats each record once and puts the line into one ``queue.Queue``
  per viewer; each viewer's generator yields one line per chunk;
* ``GET /go?rate=R&seconds=S``: every producer that is waiting starts: R lines a
  second for S seconds (the workload's lines: seq, ``time.time()`` of the
  call, ``#``), then an ``END`` line, and the streams end.

The viewers connect before ``/go``: nobody replays history, every viewer
should receive every line, and the client times each from the ``logging``
call (or, for the ceiling, the line's making) to its read.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator
from urllib.parse import parse_qs

import workload

from wsgi_logstream import jobs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(workload.LOGGER)
_go = threading.Event()
_plan = {"rate": 1000.0, "seconds": 10.0}


def _produce(emit: Any) -> None:
    """Call ``emit(i, t)`` ``rate`` times a second for ``seconds``, on schedule (catching up if late)."""
    _go.wait()
    rate, seconds = _plan["rate"], _plan["seconds"]
    count = int(rate * seconds)
    started = time.monotonic()
    for i in range(count):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        emit(i, time.time())


# -- wsgi_logstream: one job --------------------------------------------------------


def _operation() -> None:
    info = log.info
    started = time.perf_counter()
    _produce(lambda i, t: info(workload.MESSAGE, i, t))
    info(workload.END, time.perf_counter() - started, time.time())


_jobs = jobs(_operation, title="fan-out", heartbeat=30)


# -- the bare ceiling: one shared list of pre-formatted lines -------------------------------


def _framed(prefix: str, i: int, t: float) -> dict[str, bytes]:
    """Line ``i`` as each of the library's four formats frames it, by plain f-strings: the ceiling's ``?format=``.

    The same shape and about the same length as ``wsgi_logstream``'s own bytes for that line, so that a ceiling
    viewer of a format writes (and the client reads) what a library viewer of that format does.
    """
    message = f"seq={i:07d} t={t:.6f} {workload.PAD}#"
    line = prefix + message
    seq = i + 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{round(t % 1 * 1e6) % 1_000_000:06d}+00:00"
    return {
        "text": f"{line}\n".encode(),
        "sse": f"id: {seq}\ndata: {line}\n\n".encode(),
        "ndjson": (
            f'{{"event":"log","seq":{seq},"time":{t!r},"ts":"{stamp}","level":"INFO","levelno":20,'
            f'"logger":"{workload.LOGGER}","message":"{message}","line":"{line}"}}\n'
        ).encode(),
        "html": f'<span class="r i" data-seq="{seq}" data-t="{t:.3f}">{line}\n</span>'.encode(),
    }


class _Shared:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.framed: dict[str, list[bytes]] = {"text": self.lines, "sse": [], "ndjson": [], "html": []}
        self.event = threading.Event()
        self.done = False
        self.started = False
        self.lock = threading.Lock()

    def run(self) -> None:
        prefix = logging.Formatter(workload.FORMAT).format(
            logging.LogRecord(workload.LOGGER, logging.INFO, "", 0, "", None, None)
        )
        started = time.perf_counter()

        def emit(i: int, t: float) -> None:
            for name, data in _framed(prefix, i, t).items():
                self.framed[name].append(data)
            # The cheapest broadcast: set the event every viewer waits on and put a fresh one in its place.
            event, self.event = self.event, threading.Event()
            event.set()

        _produce(emit)
        end = f"{prefix}{workload.END % (time.perf_counter() - started, time.time())}\n".encode()
        for lines in self.framed.values():
            lines.append(end)
        self.done = True
        self.event.set()

    def viewer(self, name: str) -> Iterator[bytes]:
        with self.lock:
            if not self.started:
                self.started = True
                threading.Thread(target=self.run, daemon=True).start()
        cursor = 0
        yield b"-- ceiling --\n"
        lines = self.framed[name]
        while True:
            event = self.event
            if cursor < len(lines):
                end = len(lines)
                yield b"".join(lines[cursor:end])
                cursor = end
            elif self.done:
                return
            else:
                event.wait()


_shared = _Shared()


# -- the broadcast recipe: a root handler, one queue per viewer ---------------------------


class _Broadcast(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.queues: list[queue.Queue[str | None]] = []
        self.setFormatter(logging.Formatter(workload.FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        for q in list(self.queues):
            q.put(line)


_broadcast = _Broadcast()
_recipe_started = threading.Lock()
_recipe_running = False


def _recipe_operation() -> None:
    log.setLevel(logging.INFO)
    logging.getLogger().addHandler(_broadcast)
    try:
        _operation()
    finally:
        for q in list(_broadcast.queues):
            q.put(None)
        logging.getLogger().removeHandler(_broadcast)


def _recipe_viewer() -> Iterator[bytes]:
    global _recipe_running
    lines: queue.Queue[str | None] = queue.Queue()
    _broadcast.queues.append(lines)
    with _recipe_started:
        if not _recipe_running:
            _recipe_running = True
            threading.Thread(target=_recipe_operation, daemon=True).start()
    try:
        yield b"-- recipe --\n"
        while True:
            line = lines.get()
            if line is None:
                return
            yield (line + "\n").encode()
    finally:
        _broadcast.queues.remove(lines)


# -- routing --------------------------------------------------------------------------------


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/go":
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        _plan["rate"] = float(query.get("rate", "1000"))
        _plan["seconds"] = float(query.get("seconds", "10"))
        _go.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"go\n"]
    if path == "/logstream/setup":
        handle = _jobs.start({})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [handle.id.encode()]
    if path.startswith("/logstream/"):
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/logstream"
        environ["PATH_INFO"] = path[len("/logstream") :]
        return _jobs(environ, start_response)
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-cache")]
    if path == "/ceiling":
        start_response("200 OK", headers)
        name = parse_qs(environ.get("QUERY_STRING", "")).get("format", ["text"])[-1]
        return _shared.viewer(name if name in _shared.framed else "text")
    if path == "/recipe":
        start_response("200 OK", headers)
        return _recipe_viewer()
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
