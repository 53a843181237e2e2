"""A client that stops reading neither holds the operation back nor makes memory grow.

The server's send buffer and the client's receive buffer are made small, so a
client that does not read blocks the server's write after a few kilobytes.
The operation logs 10,000 lines meanwhile and must finish anyway; then the
client reads and is told exactly how many lines it missed.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from typing import Any

import pytest
from servers import wsgiref_server as serve

from wsgi_logstream import logstream
from wsgi_logstream.capture import current_sink

log = logging.getLogger("tests.slow")

TOTAL = 10_000
MAX_BUFFER = 100


def _read_response(sock: socket.socket, timeout: float = 30.0) -> tuple[str, bytes]:
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        assert time.monotonic() < deadline, "the response did not end"
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower(), "wsgiref sends the body as it is"
    return head.decode("latin-1"), body


def _parse_ndjson(body: bytes) -> tuple[list[int], list[int], dict[str, Any]]:
    seqs: list[int] = []
    drops: list[int] = []
    end: dict[str, Any] = {}
    for line in body.splitlines():
        obj = json.loads(line)
        if obj["event"] == "log":
            seqs.append(obj["seq"])
        elif obj["event"] == "dropped":
            drops.append(obj["count"])
            seqs.append(-obj["count"])  # a marker in sequence, checked below
        elif obj["event"] == "end":
            end = obj
    return seqs, drops, {"records": end["records"], "dropped": end["dropped"], "status": end["status"]}


def _parse_text(body: bytes) -> tuple[list[int], list[int], dict[str, Any]]:
    seqs: list[int] = []
    drops: list[int] = []
    end: dict[str, Any] = {}
    for line in body.decode().splitlines():
        if line.startswith("line "):
            seqs.append(int(line.split()[1]) + 1)
        elif match := re.fullmatch(r"-- (\d+) lines? dropped: this reader fell behind --", line):
            drops.append(int(match[1]))
            seqs.append(-int(match[1]))
        elif match := re.fullmatch(r"-- (\w+) \(after [\d.]+s: (\d+) lines, (\d+) dropped\) --", line):
            end = {"status": match[1], "records": int(match[2]), "dropped": int(match[3])}
    return seqs, drops, end


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
    with serve(app, sndbuf=4096) as url, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(f"GET /?format={name} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        # The client reads nothing until the target is done: if the target waited
        # for the client, this would time out.
        assert finished.wait(30), "the operation was held back by a client that does not read"
        head, body = _read_response(sock)
    assert head.startswith("HTTP/1.0 200") or head.startswith("HTTP/1.1 200"), head
    assert max(held) <= MAX_BUFFER, f"the channel held {max(held)} lines"

    parse = _parse_ndjson if name == "ndjson" else _parse_text
    sequence, drops, end = parse(body)
    delivered = [s for s in sequence if s > 0]
    assert drops, "nothing was dropped: the buffers were larger than the test assumes"
    assert len(delivered) + sum(drops) == TOTAL
    assert end == {"status": "ok", "records": TOTAL, "dropped": sum(drops)}
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
