"""Headless Chromium driven over the Chrome DevTools Protocol, for tests that need a real browser.

:class:`Chromium` starts ``/usr/bin/chromium --headless`` with a DevTools port
on loopback and a throw-away profile, as a :class:`servers.Program` (its own
process group, so stopping it by PID stops every Chromium process it started).
:class:`Page` speaks the protocol to one tab over a WebSocket
(``websocket-client``): send a command, wait for its answer, keep the events
that arrive meanwhile. Only what the tests use is here.

The viewer tests share their set-up through here: :meth:`Chromium.new_page`
takes what a module wants of its tabs (a viewport, a time zone, scripts run
before the page's own), which ``tests/conftest.py``'s ``page`` fixture reads
from a module's ``pytest.mark.page(...)``; :func:`served` serves an app to a
page and leaves it before the server stops; :func:`job_page` is "a jobs app
of this target, one job started, served": what most viewer tests begin with.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from tests.servers import Program, free_port, require_program, wait_until, wsgiref_server
from wsgi_logstream import jobs
from wsgi_logstream.jobs import JobHandle, JobsApp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--window-size=1000,700",
)


class Page(contextlib.AbstractContextManager["Page"]):
    """One tab, driven over its DevTools WebSocket."""

    def __init__(self, ws_url: str) -> None:
        # No Origin header: Chromium refuses DevTools connections from web origins.
        self._ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run ``method`` and return its result; a protocol error is an AssertionError."""
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"DevTools {method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools may run it when the page may not)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} raised in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        """Start loading ``url``; returns once the response has started, not when it ends."""
        result = self.send("Page.navigate", url=url)
        assert "errorText" not in result, f"navigation to {url} failed: {result['errorText']}"

    def text(self, selector: str) -> str | None:
        """The text content of the first element matching ``selector`` (None if there is none).

        Read through DevTools, which evaluates even where the page's own
        scripts are disabled (``Emulation.setScriptExecutionDisabled``).
        """
        value = self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? null")
        return None if value is None else str(value)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._ws.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chromium(contextlib.AbstractContextManager["Chromium"]):
    """A headless Chromium with a DevTools port on loopback, stopped by PID."""

    def __init__(self) -> None:
        binary = require_program("chromium")
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        self.port = free_port()
        args = [
            binary,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={self.port}",
            "about:blank",
        ]
        try:
            self.program = Program(args, self.port)
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise

    def _json(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def new_page(
        self,
        *,
        size: tuple[int, int] | None = None,
        timezone: str | None = None,
        scripts: Sequence[str] = (),
        domains: Sequence[str] = (),
    ) -> Page:
        """A new tab on about:blank, with the Page, DOM and Runtime domains on (uncaught exceptions in the page
        arrive as ``Runtime.exceptionThrown`` events).

        ``size`` is the viewport (width, height) in CSS pixels, ``timezone`` an IANA zone the page's clock is in,
        ``scripts`` run in every document before the page's own, ``domains`` are more DevTools domains to enable
        (``"Log"``: console messages as ``Log.entryAdded`` events).
        """
        target = self._json("/json/new?about:blank", method="PUT")
        page = Page(target["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "DOM", "Runtime", *domains):
                page.send(f"{domain}.enable")
            if size is not None:
                width, height = size
                page.send(
                    "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
                )
            if timezone is not None:
                page.send("Emulation.setTimezoneOverride", timezoneId=timezone)
            for source in scripts:
                page.send("Page.addScriptToEvaluateOnNewDocument", source=source)
        except BaseException:
            page.close()
            raise
        return page

    def stop(self) -> None:
        try:
            self.program.stop()
            self.program.log.unlink(missing_ok=True)
        finally:
            # Chromium's helpers may still be writing the profile for a moment after the main process.
            def removed() -> bool:
                with contextlib.suppress(OSError):
                    shutil.rmtree(self.profile)
                return not self.profile.exists()

            with contextlib.suppress(AssertionError):
                wait_until(removed, 5, "the Chromium profile to be removed")

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(page: Page, expression: str, timeout: float = 10.0) -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    return wait_until(lambda: page.evaluate(expression), timeout, expression)


@contextlib.contextmanager
def served(page: Page, app: Callable[..., Iterable[bytes]]) -> Iterator[str]:
    """Serve ``app`` (wsgiref, a thread per request); its URL. The page leaves it before the server stops,
    so no stream is left open."""
    with wsgiref_server(app) as url:
        try:
            yield url
        finally:
            page.navigate("about:blank")


@dataclass
class JobPage:
    """A jobs app with one job started, served to a page."""

    app: JobsApp
    job: JobHandle
    #: The server's root (no trailing slash).
    url: str
    page: Page

    def open(self, after: str = "") -> None:
        """Navigate the page to the job's page, ``after`` (a query or a ``#L...`` link) appended."""
        self.page.navigate(f"{self.url}/{self.job.id}{after}")


@contextlib.contextmanager
def job_page(page: Page, target: Callable[[], object], **options: Any) -> Iterator[JobPage]:
    """``jobs(target, **options)`` (one line a message unless ``formatter`` says otherwise), its job started and
    the app served; afterwards the page leaves, the server stops, and the app's jobs end (``shutdown`` is True).

    A test that holds its job on Events sets them in its own ``finally``, inside this block, so the job can end.
    """
    options.setdefault("formatter", "%(message)s")
    app = jobs(target, **options)
    try:
        job = app.start()
        with served(page, app) as url:
            yield JobPage(app, job, url, page)
    finally:
        assert app.shutdown()
