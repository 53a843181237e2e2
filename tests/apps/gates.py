"""A target that waits for the test, shared by the Django and Flask test sites.

``gated`` logs ``first <key>`` (``?key=`` of the request), waits until
:func:`release` (30 s at most, or until it is cancelled), then logs
``second <key>``. A test that reads ``first K`` before releasing ``K`` has
proven the line was streamed while the target still ran; :data:`runs` counts
the runs of each key, to prove a refused request ran nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import parse_qs

from wsgi_logstream import wait_cancelled

log = logging.getLogger("tests.gated")
_gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
runs: Counter[str] = Counter()
_lock = threading.Lock()


def release(key: str) -> None:
    with _lock:
        _gates[key].set()


def gated(environ: dict[str, Any]) -> None:
    key = parse_qs(environ.get("QUERY_STRING", "")).get("key", ["k"])[0]
    with _lock:
        runs[key] += 1
        gate = _gates[key]
    log.info("first %s", key)
    for _ in range(600):  # 30 s at most
        if gate.is_set() or wait_cancelled(0.05):
            break
    log.info("second %s", key)


def read_live(stream: Any, key: str) -> bytes:
    """Read ``first <key>`` from ``stream`` (a ``tests.inproc.Chunks``) while the target waits, prove ``second``
    has not come, then release the target and read to the end."""
    stream.read_until(f"first {key}".encode())
    assert f"second {key}".encode() not in stream.body, "the target went on before it was released"
    release(key)
    return stream.read_to_end()  # type: ignore[no-any-return]
