"""Hostile review of a plain stream's live path (``Reader.take_records``, ``Format.records``).

Attacks: escaping that the live path might do differently from ``batch`` (every code point
through ``visible``), counts and numbering under threads that race live takes (rewritten
lines, progress, ``close``, ``abandon``), the chunk and drain bounds, and the four formats end
to end against the same lines through a job (which takes the general path). Threads are real;
every wait has a bound.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from typing import Any, Callable

import pytest

from tests.inproc import TestApp
from tests.wire import FORMATS, records, summary
from wsgi_logstream import escape, jobs, logstream
from wsgi_logstream.channel import DRAIN_AT, MAX_CHUNK_CHARS, Channel, Reader, Summary

# -- escaping: visible()'s shortcut ------------------------------------------------------------------


def _visible_before(text: str, keep_sgr: bool) -> str:
    """``visible`` as it was before its ``isprintable`` shortcut."""
    if "\r" in text:
        text = escape._NEWLINES.sub("\n", text)
    return (escape._CONTROL_OR_SGR if keep_sgr else escape._CONTROL).sub(escape._picture, text)


def test_visible_shows_every_code_point_exactly_as_the_control_pattern_did() -> None:
    differ = [
        (hex(code), text, keep_sgr)
        for code in range(0x110000)
        for text in (chr(code), f"a{chr(code)}--\x1b[0m")
        for keep_sgr in (False, True)
        if escape.visible(text, keep_sgr=keep_sgr) != _visible_before(text, keep_sgr)
    ]
    assert differ == []


# -- counts under threads --------------------------------------------------------------------------


class _Gate(str):
    """A line whose length, asked by a live take under the channel's lock, runs ``hook`` first."""

    hook: Callable[[], None] = staticmethod(lambda: None)

    def __len__(self) -> int:
        type(self).hook()
        return str.__len__(self)


def test_the_record_count_a_summary_reads_includes_records_a_live_take_is_numbering() -> None:
    """``_take_records`` empties the inbox, then counts; ``records`` read in between must not miss them.

    The operation's thread reads ``records`` for its summary while the stream's thread takes its
    last lines: a count read without the lock said fewer lines than the stream delivered.
    """
    channel = Channel(100)
    reader = channel.reader()
    seen: list[int] = []
    counter = threading.Thread(target=lambda: seen.append(channel.records))

    class Line(_Gate):
        @staticmethod
        def hook() -> None:
            Line.hook = staticmethod(lambda: None)  # once
            counter.start()
            # Bounded: a count that does not wait for the lock returns at once; one that waits is
            # still waiting when this gives up and lets the take finish.
            counter.join(timeout=1.0)

    channel.append_log(1.0, 20, "INFO", "t", "m", Line("line"))
    taken = reader.take_records()
    counter.join(timeout=10)
    assert not counter.is_alive()
    assert taken is not None and len(taken[1]) == 1
    assert seen == [1]


