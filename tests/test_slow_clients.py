"""A client that stops reading neither holds the operation back nor makes memory grow.

The server's send buffer and the client's receive buffer are made small, so a
client that does not read blocks the server's write after a few kilobytes.
The operation logs 10,000 lines meanwhile and must finish anyway; then the
client reads and is told exactly how many lines it missed.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest

from tests.servers import dechunk, read_all, stuck_socket
from tests.servers import wsgiref_server as serve
from tests.wire import ndjson_objects, parse_text, summary
from wsgi_logstream import logstream
from wsgi_logstream.capture import current_sink

log = logging.getLogger("tests.slow")

TOTAL = 10_000
MAX_BUFFER = 100


def _sequence(body: bytes, name: str) -> tuple[list[int], list[int]]:
    """The seq of each delivered line, and ``-count`` where a "lines dropped" marker stands; and the drop counts."""
    sequence: list[int] = []
    if name == "ndjson":
        for obj in ndjson_objects(body):
            if obj["event"] == "log":
                sequence.append(obj["seq"])
            elif obj["event"] == "dropped":
                sequence.append(-obj["count"])
    else:
        for own, line in parse_text(body).in_order:
            if not own:
                sequence.append(int(line.split()[1]) + 1)
            elif match := re.fullmatch(r"-- (\d+) lines? dropped: not kept for this reader --", line):
                sequence.append(-int(match[1]))
    return sequence, [-s for s in sequence if s < 0]


@pytest.mark.parametrize("name", ["ndjson", "text"])
def test_a_client_that_does_not_read_costs_at_most_max_buffer_lines_and_learns_what_it_missed(name: str) -> None:
    finished = threading.Event()
    held: list[int] = []

    def target() -> None:
        sink = current_sink()
        assert sink is not None
        for i in range(TOTAL):
            log.info("line %05d %s", i, "x" * 80)
            if i % 250 == 0:
                held.append(sink.channel.next_seq - sink.channel.first_seq)
        finished.set()

    app = logstream(target, max_buffer=MAX_BUFFER, formatter="%(message)s", heartbeat=60)
    with serve(app, sndbuf=4096) as url, stuck_socket(url, f"/?format={name}") as sock:
        # The client reads nothing until the target is done: if the target waited
        # for the client, this would time out.
        assert finished.wait(30), "the operation was held back by a client that does not read"
        raw = read_all(sock, timeout=30)
    assert raw.startswith((b"HTTP/1.0 200 ", b"HTTP/1.1 200 ")), raw[:100]
    assert b"transfer-encoding" not in raw.partition(b"\r\n\r\n")[0].lower(), "wsgiref sends the body as it is"
    body = dechunk(raw)
    assert max(held) <= MAX_BUFFER, f"the channel held {max(held)} lines"

    sequence, drops = _sequence(body, name)
    end = summary(body, name)
    delivered = [s for s in sequence if s > 0]
    assert drops, "nothing was dropped: the buffers were larger than the test assumes"
    assert len(delivered) + sum(drops) == TOTAL
    assert (end["status"], end["records"], end["dropped"]) == ("ok", TOTAL, sum(drops))
    # Each dropped marker stands exactly for the gap it sits in; the newest line always arrives.
    expected = 1
    pending_drop = 0
    for item in sequence:
        if item < 0:
            pending_drop += -item
            continue
        assert item == expected + pending_drop, f"seq {item} after a gap of {pending_drop} from {expected}"
        expected, pending_drop = item + 1, 0
    assert delivered[-1] == TOTAL
