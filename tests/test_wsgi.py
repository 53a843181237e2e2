"""Every response keeps the WSGI contract, checked by the standard library's own validator.

``wsgiref.validate.validator`` checks the status line, header names and
values, that only bytes are yielded, that ``start_response`` is called before
the body, and that ``close()`` is called; its complaints are warnings, which
this suite turns into errors.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, NoReturn
from wsgiref.validate import validator

import pytest

from tests.inproc import call
from tests.servers import wait_until
from tests.wire import summary
from wsgi_logstream import logstream
from wsgi_logstream import response as response_module
from wsgi_logstream.channel import Channel, Summary
from wsgi_logstream.formats import TextFormat
from wsgi_logstream.response import StreamResponse

log = logging.getLogger("tests.wsgi")


def two_lines() -> None:
    log.info("one")
    log.warning("two")


def fails() -> NoReturn:
    log.info("before")
    raise ValueError("broken")


def _validated(app: Any, query: str = "", **kwargs: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    with call(validator(app), query, **kwargs) as response:
        body = response.read_to_end()
    for name, value in response.headers:
        assert isinstance(name, str) and isinstance(value, str)
    return response.code, response.headers, body


@pytest.mark.parametrize("name", ["text", "html", "sse", "ndjson"])
@pytest.mark.parametrize("target", [two_lines, fails], ids=["ok", "error"])
def test_every_stream_passes_the_wsgi_validator(name: str, target: Callable[[], None]) -> None:
    code, _, body = _validated(logstream(target), f"format={name}")
    assert code == 200
    end = summary(body, name)
    assert (end["status"], end["records"]) == (("ok", 2) if target is two_lines else ("error", 1))


@pytest.mark.parametrize(
    ("query", "kwargs", "expected"),
    [
        ("format=nope", {}, 400),
        ("format=text&format=html", {}, 400),
        ("format=text", {"method": "PUT"}, 405),
        ("format=text", {"method": "DELETE"}, 405),
        ("format=sse", {"method": "HEAD"}, 200),
        ("", {"headers": {"Accept": "application/json"}}, 406),
        ("format=sse", {"headers": {"Last-Event-ID": "3"}}, 204),
    ],
    ids=["400-format", "400-repeated", "405-put", "405-delete", "head", "406", "204-reconnect"],
)
def test_every_refusal_passes_the_wsgi_validator(query: str, kwargs: dict[str, Any], expected: int) -> None:
    code, _, body = _validated(logstream(two_lines), query, **kwargs)
    assert code == expected
    if expected == 204 or kwargs.get("method") == "HEAD":
        assert body == b""


def test_a_503_passes_the_wsgi_validator() -> None:
    release = threading.Event()

    def blocks() -> None:
        log.info("running")
        assert release.wait(30)

    app = logstream(blocks, max_concurrent=1, heartbeat=30)
    with call(app, "format=text") as running:
        running.read_until(b"running")
        code, headers, _ = _validated(app, "format=text")
        assert code == 503
        assert any(k == "Retry-After" for k, _ in headers)
        release.set()
        running.read_to_end()


def test_a_timed_out_stream_passes_the_wsgi_validator() -> None:
    release = threading.Event()

    def slow() -> None:
        release.wait(30)

    app = logstream(slow, timeout=0.1, heartbeat=30)
    try:
        code, _, body = _validated(app, "format=ndjson")
    finally:
        release.set()
    assert code == 200 and b'"status":"timeout"' in body


def test_close_is_idempotent_and_runs_its_cleanup_once() -> None:
    channel = Channel(10)
    reader = channel.reader()
    closes: list[float] = []
    response = StreamResponse(
        reader, TextFormat(), title="t", started=0.0, heartbeat=30, on_close=lambda: closes.append(1)
    )
    assert next(response).startswith(b"-- t: started")
    response.close()
    response.close()
    assert closes == [1]
    assert channel.readers == 0, "the reader is detached at the first close"
    with pytest.raises(StopIteration):
        next(response)


def test_a_response_closed_before_it_was_iterated_ends_cleanly() -> None:
    done = threading.Event()

    def target() -> None:
        log.info("nobody reads this")
        done.set()

    app = logstream(target)
    stream = call(app, "format=text", validate=False)  # closes twice and reads after close, on purpose
    stream.result.close()  # type: ignore[attr-defined]
    stream.result.close()  # type: ignore[attr-defined]
    assert list(stream.result) == []
    assert done.wait(10)
    wait_until(lambda: app.running == 0, 10, "the operation to end")


def test_iterating_past_the_end_keeps_raising_stop_iteration() -> None:
    channel = Channel(10)
    response = StreamResponse(channel.reader(), TextFormat(), title="t", started=0.0, heartbeat=30)
    now = time.time()
    channel.close(Summary("ok", now, now, 0))
    chunks = list(response)
    assert chunks[-1].startswith(b"-- ok ")
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    with pytest.raises(StopIteration):
        next(response)
    response.close()


def test_a_fast_operation_cuts_the_pause_before_the_second_write_short_rather_than_lose_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pause after the small first write (for proxies that decide on their first read) must end once a
    # quarter of the buffer waits: a fast operation fills a buffer in 50 ms, and its oldest lines would go.
    monkeypatch.setattr(response_module, "FIRST_GAP", 600.0)
    channel = Channel(8)
    response = StreamResponse(channel.reader(), TextFormat(), title="t", started=0.0, heartbeat=30)
    assert next(response).startswith(b"-- t")
    now = time.time()
    for n in range(2):
        channel.append_log(now, logging.INFO, "INFO", "app", f"line {n}", f"line {n}")
    got: list[bytes] = []
    second = threading.Thread(target=lambda: got.append(next(response)))
    second.start()
    second.join(10)
    assert got and b"line 0" in got[0], "the second write waited out the whole pause"
    channel.close(Summary("ok", now, now, 2))
    assert b"line 1" in b"".join([got[0], *response])
    response.close()
