"""A plain stream's live path: records from the inbox to the wire with no entry made for each.

``Reader.take_records`` hands a plain stream's one reader the records waiting
in the inbox, numbered, and ``Format.records`` encodes them from their fields.
Both must be invisible on the wire: the same bytes as ``Format.batch`` of the
entries the general take would have made, the same numbers, nothing lost or
reordered, and the general take wherever the live path does not apply.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgi_logstream import escape
from wsgi_logstream.channel import MAX_CHUNK_CHARS, Channel, Entry, Reader
from wsgi_logstream.entry import Record
from wsgi_logstream.formats import Format, HtmlFormat, NdjsonFormat, SseFormat, TextFormat

FORMATS: dict[str, Format] = {
    "text": TextFormat(),
    "text-ansi": TextFormat(ansi=True),
    "sse": SseFormat(),
    "sse-detail": SseFormat(detail=True),
    "ndjson": NdjsonFormat(),
    "html": HtmlFormat(),
}

# What a record's strings may hold, with the characters each format treats specially made likely:
# CR (rewritten lines), LF, controls, an SGR colour, "--" (the text format's own lines), U+2028,
# markup, quotes, non-ASCII and lone surrogates (bytes a command could not decode).
_special = st.sampled_from(
    ["\r", "\n", "\r\n", "\x1b[31m", "\x1b", "\x00", "\x7f", "\x85", "--", "\u2028", "<", "&", '"']
)
_text = st.lists(
    st.one_of(_special, st.characters(codec="utf-8"), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=12,
).map("".join)
_created = st.one_of(st.floats(min_value=0, max_value=4e9), st.sampled_from([float("nan"), float("inf"), 0.0]))
records = st.tuples(_created, st.sampled_from([5, 10, 20, 30, 40, 50, 60]), _text, _text, _text, _text)


class _Plain(Format):
    """A format of the host's own: ``records`` is the base class's, made from entries."""

    def batch(self, missed: int, entries: object) -> bytes:
        return repr([(e.seq, e.kind, e.line, e.message) for e in entries]).encode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", [*FORMATS, "host-format"])
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.integers(min_value=1, max_value=10**9), batch=st.lists(records, min_size=1, max_size=4))
def test_records_encode_to_the_bytes_batch_makes_of_their_entries(name: str, first: int, batch: list[Record]) -> None:
    fmt = FORMATS.get(name) or _Plain()
    entries = [Entry.log(seq, record) for seq, record in enumerate(batch, first)]
    assert fmt.records(first, batch) == fmt.batch(0, entries)


def _log(channel: Channel, *lines: str) -> None:
    for line in lines:
        channel.append_log(1.0, 20, "INFO", "t", line, line)


def test_a_plain_streams_reader_takes_waiting_records_live_numbered_as_entries_would_be() -> None:
    channel = Channel(100)
    reader = channel.reader()
    _log(channel, "a", "b")
    assert reader.take_records() == (1, [(1.0, 20, "INFO", "t", "a", "a"), (1.0, 20, "INFO", "t", "b", "b")])
    assert (reader.cursor, channel.next_seq, channel.records, channel.held) == (3, 3, 2, 0)
    assert reader.take_records() is None  # nothing waits
    channel.append_progress(1.0, 1, 2, "half")  # a rarer entry is held: the general take hands it out
    _log(channel, "c")
    assert reader.take_records() is None
    missed, batch = reader.take()
    assert missed == 0 and [(e.seq, e.kind, e.line) for e in batch] == [(3, "progress", ""), (4, "log", "c")]
    _log(channel, "d")
    assert reader.take_records() == (5, [(1.0, 20, "INFO", "t", "d", "d")])
    assert channel.records == 4


def test_a_job_or_a_second_reader_or_a_closed_channel_takes_through_entries() -> None:
    job = Channel(100, retain=True)
    job_reader = job.reader()
    _log(job, "kept for later viewers")
    assert job_reader.take_records() is None
    assert [e.line for e in job_reader.take()[1]] == ["kept for later viewers"]
    assert job.held == 1

    shared = Channel(100)
    first, second = shared.reader(), shared.reader()
    _log(shared, "x")
    assert first.take_records() is None  # the second reader has not read it: it must stay held
    assert [e.line for e in first.take()[1]] == [e.line for e in second.take()[1]] == ["x"]


def test_a_reader_that_fell_behind_is_told_what_it_missed_by_the_general_take() -> None:
    channel = Channel(4)  # the operation's thread drains at 4 records waiting: they are held as entries
    reader = channel.reader()
    _log(channel, *map(str, range(10)))
    assert reader.take_records() is None
    missed, batch = reader.take()
    assert missed + len(batch) == 10 and batch[-1].seq == 10 and missed > 0


def test_records_over_the_chunk_bound_are_held_and_taken_in_bounded_chunks() -> None:
    channel = Channel(100)
    reader = channel.reader()
    big = "x" * (MAX_CHUNK_CHARS // 3)
    channel.append_log(1.0, 20, "INFO", "t", "", big)
    assert reader.take_records() == (1, [(1.0, 20, "INFO", "t", "", big)])  # one record always goes, whatever its size
    for _ in range(5):
        channel.append_log(1.0, 20, "INFO", "t", "", big)
    assert reader.take_records() is None
    sizes = []
    while batch := reader.take()[1]:
        assert sum(len(e.line) for e in batch) <= MAX_CHUNK_CHARS
        sizes.append([e.seq for e in batch])
    assert [seq for chunk in sizes for seq in chunk] == [2, 3, 4, 5, 6] and len(sizes) > 1


def _live_reader_sees(reader: Reader, workers: list[threading.Thread]) -> list[str]:
    """Take as ``StreamResponse`` does: live records first, the general take when they do not apply."""
    seen: list[str] = []
    missed_total = 0
    while True:
        done = not any(worker.is_alive() for worker in workers)
        taken = reader.take_records()
        if taken is not None:
            first, batch = taken
            assert first == len(seen) + missed_total + 1, "numbers must continue where the last take ended"
            seen.extend(record[5] for record in batch)
            continue
        missed, entries = reader.take()
        assert missed == 0
        seen.extend(e.line for e in entries)
        if done and not entries:
            return seen
        reader.wait(0.01)


def test_lines_of_several_threads_reach_a_live_reader_once_each_in_each_threads_order() -> None:
    """Four threads append with no lock while the reader takes live and, when the inbox overflows, through entries."""
    threads, each = 4, 5_000
    channel = Channel(threads * each + 1)
    reader = channel.reader()
    start = threading.Barrier(threads)

    def produce(t: int) -> None:
        start.wait(10)
        for i in range(each):
            channel.append_log(0.0, 20, "INFO", "t", "", f"{t} {i}")
            if i % 997 == 0:
                channel.append_progress(0.0, i, each, None)  # rarer entries interleave: both paths are used

    workers = [threading.Thread(target=produce, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    seen = [line for line in _live_reader_sees(reader, workers) if line]
    for worker in workers:
        worker.join(10)
    assert not any(worker.is_alive() for worker in workers)
    per_thread: dict[int, list[int]] = {t: [] for t in range(threads)}
    for line in seen:
        t, i = map(int, line.split())
        per_thread[t].append(i)
    assert all(numbers == list(range(each)) for numbers in per_thread.values())
    assert channel.records == threads * each


@settings(max_examples=300, deadline=None, database=None)
@given(text=_text, keep_sgr=st.booleans())
def test_visible_returns_a_printable_string_unchanged_and_shows_the_rest_as_before(text: str, keep_sgr: bool) -> None:
    """``visible`` returns at once when ``str.isprintable`` says there is nothing to show: it must change nothing."""
    pattern = escape._CONTROL_OR_SGR if keep_sgr else escape._CONTROL
    expected = pattern.sub(escape._picture, escape._NEWLINES.sub("\n", text))
    assert escape.visible(text, keep_sgr=keep_sgr) == expected