def _drive(reader: Reader, got: dict[int, tuple[str, str]], order: list[int], missed: list[int]) -> None:
    """Read as ``StreamResponse`` does (live path first) until the channel ends."""
    while True:
        taken = reader.take_records()
        if taken is not None:
            first, batch = taken
            for seq, record in enumerate(batch, first):
                assert seq not in got, f"line {seq} delivered twice"
                got[seq] = ("log", record[5])
                order.append(seq)
            continue
        lost, entries = reader.take()
        missed[0] += lost
        for entry in entries:
            if entry.seq in got:
                assert got[entry.seq][0] == "partial", f"{entry} delivered twice (was {got[entry.seq]})"
            got[entry.seq] = (entry.kind, entry.message if entry.kind == "progress" else entry.line)
            order.append(entry.seq)
        if entries or lost:
            continue
        if reader.at_end:
            return
        reader.wait(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_rewritten_lines_progress_and_logs_racing_a_live_reader_arrive_once_in_order_with_exact_counts(
    seed: int,
) -> None:
    rnd = random.Random(seed)
    channel = Channel(1_000_000)
    reader = channel.reader()
    expected: list[tuple[str, str]] = []
    others: dict[int, list[str]] = {1: [], 2: []}

    def main() -> None:
        for i in range(2000):
            choice = rnd.random()
            if choice < 0.6:
                line = f"t0 L{i}"
                channel.append_log(1.0, 20, "INFO", "t0", line, line)
                expected.append(("log", line))
            elif choice < 0.9:
                states = rnd.randint(1, 5)
                for k in range(states):
                    line = f"t0 bar{i} {k}"
                    channel.append_partial(1.0, 20, "INFO", "t0", line, line, final=False)
                if rnd.random() < 0.7:
                    line = f"t0 bar{i} done"
                    channel.append_partial(1.0, 20, "INFO", "t0", line, line, final=True)
                    expected.append(("log", line))
                else:  # left unfinished: a plain line after it keeps its last state as it is
                    expected.append(("partial", f"t0 bar{i} {states - 1}"))
                    line = f"t0 after{i}"
                    channel.append_log(1.0, 20, "INFO", "t0", line, line)
                    expected.append(("log", line))
            else:
                channel.append_progress(1.0, i, 2000, f"p{i}")
                expected.append(("progress", f"p{i}"))

    def other(tid: int) -> None:
        for i in range(1500):
            line = f"t{tid} L{i}"
            channel.append_log(1.0, 20, "INFO", f"t{tid}", line, line)
            others[tid].append(line)

    got: dict[int, tuple[str, str]] = {}
    order: list[int] = []
    missed = [0]
    consumer = threading.Thread(target=_drive, args=(reader, got, order, missed))
    consumer.start()
    producers = [threading.Thread(target=main), *(threading.Thread(target=other, args=(t,)) for t in others)]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(60)
    count = channel.records  # what the operation's summary says, while the reader may still be taking
    channel.close(Summary("ok", 0.0, 1.0, count))
    consumer.join(60)
    assert not consumer.is_alive()

    assert missed == [0]
    assert sorted(got) == list(range(1, channel.next_seq))
    assert reader.cursor == channel.next_seq and channel.held == 0
    shown = [got[seq] for seq in sorted(got)]
    for tid, lines in others.items():
        assert [text for kind, text in shown if text.startswith(f"t{tid} ")] == lines
    mine = [(kind, text) for kind, text in shown if kind == "progress" or text.startswith("t0 ")]
    # Lines of other threads may come between a bar's states: then a state stays, and the rest follow it.
    finals = [(kind, text) for kind, text in mine if kind != "partial"]
    assert finals == [(kind, text) for kind, text in expected if kind != "partial"]
    logs = sum(1 for kind, _ in shown if kind == "log")
    assert count == logs == channel.records
    # In order: a number is taken again (at once) only when the newest line, rewritten, was replaced.
    for before, after in itertools.pairwise(order):
        assert after == before + 1 or after == before, (before, after)


def test_close_racing_live_takes_leaves_every_line_below_next_seq_taken_once() -> None:
    for _ in range(20):
        channel = Channel(10_000)
        reader = channel.reader()
        started = threading.Event()

        def produce(channel: Channel = channel, started: threading.Event = started) -> None:
            for i in range(3000):
                channel.append_log(1.0, 20, "INFO", "t", f"{i}", f"{i}")
                if i == 100:
                    started.set()

        got: dict[int, tuple[str, str]] = {}
        order: list[int] = []
        missed = [0]
        consumer = threading.Thread(target=_drive, args=(reader, got, order, missed))
        producer = threading.Thread(target=produce)
        consumer.start()
        producer.start()
        assert started.wait(10)
        channel.close(Summary("ok", 0.0, 1.0, 0))
        producer.join(10)
        consumer.join(10)
        assert not consumer.is_alive()
        assert missed == [0]
        assert sorted(got) == order == list(range(1, channel.next_seq))
        assert [text for _, text in (got[s] for s in order)] == [str(i) for i in range(len(order))]
        assert channel.records == len(order)


def test_abandon_racing_live_takes_delivers_no_line_twice_and_holds_nothing() -> None:
    for _ in range(20):
        channel = Channel(10_000)
        reader = channel.reader()
        taken: list[int] = []
        stop = threading.Event()

        def read(reader: Reader = reader, taken: list[int] = taken, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                live = reader.take_records()
                if live is not None:
                    taken.extend(range(live[0], live[0] + len(live[1])))
                    continue
                _, entries = reader.take()
                taken.extend(entry.seq for entry in entries)
                if not entries:
                    reader.wait(0.05)

        consumer = threading.Thread(target=read)
        consumer.start()
        for i in range(2000):
            channel.append_log(1.0, 20, "INFO", "t", f"{i}", f"{i}")
            if i == 500:
                channel.abandon()
        stop.set()
        consumer.join(10)
        assert not consumer.is_alive()
        assert taken == list(range(1, len(taken) + 1))
        assert channel.held == 0


# -- bounds ------------------------------------------------------------------------------------------


def test_a_buffer_smaller_than_drain_at_tells_a_reader_exactly_what_it_missed_then_goes_live_again() -> None:
    channel = Channel(10)
    reader = channel.reader()
    for i in range(1, 26):
        channel.append_log(1.0, 20, "INFO", "t", str(i), str(i))
    assert reader.take_records() is None  # held entries: the general take
    missed, entries = reader.take()
    assert missed == 15 and [e.line for e in entries] == [str(i) for i in range(16, 26)]
    channel.append_log(1.0, 20, "INFO", "t", "26", "26")
    assert reader.take_records() == (26, [(1.0, 20, "INFO", "t", "26", "26")])
    assert channel.records == 26 and reader.missed == 15


@pytest.mark.parametrize("count", [DRAIN_AT - 1, DRAIN_AT, DRAIN_AT + 1, 3 * DRAIN_AT + 7])
def test_records_around_drain_at_all_reach_a_live_reader_once_numbered_in_order(count: int) -> None:
    channel = Channel(100_000)
    reader = channel.reader()
    for i in range(count):
        channel.append_log(1.0, 20, "INFO", "t", str(i), str(i))
    lines: list[tuple[int, str]] = []
    while True:
        live = reader.take_records()
        if live is not None:
            lines.extend((seq, record[5]) for seq, record in enumerate(live[1], live[0]))
            continue
        missed, entries = reader.take()
        assert missed == 0
        if not entries:
            break
        lines.extend((e.seq, e.line) for e in entries)
    assert lines == [(i + 1, str(i)) for i in range(count)]
    assert channel.records == count == channel.next_seq - 1


def test_a_huge_line_between_small_ones_is_taken_alone_and_every_chunk_keeps_the_bound() -> None:
    channel = Channel(1000)
    reader = channel.reader()
    huge = "x" * (2 * MAX_CHUNK_CHARS)
    lines = ["a", huge, "b", *("y" * 1000 for _ in range(600))]
    for line in lines:
        channel.append_log(1.0, 20, "INFO", "t", "", line)
    chunks: list[list[str]] = []
    while True:
        live = reader.take_records()
        if live is not None:
            chunks.append([record[5] for record in live[1]])
            continue
        missed, entries = reader.take()
        assert missed == 0
        if not entries:
            break
        chunks.append([e.line for e in entries])
    assert [line for chunk in chunks for line in chunk] == lines
    assert [huge] in chunks
    assert all(len(chunk) == 1 or sum(map(len, chunk)) <= MAX_CHUNK_CHARS for chunk in chunks)


# -- end to end: a plain stream (live path) against a job (general path) -----------------------------

HOSTILE = [
    "-- ok (after 0.00s: 0 lines, 0 dropped) --",
    "\x1b[0m-- forged",
    "x\u2028-- forged",
    "y\u2029\x1b[1m-- forged",
    "old\r-- forged",
    "a\r\n-- forged",
    "data: x\nid: 99\nevent: end\nretry: 1",
    "z\rid: 98\r\nevent: end",
    "nel\x85id: 97",
    "</pre><script>alert(1)</script>&amp;",
    "lone \udcff surrogate",
    "\x00\x07\x1b]0;title\x07\x9b",
    "",
]

_log = logging.getLogger("tests.hostile4")


def _target() -> None:
    for line in HOSTILE:
        _log.warning("%s", line)


def _job_body(app: Any, fmt: str) -> bytes:
    job = app.start()
    assert job.wait(10), "the job did not finish"
    body: bytes = TestApp(app).get(f"/{job.id}?format={fmt}").body
    return body


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_lines_read_back_the_same_from_a_plain_stream_and_from_a_job(fmt: str) -> None:
    stream = logstream(_target, formatter="%(message)s")
    job_app = jobs(_target, formatter="%(message)s")
    try:
        plain = TestApp(stream).get(f"/?format={fmt}").body
        job = _job_body(job_app, fmt)
    finally:
        assert job_app.shutdown(10)
    assert records(plain, fmt) == records(job, fmt)
    assert len(records(plain, fmt)) >= len(HOSTILE)
    ends = summary(plain, fmt), summary(job, fmt)
    assert [(e["status"], e["records"], e["dropped"]) for e in ends] == [("ok", len(HOSTILE), 0)] * 2
