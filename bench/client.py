"""The client: a separate process that reads streams and checks them.

``python bench/client.py stream PORT PATH --records N`` reads one stream to its
end and prints one JSON object: the checks (status, every record arrived, in
order, the first before the operation ended) and the figures (lines/s, the
operation's own duration, the backlog when it ended, latency percentiles).

While reading it does as little as it can, since on two cores it competes with
the server: ``recv`` into a list, ``time.time()``, and ``bytes.count(b"#")``
(the last character of every record, and found nowhere else). Everything else
is worked out after the stream ended: record *i* arrived with the first read
that brought the count above *i*.

``python bench/client.py fanout PORT --paths P1,P2 --viewers K --rate R --seconds S``
is the fan-out workload: K viewers of one producer (``bench/app_fanout.py``),
see :func:`fan_out`.

``python bench/client.py many PORT PATH --streams K`` opens K streams at once
(one ``epoll`` loop), prints ``{"event": "ready", ...}`` once every stream has
received its first record (or failed), and then either waits for a line on
stdin (``--window 0``: the harness measures the server meanwhile) or keeps
reading for ``--window`` seconds and prints what every line's latency was and
which streams stopped receiving.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import selectors
import socket
import struct
import sys
import time
from typing import Any

RECORD = re.compile(rb"seq=(\d{7}) t=(\d+\.\d+) x+#")
END = re.compile(rb"END elapsed=(\d+\.\d+) at=(\d+\.\d+)")
TOKEN = b"#"


def request(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n".encode("ascii")


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return 0, {}, b""
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(first.split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(body[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2
    return b"".join(out)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def read_stream(port: int, path: str, records: int, timeout: float, first_check: float = 0.0) -> dict[str, Any]:
    """Read one stream to its end; the checks and figures as a dict.

    That the first record arrived before the operation ended is checked when
    the operation took at least ``first_check`` seconds: an operation shorter
    than a few of CPython's 5 ms thread switch intervals may well log all it
    has before the server's thread is given the GIL to send the first line.
    """
    errors: list[str] = []
    chunks: list[bytes] = []
    times: list[float] = []  # time of each read that brought at least one record
    counts: list[int] = []  # records received up to and including that read
    count = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = time.time()
        sock.sendall(request(port, path))
        deadline = time.monotonic() + timeout
        recv, clock, append = sock.recv, time.time, chunks.append
        while True:
            try:
                data = recv(262144)
            except TimeoutError:
                errors.append(f"timed out after {timeout}s")
                break
            if not data:
                break
            now = clock()
            append(data)
            found = data.count(TOKEN)
            if found:
                count += found
                times.append(now)
                counts.append(count)
            if time.monotonic() > deadline:
                errors.append(f"timed out after {timeout}s")
                break
    status, headers, body = split_response(b"".join(chunks))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    found_records = RECORD.findall(body)
    seqs = [int(s) for s, _ in found_records]
    stamps = [float(t) for _, t in found_records]
    end = END.search(body)
    result: dict[str, Any] = {"status": status, "received": len(seqs), "expected": records}
    if status != 200:
        errors.append(f"status {status}")
    if len(seqs) != records:
        errors.append(f"received {len(seqs)} records, expected {records}")
    in_order = seqs == list(range(len(seqs)))
    if not in_order:
        wrong = next(i for i, s in enumerate(seqs) if s != i)
        errors.append(f"out of order at position {wrong}: got seq {seqs[wrong]}")
    if end is None:
        errors.append("no END line: the operation did not finish")
    if count != len(seqs):
        errors.append(f"counted {count} record marks but parsed {len(seqs)} records")
    result["in_order"] = in_order
    if end is not None and times:
        op_seconds, ended_at = float(end.group(1)), float(end.group(2))
        at_end = bisect.bisect_right(times, ended_at)
        received_at_end = counts[at_end - 1] if at_end else 0
        result.update(
            op_seconds=op_seconds,
            first_before_end=times[0] < ended_at,
            first_after_request=times[0] - sent,
            backlog=records - received_at_end,
            backlog_fraction=(records - received_at_end) / records if records else 0.0,
        )
        if not result["first_before_end"] and op_seconds >= first_check:
            errors.append(f"the first record arrived after the operation ended ({op_seconds:.3f}s)")
    if times and count >= records and records:
        last = times[bisect.bisect_left(counts, records)]
        result["seconds"] = last - sent
        result["lines_per_s"] = records / (last - sent) if last > sent else float("inf")
    if stamps and len(stamps) == count:
        latencies = []
        read = 0
        for i, stamp in enumerate(stamps):
            while counts[read] <= i:
                read += 1
            latencies.append(times[read] - stamp)
        latencies.sort()
        result["latency_p50"] = percentile(latencies, 50)
        result["latency_p99"] = percentile(latencies, 99)
        result["latency_max"] = latencies[-1]
    result["errors"] = errors
    result["ok"] = not errors
    return result


class _Stream:
    __slots__ = ("buffer", "connected", "first", "head", "last", "lines", "sock", "status")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.connected = False
        self.head = b""
        self.status = 0
        self.buffer = b""
        self.first = 0.0  # time the first record arrived
        self.last = 0.0  # time the latest record arrived
        self.lines = 0


def hold_many(port: int, path: str, streams: int, *, pending: int, window: float, bound: float) -> None:
    """Open ``streams`` streams; report readiness, then hold or watch them (see the module docstring)."""
    selector = selectors.DefaultSelector()
    payload = request(port, path)
    live: list[_Stream] = []
    failures: dict[str, int] = {}
    latencies: list[float] = []
    watching = False
    opened = ready = 0
    started = time.monotonic()

    def fail(stream: _Stream, why: str) -> None:
        failures[why] = failures.get(why, 0) + 1
        close(stream)

    def close(stream: _Stream) -> None:
        try:
            selector.unregister(stream.sock)
        except (KeyError, ValueError):
            pass
        # RST instead of FIN: thousands of sockets in TIME_WAIT would exhaust
        # the ports of the next level.
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.sock.close()
        if stream in live:
            live.remove(stream)

    def on_event(stream: _Stream, mask: int) -> None:
        nonlocal ready
        if not stream.connected:
            error = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                fail(stream, f"connect: {error}")
                return
            stream.connected = True
            stream.sock.send(payload)
            selector.modify(stream.sock, selectors.EVENT_READ, stream)
            return
        try:
            data = stream.sock.recv(65536)
        except OSError as exc:
            fail(stream, f"recv: {exc.__class__.__name__}")
            return
        if not data:
            fail(stream, "closed by server")
            return
        now = time.time()
        if not stream.status:
            stream.head += data
            if b"\r\n\r\n" not in stream.head:
                return
            head, _, data = stream.head.partition(b"\r\n\r\n")
            stream.status = int(head.split(b" ", 2)[1])
            stream.head = b""
            if stream.status != 200:
                fail(stream, f"status {stream.status}")
                return
        buffer = stream.buffer + data
        matches = list(RECORD.finditer(buffer))
        if not matches:
            stream.buffer = buffer[-200:]
            return
        stream.buffer = buffer[matches[-1].end() :]
        if not stream.lines:
            stream.first = now
            ready += 1
        stream.lines += len(matches)
        stream.last = now
        if watching:
            latencies.extend(now - float(m.group(2)) for m in matches)

    def pump(timeout: float) -> None:
        for key, mask in selector.select(timeout):
            on_event(key.data, mask)

    # Connect, at most ``pending`` streams waiting for their first record at a time.
    connect_deadline = time.monotonic() + max(60.0, streams / 100)
    while time.monotonic() < connect_deadline:
        while opened < streams and opened - ready - sum(failures.values()) < pending:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = _Stream(sock)
            live.append(stream)
            opened += 1
            sock.connect_ex(("127.0.0.1", port))
            selector.register(sock, selectors.EVENT_WRITE, stream)
        if ready + sum(failures.values()) >= streams:
            break
        pump(0.05)
    connect_seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "event": "ready",
                "streams": streams,
                "ready": ready,
                "failures": failures,
                "connect_seconds": connect_seconds,
            }
        ),
        flush=True,
    )
    if window <= 0:
        sys.stdin.readline()
    else:
        watching = True
        window_start = time.time()
        ends = time.monotonic() + window
        while time.monotonic() < ends:
            pump(min(0.05, max(ends - time.monotonic(), 0)))
        window_end = time.time()
        latencies.sort()
        silent = sum(1 for s in live if s.last < window_start)
        late = sum(1 for value in latencies if value > bound)
        print(
            json.dumps(
                {
                    "event": "done",
                    "streams": streams,
                    "alive": len(live),
                    "failures": failures,
                    "lines": len(latencies),
                    "silent": silent,
                    "late": late,
                    "latency_p50": percentile(latencies, 50),
                    "latency_p99": percentile(latencies, 99),
                    "latency_max": latencies[-1] if latencies else float("nan"),
                    "window": window_end - window_start,
                }
            ),
            flush=True,
        )
    for stream in list(live):
        close(stream)
    selector.close()


class _Viewer:
    __slots__ = ("counts", "divisor", "first", "head", "keep", "sock", "status", "times", "tokens")

    def __init__(self, sock: socket.socket, divisor: int, keep: bool) -> None:
        self.sock = sock
        self.divisor = divisor  # "#" marks per record: 2 in NDJSON (message and line), else 1
        self.head = b""
        self.status = 0
        self.tokens = 0
        self.first = b""  # the bytes up to and including the first record, to check where it starts
        self.keep: list[bytes] | None = [] if keep else None  # viewer 0 keeps everything: the lines' stamps
        self.times: list[float] = []
        self.counts: list[int] = []  # records received up to and including each read


def fan_out(port: int, paths: list[tuple[str, int]], viewers: int, rate: float, seconds: float, bound: float) -> None:
    """K viewers of one producer: connect them all, start the producer, read to the end, report latencies.

    While reading it only does what :func:`read_stream` does (``recv``, the
    clock, ``bytes.count``), so that thousands of viewers cost the client
    little; viewer 0 (the first path, text) keeps its bytes, which give every
    line's stamp. Afterwards record *i* of a viewer arrived with its first read
    that brought its count above *i*: each read's lines are checked against
    ``bound`` exactly (the stamps are sorted, so a bisection counts the late
    ones), and every ``step``-th line is sampled for the percentiles.
    """
    selector = selectors.DefaultSelector()
    streams: list[_Viewer] = []
    failures: dict[str, int] = {}
    connected = ready = 0
    open_count = 0
    started = time.monotonic()

    def fail(v: _Viewer, why: str) -> None:
        failures[why] = failures.get(why, 0) + 1
        finish(v)

    def finish(v: _Viewer) -> None:
        nonlocal open_count
        try:
            selector.unregister(v.sock)
        except (KeyError, ValueError):
            return
        open_count -= 1
        v.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        v.sock.close()

    def on_event(v: _Viewer, mask: int) -> None:
        nonlocal ready
        if mask & selectors.EVENT_WRITE:  # connected (or failed): send the request, then only read
            if v.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                fail(v, "connect")
                return
            v.sock.send(v.head)
            v.head = b""
            selector.modify(v.sock, selectors.EVENT_READ, v)
            return
        try:
            data = v.sock.recv(262144)
        except OSError as exc:
            fail(v, f"recv: {exc.__class__.__name__}")
            return
        now = time.time()
        if not data:
            finish(v)
            return
        if not v.status:
            v.head += data
            if b"\r\n\r\n" not in v.head:
                return
            head, _, data = v.head.partition(b"\r\n\r\n")
            v.status = int(head.split(b" ", 2)[1])
            v.head = b""
            if v.status != 200:
                fail(v, f"status {v.status}")
                return
            ready += 1
        if not v.first:
            # Until the first record, skip what comes before it: the HTML page's head has "#"s of its own.
            at = data.find(b"seq=")
            if at < 0:
                return
            data = data[at:]
            v.first = data[:200]
        if v.keep is not None:
            v.keep.append(data)
        found = data.count(TOKEN)
        if found:
            v.tokens += found
            v.times.append(now)
            v.counts.append(v.tokens // v.divisor)

    def connect(index: int) -> None:
        nonlocal open_count
        path, divisor = paths[index % len(paths)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        v = _Viewer(sock, divisor, keep=index == 0)
        v.head = request(port, path)  # held here until the socket is connected
        streams.append(v)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE, v)
        open_count += 1

    # Connect: at most 500 viewers waiting for their response head at a time.
    deadline = time.monotonic() + max(60.0, viewers / 100)
    while time.monotonic() < deadline and ready + sum(failures.values()) < viewers:
        while connected < viewers and connected - ready - sum(failures.values()) < 500:
            connect(connected)
            connected += 1
        for key, mask in selector.select(0.05):
            on_event(key.data, mask)
    connect_seconds = time.monotonic() - started
    print(json.dumps({"event": "ready", "viewers": viewers, "ready": ready, "failures": failures}), flush=True)

    # Start the producer, then read until every stream ended (or the deadline).
    with socket.create_connection(("127.0.0.1", port), timeout=30) as go:
        go.sendall(request(port, f"/go?rate={rate:g}&seconds={seconds:g}"))
        while go.recv(65536):
            pass
    cpu = time.process_time()
    ends = time.monotonic() + seconds + max(30.0, seconds)
    while open_count and time.monotonic() < ends:
        for key, mask in selector.select(0.1):
            on_event(key.data, mask)
    cpu = time.process_time() - cpu
    for v in streams:
        finish(v)
    selector.close()

    expected = int(rate * seconds)
    reference = streams[0].keep or []
    stamps = [float(t) for _, t in RECORD.findall(b"".join(reference))]
    errors: list[str] = []
    # Viewer 0 short of lines is a result (a contender that could not deliver in time), not a broken check:
    # the latencies are then those of the lines it did receive, and "complete" says how many viewers got all.
    complete = late = received = 0
    worst = 0.0
    samples: list[float] = []
    pairs = max(1, viewers) * max(1, expected)
    step = max(1, pairs // 2_000_000)  # at most about two million samples
    wrong_start = 0
    for v in streams:
        if not v.counts:
            continue
        first = RECORD.search(v.first) if v.first else None
        if first is not None and int(first.group(1)) != 0:
            wrong_start += 1
        n = min(v.counts[-1], len(stamps))
        received += v.counts[-1]
        complete += v.counts[-1] >= expected
        before = 0
        for when, count in zip(v.times, v.counts, strict=True):
            count = min(count, n)
            if count <= before:
                continue
            late += bisect.bisect_left(stamps, when - bound, before, count) - before
            worst = max(worst, when - stamps[before])
            j = before + (-before) % step
            while j < count:
                samples.append(when - stamps[j])
                j += step
            before = count
    if wrong_start:
        errors.append(f"{wrong_start} viewers' first line was not line 0")
    samples.sort()
    produced = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    print(
        json.dumps(
            {
                "event": "done",
                "ok": not errors,
                "errors": errors,
                "viewers": viewers,
                "ready": ready,
                "failures": failures,
                "connect_seconds": connect_seconds,
                "expected": expected,
                "complete": complete,
                "received": received,
                "late": late,
                "latency_p50": percentile(samples, 50),
                "latency_p99": percentile(samples, 99),
                "latency_max": worst,
                "samples": len(samples),
                "produced_per_s": produced,
                "client_cpu": cpu,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("stream")
    one.add_argument("port", type=int)
    one.add_argument("path")
    one.add_argument("--records", type=int, required=True)
    one.add_argument("--timeout", type=float, default=120.0)
    one.add_argument("--first-check", type=float, default=0.0, help="check first-before-end for operations this long")
    many = sub.add_parser("many")
    many.add_argument("port", type=int)
    many.add_argument("path")
    many.add_argument("--streams", type=int, required=True)
    many.add_argument("--pending", type=int, default=500)
    many.add_argument("--window", type=float, default=0.0)
    many.add_argument("--bound", type=float, default=1.0)
    fan = sub.add_parser("fanout")
    fan.add_argument("port", type=int)
    fan.add_argument("--paths", required=True, help="comma-separated PATH:MARKS_PER_RECORD, one per viewer in turn")
    fan.add_argument("--viewers", type=int, required=True)
    fan.add_argument("--rate", type=float, required=True)
    fan.add_argument("--seconds", type=float, required=True)
    fan.add_argument("--bound", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.mode == "fanout":
        paths = [(p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1])) for p in args.paths.split(",")]
        fan_out(args.port, paths, args.viewers, args.rate, args.seconds, args.bound)
    elif args.mode == "stream":
        print(json.dumps(read_stream(args.port, args.path, args.records, args.timeout, args.first_check)), flush=True)
    else:
        hold_many(args.port, args.path, args.streams, pending=args.pending, window=args.window, bound=args.bound)


if __name__ == "__main__":
    main()
