"""Many readers of one log: shared encodings, one shared wake-up, and nobody held back by anybody else.

A job watched by many people encodes each entry once per format and wakes
its readers through one event per channel (``Reader.take_encoded``, ``response.entry_encoder``,
``Reader.wait``). These tests pin what that must not change: every reader's
bytes are exactly those a lone reader gets, whatever chunks each took; a slow
reader loses only its own lines; and no reader sleeps through an entry.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

import pytest

from wsgi_logstream.channel import Channel, Summary
from wsgi_logstream.formats import Format, HtmlFormat, NdjsonFormat, SseFormat, TextFormat
from wsgi_logstream.response import StreamResponse

FORMATS: dict[str, Callable[[], Format]] = {
    "text": TextFormat,
    "text-ansi": lambda: TextFormat(ansi=True),
    "html": HtmlFormat,
    "sse": SseFormat,
    "sse-detail": lambda: SseFormat(detail=True),
    "ndjson": NdjsonFormat,
}

# Lines that exercise every escaping rule: control characters, colour, CR and
# CRLF, lines that would forge the text format's own, HTML, SSE fields, lone
# surrogates (undecodable bytes), non-ASCII.
AWKWARD = [
    "plain line",
    "\x1b[31mred\x1b[0m and a bell \x07",
    "carriage\rreturn and crlf\r\nnext",
    "-- ok (after 0.00s: 1 line, 0 dropped) --",
    '<script>alert(1)</script> & "quotes"',
    "data: forged\n\nid: 99\nevent: end",
    "undecodable \udcff byte",
    "naïve café ✓ \u2028 separator",
    "",
]


def _fill(channel: Channel, start: int, count: int) -> None:
    for i in range(start, start + count):
        text = AWKWARD[i % len(AWKWARD)]
        if i % 7 == 3:
            channel.append_progress(1700000000.0 + i, i, 100.0 if i % 2 else None, text or None)
        else:
            created = float("nan") if i % 11 == 5 else 1700000000.0 + i
            channel.append_log(created, 10 * (1 + i % 5), "INFO", f"app.{i % 3}", text, f"INFO app: {text} #{i}")


def _summary() -> Summary:
    return Summary("ok", 1700000000.0, 1700000001.0, 0)


def _response(channel: Channel, fmt: Format) -> StreamResponse:
    return StreamResponse(channel.reader(), fmt, title="job", started=1700000000.0, heartbeat=3600)


def _head(response: StreamResponse) -> bytes:
    """The head, whole (the first write is cut short: see ``response.FIRST_WRITE``)."""
    head = next(response)
    while response._pending:
        head += next(response)
    return head


def _drain(response: StreamResponse, reader_has_more: Callable[[], bool]) -> bytes:
    """What ``response`` yields now, without blocking: one chunk per call while entries wait."""
    out = []
    while reader_has_more():
        out.append(next(response))
    return b"".join(out)


@pytest.mark.parametrize("name", list(FORMATS))
def test_many_readers_of_one_job_receive_exactly_the_bytes_a_lone_reader_receives(name: str) -> None:
    # The lone reader: nothing shared (a channel with one reader encodes each batch itself).
    alone = Channel(1000, retain=True)
    lone = _response(alone, FORMATS[name]())
    _fill(alone, 0, 120)
    alone.close(_summary())
    expected = b"".join(lone)
    lone.close()

    # Six readers of one channel, each format object its own (as each request makes one),
    # taking at different moments so their chunks differ and overlap.
    channel = Channel(1000, retain=True)
    responses = [_response(channel, FORMATS[name]()) for _ in range(6)]
    received = [next(r) for r in responses]  # the heads
    written = 0
    for step, count in enumerate([1, 5, 17, 3, 40, 2, 52]):
        _fill(channel, written, count)
        written += count
        for i, response in enumerate(responses):
            if (step + i) % 3:  # some readers skip a round: they take a larger chunk next time
                reader = response._reader
                received[i] += _drain(response, lambda r=reader: r.cursor < channel.next_seq)  # type: ignore[misc]
    channel.close(_summary())
    for i, response in enumerate(responses):
        received[i] += b"".join(response)
        response.close()
    assert written == 120
    for data in received:
        assert data == expected


def test_a_shared_chunk_is_encoded_once_and_handed_to_every_reader() -> None:
    channel = Channel(100, retain=True)
    fmt = TextFormat()
    responses = [_response(channel, fmt) for _ in range(3)]
    for response in responses:
        _head(response)
    _fill(channel, 0, 4)
    chunks = [next(response) for response in responses]
    assert chunks[0] is chunks[1] is chunks[2], "each reader encoded the same entries again"
    for response in responses:
        response.close()


def test_a_lone_reader_keeps_no_encodings() -> None:
    channel = Channel(100, retain=True)
    response = _response(channel, TextFormat())
    next(response)
    _fill(channel, 0, 5)
    assert next(response)
    assert all(entry.encoded is None for entry in channel._entries)
    assert not channel.chunks
    response.close()


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_slow_reader_misses_only_its_own_lines(name: str) -> None:
    channel = Channel(10, retain=True)
    fast, slow = _response(channel, FORMATS[name]()), _response(channel, FORMATS[name]())
    _head(fast), _head(slow)
    fast_bytes = b""
    for start in range(0, 60, 4):
        _fill(channel, start, 4)
        fast_bytes += next(fast)  # the fast reader keeps up: 4 entries a time, never more than 10 behind
    assert fast._reader.missed == 0
    slow_bytes = next(slow)
    assert slow._reader.missed == 50
    fmt = FORMATS[name]()
    # What the slow reader got is its own dropped marker and the last ten entries, encoded as usual.
    assert slow_bytes == fmt.batch(50, list(channel._entries))
    # The fast reader's bytes are exactly a lone reader's: no marker, nothing lost.
    alone = Channel(100, retain=True)
    _fill(alone, 0, 60)
    assert fast_bytes == fmt.batch(0, list(alone._entries))
    fast.close()
    slow.close()


def test_no_reader_sleeps_through_an_entry_when_many_wait_on_one_channel() -> None:
    """Each entry is appended only once every reader took the one before, so a lost wake-up hangs a reader.

    Readers wait with no timeout: one that slept through its wake-up would
    never take the entry, and the producer's bounded wait for it fails.
    """
    channel = Channel(1000, retain=True)
    readers = [channel.reader() for _ in range(24)]
    taken = [0] * len(readers)
    progress = threading.Condition()

    def consume(index: int) -> None:
        reader = readers[index]
        while not reader.at_end:
            _, batch = reader.take()
            if batch:
                with progress:
                    taken[index] += len(batch)
                    progress.notify_all()
            else:
                reader.wait(None)

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(len(readers))]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, 301):
            channel.append_log(time.time(), 20, "INFO", "t", str(n), str(n))
            with progress:
                if not progress.wait_for(lambda n=n: min(taken) >= n, timeout=30):  # type: ignore[misc]
                    pytest.fail(f"entry {n}: readers {[i for i, t in enumerate(taken) if t < n]} never woke for it")
    finally:
        channel.close(_summary())
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert taken == [300] * len(readers)
    for reader in readers:
        reader.close()


def _waiting(reader: object, timeout: float) -> threading.Thread:
    thread = threading.Thread(target=reader.wait, args=(timeout,), daemon=True)  # type: ignore[attr-defined]
    thread.start()
    return thread


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached within 10 s"
        time.sleep(0.005)


def test_a_reader_without_a_timer_of_its_own_wakes_when_the_channels_timer_runs_out() -> None:
    """One timer per channel: the later reader waits untimed and relies on the earlier reader's timer."""
    channel = Channel(10, retain=True)
    early, late = channel.reader(), channel.reader()
    first = _waiting(early, 0.2)
    _until(lambda: channel._timer_at != float("inf"))
    second = _waiting(late, 600)  # its own deadline is far: it takes no timer, the channel's wakes it
    second.join(60)
    assert not second.is_alive(), "the reader slept past the channel's timer"
    first.join(60)
    channel.close(_summary())


