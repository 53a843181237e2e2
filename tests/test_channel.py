"""The per-stream buffer: cursors, drop-oldest bounds, several readers, close, and wake-ups.

The channel is what keeps a slow client from holding the operation back or
growing memory without bound, so each of its promises is pinned here without
any server in the way.
"""

from __future__ import annotations

import threading
import time

import pytest

from wsgi_logstream.channel import DRAIN_AT, Channel, Entry, Reader, Summary


def _log(channel: Channel, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        channel.append_log(time.time(), 20, "INFO", "t", f"m{i}", f"line {i}")


def _summary(status: str = "ok") -> Summary:
    now = time.time()
    return Summary(status=status, started=now, ended=now, records=0)


def _lines(batch: object) -> list[str]:
    return [e.line for e in batch]  # type: ignore[attr-defined]


def test_entries_are_numbered_from_one_in_order() -> None:
    channel = Channel(10)
    reader = channel.reader()
    _log(channel, 3)
    missed, batch = reader.take()
    assert missed == 0
    assert [e.seq for e in batch] == [1, 2, 3]
    assert _lines(batch) == ["line 0", "line 1", "line 2"]
    assert channel.records == 3
    assert channel.next_seq == 4


def test_a_reader_resumes_where_its_cursor_is() -> None:
    channel = Channel(10, retain=True)
    _log(channel, 5)
    reader = channel.reader(since=3)
    missed, batch = reader.take()
    assert (missed, [e.seq for e in batch]) == (0, [4, 5])
    assert reader.take() == (0, [])
    _log(channel, 1, start=5)
    assert [e.seq for e in reader.take()[1]] == [6]


def test_a_full_channel_drops_the_oldest_and_tells_the_reader_how_many() -> None:
    channel = Channel(3)
    reader = channel.reader()
    _log(channel, 5)
    missed, batch = reader.take()
    assert missed == 2
    assert [e.seq for e in batch] == [3, 4, 5]
    assert reader.missed == 2
    _log(channel, 10, start=5)
    missed, batch = reader.take()
    assert missed == 7
    assert [e.seq for e in batch] == [13, 14, 15]
    assert reader.missed == 9


def test_the_producer_never_holds_more_than_max_entries() -> None:
    channel = Channel(100)
    channel.reader()  # a reader that never reads
    _log(channel, 10_000)
    assert channel.next_seq - channel.first_seq == 100
    assert channel.records == 10_000


def test_each_reader_has_its_own_cursor() -> None:
    channel = Channel(10)
    first, second = channel.reader(), channel.reader()
    _log(channel, 2)
    assert [e.seq for e in first.take()[1]] == [1, 2]
    _log(channel, 2, start=2)
    assert [e.seq for e in first.take()[1]] == [3, 4]
    assert [e.seq for e in second.take()[1]] == [1, 2, 3, 4]


def test_without_retain_taken_entries_are_released_once_every_reader_has_them() -> None:
    channel = Channel(10)
    first, second = channel.reader(), channel.reader()
    _log(channel, 4)
    first.take()
    assert channel.first_seq == 1, "released before the second reader took them"
    second.take()
    assert channel.first_seq == channel.next_seq == 5
    late = channel.reader()
    assert late.take()[1] == [], "a channel without retain keeps no history"


def test_a_closed_reader_no_longer_holds_entries_back() -> None:
    channel = Channel(10)
    fast, gone = channel.reader(), channel.reader()
    _log(channel, 3)
    gone.close()
    fast.take()
    assert channel.first_seq == channel.next_seq


def test_with_retain_a_late_reader_gets_the_last_max_entries() -> None:
    channel = Channel(3, retain=True)
    early = channel.reader()
    _log(channel, 5)
    early.take()
    late = channel.reader()
    missed, batch = late.take()
    assert missed == 2
    assert [e.seq for e in batch] == [3, 4, 5]


def test_close_keeps_the_first_summary_and_ignores_later_entries() -> None:
    channel = Channel(10)
    reader = channel.reader()
    _log(channel, 2)
    assert channel.close(_summary("error")) is True
    assert channel.close(_summary("ok")) is False
    assert channel.summary is not None and channel.summary.status == "error"
    _log(channel, 3)
    assert channel.records == 2
    assert not reader.at_end, "entries remain to be read"
    assert [e.seq for e in reader.take()[1]] == [1, 2]
    assert reader.at_end


def test_abandon_drops_what_is_held_and_ignores_what_comes_but_takes_the_summary() -> None:
    channel = Channel(10)
    reader = channel.reader()
    _log(channel, 5)
    channel.abandon()
    assert channel.closed
    assert channel.next_seq - channel.first_seq == 0
    _log(channel, 5)
    assert channel.records == 5
    assert reader.take()[1] == []
    assert channel.close(_summary()) is True


def test_max_entries_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        Channel(0)


def _wait_in_thread(reader: Reader) -> threading.Thread:
    thread = threading.Thread(target=reader.wait, args=(30,), daemon=True)
    thread.start()
    return thread


def test_wait_returns_at_once_when_an_entry_came_after_the_last_take() -> None:
    """The window between ``take`` and ``wait`` must not lose the wake-up."""
    channel = Channel(10)
    reader = channel.reader()
    reader.take()
    _log(channel, 1)
    channel._wakeup = threading.Event()  # as if another reader had re-armed it after the append set the old one
    thread = _wait_in_thread(reader)
    thread.join(5)
    assert not thread.is_alive(), "wait() blocked although an entry was ready"


def test_an_append_wakes_a_waiting_reader() -> None:
    channel = Channel(10)
    reader = channel.reader()
    reader.take()
    waiting = threading.Event()
    woke = threading.Event()

    def consume() -> None:
        waiting.set()
        reader.wait(30)
        woke.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert waiting.wait(5)
    _log(channel, 1)
    assert woke.wait(5), "append did not wake the reader"
    thread.join(5)


def test_close_wakes_a_waiting_reader() -> None:
    channel = Channel(10)
    reader = channel.reader()
    thread = _wait_in_thread(reader)
    channel.close(_summary())
    thread.join(5)
    assert not thread.is_alive(), "close did not wake the reader"
    assert reader.at_end


def test_a_consumer_thread_sees_every_entry_in_order_with_no_lost_wake_up() -> None:
    """100k entries from a producer thread; with room for all, nothing is missed or reordered.

    Each wait is bounded by 10 s: a wait that runs to its bound while the
    producer is appending means a wake-up was lost.
    """
    total = 100_000
    channel = Channel(total + 1)
    reader = channel.reader()
    seen: list[int] = []
    stalls: list[float] = []
    missed_total = 0

    def consume() -> None:
        nonlocal missed_total
        while True:
            missed, batch = reader.take()
            missed_total += missed
            seen.extend(e.seq for e in batch)
            if reader.at_end:
                return
            began = time.monotonic()
            reader.wait(10)
            if time.monotonic() - began >= 10:
                stalls.append(began)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()

    def produce() -> None:
        for i in range(total):
            channel.append_log(0.0, 20, "INFO", "t", "", str(i))
        channel.close(_summary())

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(60)
    consumer.join(60)
    assert not consumer.is_alive() and not producer.is_alive()
    assert stalls == [], "a wait ran to its bound: lost wake-up"
    assert missed_total == 0
    assert seen == list(range(1, total + 1))


def _appending_threads(channel: Channel, threads: int, each: int) -> list[threading.Thread]:
    """``threads`` threads of one operation, released together, each appending ``each`` numbered lines."""
    start = threading.Barrier(threads)

    def produce(t: int) -> None:
        start.wait(10)
        for i in range(each):
            channel.append_log(0.0, 20, "INFO", f"t{t}", "", f"{t} {i}")

    workers = [threading.Thread(target=produce, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    return workers


def _read_until_joined(reader: Reader, workers: list[threading.Thread]) -> tuple[int, list[tuple[int, str]]]:
    """Take while the workers append (and once more after), as a live stream's reader does."""
    missed_total, seen = 0, []
    while True:
        done = not any(worker.is_alive() for worker in workers)
        missed, batch = reader.take()
        missed_total += missed
        seen.extend((e.seq, e.line) for e in batch)
        if done:
            return missed_total, seen
        reader.wait(0.01)


def _each_thread_in_its_order(lines: list[str], threads: int) -> dict[int, list[int]]:
    per_thread: dict[int, list[int]] = {t: [] for t in range(threads)}
    for line in lines:
        t, i = map(int, line.split())
        per_thread[t].append(i)
    for numbers in per_thread.values():
        assert numbers == sorted(numbers), "a thread's lines arrived out of its own order"
    return per_thread


def test_lines_from_several_threads_of_one_operation_are_numbered_once_each_in_one_order() -> None:
    """Appends take no lock: each lands in the inbox in one atomic ``list.append``; readers number them.

    Four threads append at once while a reader takes: every line must come once, numbered 1..N with
    no gap, each thread's lines in its own order, nothing counted as missed.
    """
    threads, each = 4, 5_000
    channel = Channel(threads * each + 1)
    reader = channel.reader()
    workers = _appending_threads(channel, threads, each)
    missed, seen = _read_until_joined(reader, workers)
    assert missed == 0
    assert [seq for seq, _ in seen] == list(range(1, threads * each + 1))
    per_thread = _each_thread_in_its_order([line for _, line in seen], threads)
    assert all(numbers == list(range(each)) for numbers in per_thread.values())
    assert channel.records == threads * each


def test_a_slow_reader_of_several_threads_lines_is_told_exactly_how_many_it_missed() -> None:
    """With a small buffer, what a reader gets plus what it is told it missed is every line, exactly."""
    threads, each = 4, 5_000
    channel = Channel(50)
    reader = channel.reader()
    workers = _appending_threads(channel, threads, each)
    missed, seen = _read_until_joined(reader, workers)
    seqs = [seq for seq, _ in seen]
    assert seqs == sorted(set(seqs)), "an entry came twice or out of order"
    assert missed + len(seen) == threads * each
    assert seqs[-1] == threads * each
    _each_thread_in_its_order([line for _, line in seen], threads)


def test_an_entry_drained_from_the_inbox_is_the_entry_its_constructor_makes() -> None:
    """``Channel._drain`` spells out ``Entry.__init__`` for speed: it must set every slot, to the same values."""
    channel = Channel(10)
    channel.append_log(1.5, 30, "WARNING", "app", "message", "line")
    (drained,) = channel.reader().take()[1]
    made = Entry("log", 1.5, 30, "WARNING", "app", "message", "line")
    made.seq, made.end = 1, len("line") + len("message")
    assert {slot: getattr(drained, slot) for slot in Entry.__slots__} == {
        slot: getattr(made, slot) for slot in Entry.__slots__
    }


def test_a_channel_nobody_reads_holds_at_most_max_entries_plus_the_unnumbered_inbox() -> None:
    channel = Channel(100)
    for i in range(5_000):
        channel.append_log(0.0, 20, "INFO", "t", "", str(i))
        assert channel.held <= 100 + DRAIN_AT
    assert channel.records == 5_000
    assert channel.next_seq - channel.first_seq == 100
