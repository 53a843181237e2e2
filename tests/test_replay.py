"""A viewer joining a long history gets it in bounded chunks, never as one.

Before: a viewer joining a job got its whole history as one chunk (1,600 lines
of 20 KB arrived as one 64 MB chunk, and five viewers joining a 200 MB history
added 1.28 GB of resident memory). The reader now takes at most about
``MAX_CHUNK_CHARS`` characters of lines at a time, whatever the history holds.
"""

from __future__ import annotations

import logging

import pytest

from tests.inproc import call
from wsgi_logstream import jobs
from wsgi_logstream.channel import MAX_CHUNK_CHARS, Channel

log = logging.getLogger("tests.replay")
LINE = "x" * 20_000


def _big_history() -> None:
    for n in range(400):
        log.info("%d %s", n, LINE)


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_a_viewer_joining_a_big_history_gets_it_in_bounded_chunks_and_misses_nothing(fmt: str) -> None:
    app = jobs(_big_history, formatter="%(message)s", max_history=1000)
    job = app.start()
    assert job.wait(30)
    with call(app, f"format={fmt}", path=f"/{job.id}") as stream:
        body = stream.read_to_end()
        sizes = [len(chunk) for chunk in stream.chunks]
    # 400 lines of 20 KB: about 8 MB in all, never in one piece. A chunk may pass
    # the bound by one entry and its framing (the bound is checked before adding).
    assert sum(sizes) > 8_000_000
    assert max(sizes) < 2 * MAX_CHUNK_CHARS + 64 * 1024, max(sizes)
    assert len(sizes) > 20
    for n in (0, 199, 399):
        assert f"{n} {LINE[:50]}".encode() in body


def test_a_reader_far_behind_takes_bounded_chunks_in_order() -> None:
    channel = Channel(10_000, retain=True)
    for n in range(1, 3001):
        channel.append_log(0.0, 20, "INFO", "t", f"line {n}", f"line {n} " + "y" * 500)
    reader = channel.reader(0)
    seen: list[int] = []
    while True:
        missed, batch = reader.take()
        assert missed == 0
        if not batch:
            break
        assert sum(len(entry.line) + len(entry.message) for entry in batch) <= MAX_CHUNK_CHARS
        seen.extend(entry.seq for entry in batch)
    assert seen == list(range(1, 3001))


def test_a_live_reader_gets_lines_appended_while_it_was_reading_the_history() -> None:
    channel = Channel(10, retain=True)
    reader = channel.reader(0)
    channel.append_log(0.0, 20, "INFO", "t", "a", "a")
    assert [entry.line for entry in reader.take()[1]] == ["a"]
    channel.append_log(0.0, 20, "INFO", "t", "b", "b")
    assert [entry.line for entry in reader.take()[1]] == ["b"]
