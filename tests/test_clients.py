"""Reading streams from code: requests, httpx, sseclient-py, httpx-sse and node's ``eventsource``.

The clients run against the real servers people put them in front of: the
standard library's ``wsgiref`` server (which, like uWSGI's HTTP router without
``http-auto-chunked``, Django's ``runserver`` and bjoern, sends a stream with
neither ``Content-Length`` nor chunks, ending it by closing the connection),
and gunicorn (which chunks). The site is ``tests/apps/deploy_site.py``: its
operation logs ``first K`` and waits until ``/release?key=K``, which the test
asks only after the client under test has handed it that line.

* ``requests``' ``iter_lines()`` reads 512-byte blocks: on a server that does
  not chunk, a short line waits for the block to fill (here: until the
  operation ends, since nothing else comes); ``iter_lines(chunk_size=1)`` and
  ``httpx`` hand each line over as it arrives.
* The SSE clients read a job, are cut after its first line, reconnect with
  ``Last-Event-ID`` and get the rest: together exactly the events a reader who
  never left gets, no gap and no duplicate.
* node's ``eventsource`` (from the npm registry, installed once per machine
  into a cache directory) reads a job live, gets its end, and stops when the
  library answers its reconnection with 204; cut mid-job by a relay
  (``proxies.CutRelay``), it reconnects by itself and resumes with no gap or
  duplicate.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import sseclient
from httpx_sse import connect_sse

from tests.apps.deploy_site import application
from tests.nginx import gunicorn_with
from tests.proxies import APP, CutRelay, program, start_job
from tests.servers import RawClient, wait_until, wsgiref_server

pytestmark = pytest.mark.servers


def _release(url: str, key: str) -> None:
    with RawClient(url, f"/release?key={key}") as release:
        release.read_to_end()


@pytest.fixture(scope="module")
def unchunked() -> Iterator[str]:
    """The site on wsgiref: HTTP/1.0 style, the body ends when the connection closes."""
    with wsgiref_server(application) as url:
        yield url


@pytest.fixture(scope="module")
def chunked() -> Iterator[str]:
    with gunicorn_with("gunicorn.conf.py", APP) as server:
        yield server.url


# --- requests and httpx on a server that does not chunk ------------------------------------------


def test_requests_iter_lines_with_default_chunk_size_lags_on_a_server_that_does_not_chunk(unchunked: str) -> None:
    """The documented lag: ``first K`` is on the wire, but iter_lines() waits for 512 bytes that do not come.

    The operation cannot end before the release, so a 2 s read timeout with
    no line is the lag itself, not a slow machine.
    """
    key = uuid.uuid4().hex
    try:
        with requests.get(f"{unchunked}/ops/run?format=text&key={key}", stream=True, timeout=(5, 2)) as response:
            assert "chunked" not in response.headers.get("transfer-encoding", "")
            with pytest.raises(requests.exceptions.ConnectionError, match="timed out"):
                for line in response.iter_lines():
                    assert f"first {key}" not in line.decode(), "a line came before its block filled"
    finally:
        _release(unchunked, key)


def _read_lines_live(lines: Iterator[str], url: str, key: str) -> list[str]:
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if line.endswith(f"first {key}"):
            _release(url, key)
    assert any(line.endswith(f"second {key} released=True") for line in seen), seen
    return seen


def test_requests_iter_lines_with_chunk_size_1_streams_on_a_server_that_does_not_chunk(unchunked: str) -> None:
    key = uuid.uuid4().hex
    with requests.get(f"{unchunked}/ops/run?format=text&key={key}", stream=True, timeout=10) as response:
        lines = (line.decode() for line in response.iter_lines(chunk_size=1))
        seen = _read_lines_live(lines, unchunked, key)
    assert seen[-1].startswith("-- ok (after ")


def test_httpx_stream_iter_lines_streams_on_a_server_that_does_not_chunk(unchunked: str) -> None:
    key = uuid.uuid4().hex
    with httpx.stream("GET", f"{unchunked}/ops/run?format=text&key={key}", timeout=10) as response:
        seen = _read_lines_live(response.iter_lines(), unchunked, key)
    assert seen[-1].startswith("-- ok (after ")


def test_requests_iter_lines_streams_on_a_server_that_chunks(chunked: str) -> None:
    """On gunicorn each line is its own chunk, and urllib3 hands a chunk over without waiting for 512 bytes."""
    key = uuid.uuid4().hex
    with requests.get(f"{chunked}/ops/run?format=text&key={key}", stream=True, timeout=10) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        seen = _read_lines_live((line.decode() for line in response.iter_lines()), chunked, key)
    assert seen[-1].startswith("-- ok (after ")


# --- SSE clients: a job, a cut, and a resume ---------------------------------------------------------

Event = tuple[str, str, str]  # (id, event, data)


def _events_sseclient(url: str, headers: dict[str, str], until: str) -> list[Event]:
    """Events with sseclient-py over requests, up to the first whose data ends with ``until`` (or the end)."""
    seen: list[Event] = []
    with requests.get(url, stream=True, headers={"Accept": "text/event-stream", **headers}, timeout=10) as response:
        assert response.status_code == 200, response.text
        client = sseclient.SSEClient(response)
        for event in client.events():
            seen.append((event.id, event.event, event.data))
            if event.event == "end" or event.data.endswith(until):
                break
        client.close()
    return seen


def _events_httpx_sse(url: str, headers: dict[str, str], until: str) -> list[Event]:
    seen: list[Event] = []
    with httpx.Client(timeout=10) as client, connect_sse(client, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        for event in source.iter_sse():
            if not event.data:
                continue  # httpx-sse also yields the fields-only blocks (retry:, id:) the spec says not to dispatch
            seen.append((event.id, event.event, event.data))
            if event.event == "end" or event.data.endswith(until):
                break
    return seen


@pytest.mark.parametrize("reader", [_events_sseclient, _events_httpx_sse], ids=["sseclient-py", "httpx-sse"])
def test_sse_client_resumes_a_job_after_a_cut_with_no_gap_or_duplicate(chunked: str, reader: Any) -> None:
    key = uuid.uuid4().hex
    job = f"{chunked}{start_job(chunked, key)}?format=sse"
    try:
        before = reader(job, {}, f"first {key}")  # live: the job waits for the release
    finally:
        _release(chunked, key)
    assert before and before[-1][2].endswith(f"first {key}"), before
    # The connection is closed (the cut); the job went on meanwhile. Resume from the last id seen.
    after = reader(job, {"Last-Event-ID": before[-1][0]}, "never")
    assert after[-1][1] == "end", after
    whole = reader(job, {}, "never")
    assert before + after == whole
    assert len({event_id for event_id, _, _ in whole}) == len(whole)
    assert any(data.endswith(f"line 3 of {key}") for _, _, data in after)


# --- node's eventsource ------------------------------------------------------------------------------

# Version 3: the newest whose engines include Debian 12's node (18); later ones ask for node 20 or 22.
EVENTSOURCE = "eventsource@3"
NODE_CACHE = Path(os.environ.get("WSGI_LOGSTREAM_NPM_CACHE", Path(tempfile.gettempdir()) / "wsgi_logstream-npm-es3"))

# Prints each message, the end event, each error, and "closed" once EventSource gives up (the library's
# 204). The interval keeps node alive between a stream's end and the reconnection: eventsource's
# reconnection timer does not (a script with nothing else to do would just exit there).
NODE_SCRIPT = """
import { EventSource } from "eventsource";
setInterval(() => {}, 1000);
const source = new EventSource(process.argv[2]);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\\n");
source.onmessage = (event) => say({ id: event.lastEventId, data: event.data });
source.addEventListener("end", (event) => say({ id: event.lastEventId, end: JSON.parse(event.data) }));
source.onerror = (error) => {
  say({ error: String(error.message), code: error.code ?? null, state: source.readyState });
  if (source.readyState === EventSource.CLOSED) { say({ closed: true }); process.exit(0); }
};
"""


@pytest.fixture(scope="session")
def eventsource_module() -> Path:
    """``node_modules`` with the ``eventsource`` package: installed from the npm registry once, then cached."""
    program("node")
    npm = program("npm")
    modules = NODE_CACHE / "node_modules"
    if not (modules / "eventsource" / "package.json").exists():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [npm, "install", "--prefix", str(NODE_CACHE), "--no-audit", "--no-fund", EVENTSOURCE],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm could not install eventsource (no registry?): {installed.stderr[-500:]}")
    return modules


class NodeReader:
    """``node`` running :data:`NODE_SCRIPT` against a URL; its output lines, parsed, in a queue."""

    def __init__(self, modules: Path, url: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="node-es-"))
        (self.dir / "node_modules").symlink_to(modules)
        (self.dir / "read.mjs").write_text(NODE_SCRIPT)
        self.proc = subprocess.Popen(
            [program("node"), str(self.dir / "read.mjs"), url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node said nothing in {timeout}s") from None

    def read_until(self, seen: list[dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> None:
        """Append to ``seen`` what node says until ``done`` holds for its last line."""
        while not (seen and done(seen[-1])):
            seen.append(self.next())

    def read_to_exit(self, seen: list[dict[str, Any]]) -> None:
        """Append to ``seen`` up to node's "closed" line (EventSource gave up), then wait for node to exit."""
        self.read_until(seen, lambda line: "closed" in line)
        wait_until(lambda: self.proc.poll() is not None, 10, "node to exit")

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        self._thread.join(10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        errors = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return errors


def test_node_eventsource_reads_a_job_live_and_stops_at_its_end(chunked: str, eventsource_module: Path) -> None:
    key = uuid.uuid4().hex
    job = f"{chunked}{start_job(chunked, key)}"
    reader = NodeReader(eventsource_module, job)
    seen: list[dict[str, Any]] = []
    try:
        reader.read_until(seen, lambda line: line.get("data", "").endswith(f"first {key}"))
        _release(chunked, key)
        reader.read_to_exit(seen)
    finally:
        _release(chunked, key)
        errors = reader.close()
    assert reader.proc.returncode == 0, errors
    ends = [line["end"] for line in seen if "end" in line]
    assert len(ends) == 1 and ends[0]["status"] == "ok", seen
    assert any(line.get("data", "").endswith(f"line 3 of {key}") for line in seen)
    assert any(line.get("code") == 204 for line in seen), seen  # it reconnected, and the 204 stopped it


def test_node_eventsource_resumes_a_job_after_a_cut_with_no_gap_or_duplicate(
    chunked: str, eventsource_module: Path
) -> None:
    """The connection is cut under node (a relay drops it) after the first line; EventSource reconnects alone.

    It sends ``Last-Event-ID`` and gets every line after that one, then the end,
    then the 204 that stops it: each line once, in order.
    """
    key = uuid.uuid4().hex
    upstream_port = int(chunked.rsplit(":", 1)[1])
    with CutRelay(upstream_port) as relay:
        job = f"{relay.url}{start_job(chunked, key)}"
        reader = NodeReader(eventsource_module, job)
        seen: list[dict[str, Any]] = []
        try:
            reader.read_until(seen, lambda line: line.get("data", "").endswith(f"first {key}"))
            relay.cut()
            _release(chunked, key)
            reader.read_to_exit(seen)
        finally:
            _release(chunked, key)
            errors = reader.close()
    assert reader.proc.returncode == 0, errors
    ids = [int(line["id"]) for line in seen if "id" in line]
    assert ids == list(range(1, len(ids) + 1)), seen  # every line once, in order, then the end's id
    ends = [line["end"] for line in seen if "end" in line]
    assert len(ends) == 1 and ends[0]["status"] == "ok" and ids[-1] == ends[0]["seq"], seen
    assert seen[-2]["code"] == 204, seen  # after the end, one more reconnection, stopped by the 204
    cut_at = next(index for index, line in enumerate(seen) if "error" in line)
    assert seen[cut_at]["state"] == 0, seen  # reconnecting, not closed: the cut was not the end
    assert seen[cut_at - 1]["data"].endswith(f"first {key}"), seen