def test_a_reader_whose_deadline_comes_first_takes_a_timer_of_its_own() -> None:
    channel = Channel(10, retain=True)
    patient, hurried = channel.reader(), channel.reader()
    first = _waiting(patient, 600)
    _until(lambda: channel._timer_at != float("inf"))
    second = _waiting(hurried, 0.2)
    second.join(60)
    assert not second.is_alive(), "the reader waited for another reader's later timer"
    channel.close(_summary())  # wakes the patient one
    first.join(60)
    assert not first.is_alive()


def test_every_viewer_of_a_quiet_job_gets_its_keepalive_though_only_one_holds_a_timer() -> None:
    """The readers that wait without a timer are woken by the one that has it, and each sends its keep-alive.

    (A reader woken with nothing to send that has been quiet for half its
    heartbeat sends its keep-alive then, which aligns the readers' clocks.)
    """
    channel = Channel(10, retain=True)
    responses = [
        StreamResponse(channel.reader(), TextFormat(), title="t", started=0.0, heartbeat=0.3) for _ in range(5)
    ]
    for response in responses:
        _head(response)
    keepalives: list[bytes] = []

    def view(response: StreamResponse) -> None:
        keepalives.append(next(response))  # blocks until its keep-alive is due (or sent early)

    threads = [threading.Thread(target=view, args=(r,), daemon=True) for r in responses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert keepalives == [b"\n"] * 5
    channel.close(_summary())
    for response in responses:
        response.close()


@pytest.mark.parametrize("name", list(FORMATS))
def test_readers_of_a_line_rewritten_with_cr_get_each_new_state_not_a_stale_shared_chunk(name: str) -> None:
    """A rewritten line keeps its sequence number: the shared chunk of the old state must not be handed out."""

    def steps(channel: Channel) -> Iterator[None]:
        channel.append_log(1700000000.0, 20, "INFO", "app", "before", "INFO app: before #")
        yield None
        for percent in (10, 50, 90):
            channel.append_partial(
                1700000001.0, 20, "INFO", "app", f"{percent}%", f"INFO app: {percent}% #", final=False
            )
            yield None
        channel.append_partial(1700000002.0, 20, "INFO", "app", "done", "INFO app: done #", final=True)
        yield None
        channel.append_section(1700000003.0, "start", "deploy", 1, "", 0.0)
        yield None
        channel.append_log(1700000004.0, 30, "WARNING", "app", "after", "WARNING app: after #")
        yield None

    def run(readers: int) -> list[bytes]:
        channel = Channel(100, retain=True)
        responses = [_response(channel, FORMATS[name]()) for _ in range(readers)]
        received = [_head(r) for r in responses]
        for _ in steps(channel):  # every reader takes after every step, as a live viewer does
            for i, response in enumerate(responses):
                reader = response._reader
                received[i] += _drain(response, lambda r=reader: r.cursor < channel.next_seq)  # type: ignore[misc]
        channel.close(_summary())
        for i, response in enumerate(responses):
            received[i] += b"".join(response)
            response.close()
        return received

    (alone,) = run(1)
    assert run(4) == [alone] * 4
