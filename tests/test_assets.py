"""The viewer's script and style as files: served cacheable, found from any page, and checked.

The relative URL logic is proven the way a browser uses it: the page's URL as
the browser sees it (with or without a prefix a proxy adds), the asset URL the
page writes, resolved with ``urllib.parse.urljoin``, must be the mount point's
``_assets/`` as the browser would ask for it. The responses go through
WebTest (which checks them with ``wsgiref.validate``); the script through the
machine's JavaScript engine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import pytest

from tests.apps.targets import CountingTarget
from tests.inproc import TestApp
from wsgi_logstream import LogStreamMiddleware, jobs, logstream
from wsgi_logstream.assets import (
    ASSETS,
    HASHED_CACHE,
    PLAIN_CACHE,
    asset_prefix,
    asset_url,
    load,
    serve_asset,
)
from wsgi_logstream.formats import HtmlFormat
from wsgi_logstream.viewer import CSP, page_head

VIEWER = Path(resources.files("wsgi_logstream.viewer"))  # type: ignore[arg-type]


def _assets_app(environ: dict[str, Any], start_response: Any) -> Any:
    return serve_asset(environ, start_response, environ["PATH_INFO"].removeprefix("/"))


assets = TestApp(_assets_app)


# -- the files -------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (apt-get install nodejs)")
@pytest.mark.parametrize("name", [name for name in ASSETS if name.endswith(".js")])
def test_the_script_is_valid_javascript_for_the_machines_engine(name: str) -> None:
    checked = subprocess.run(
        [str(shutil.which("node")), "--check", str(VIEWER / name)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("name", list(ASSETS))
def test_every_asset_is_a_file_of_the_package_and_its_hash_names_its_content(name: str) -> None:
    asset = load(name)
    assert asset.body == (VIEWER / name).read_bytes()
    stem, ext = name.rsplit(".", 1)
    assert asset.hashed_name == f"{stem}.{asset.digest}.{ext}"
    assert len(asset.digest) == 12 and int(asset.digest, 16) >= 0


def test_the_setup_declares_the_asset_files_as_package_data() -> None:
    setup = (Path(__file__).resolve().parent.parent / "setup.cfg").read_text()
    assert "wsgi_logstream.viewer = *.js, *.css" in setup


# -- serving ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ASSETS))
def test_an_asset_is_served_with_its_type_a_strong_etag_and_nosniff(name: str) -> None:
    asset = load(name)
    response = assets.get(f"/{asset.hashed_name}")
    assert response.status_int == 200
    assert response.body == asset.body
    assert response.headers["Content-Type"] == ASSETS[name]
    assert response.headers["Content-Length"] == str(len(asset.body))
    assert response.headers["ETag"] == asset.etag
    assert not asset.etag.startswith("W/") and asset.etag.startswith('"') and asset.etag.endswith('"')
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_hashed_name_is_cached_for_a_year_and_the_plain_name_briefly() -> None:
    asset = load("viewer.js")
    assert assets.get(f"/{asset.hashed_name}").headers["Cache-Control"] == HASHED_CACHE
    assert HASHED_CACHE == "public, max-age=31536000, immutable"
    plain = assets.get("/viewer.js")
    assert plain.body == asset.body
    assert plain.headers["Cache-Control"] == PLAIN_CACHE == "public, max-age=300"


def test_an_old_hash_gets_the_current_file_but_not_for_long() -> None:
    asset = load("viewer.css")
    stale = "viewer.000000000000.css"
    assert stale != asset.hashed_name
    response = assets.get(f"/{stale}")
    assert response.body == asset.body
    assert response.headers["Cache-Control"] == PLAIN_CACHE
    assert response.headers["ETag"] == asset.etag


@pytest.mark.parametrize("match", ["{etag}", "W/{etag}", '"nope", {etag}', "*"])
def test_a_conditional_request_with_the_current_etag_gets_304_without_a_body(match: str) -> None:
    asset = load("viewer.js")
    response = assets.get(f"/{asset.hashed_name}", headers={"If-None-Match": match.format(etag=asset.etag)})
    assert response.status_int == 304
    assert response.body == b""
    assert response.headers["ETag"] == asset.etag
    assert response.headers["Cache-Control"] == HASHED_CACHE


def test_a_conditional_request_with_another_etag_gets_the_file() -> None:
    asset = load("viewer.js")
    response = assets.get(f"/{asset.hashed_name}", headers={"If-None-Match": '"an-older-version"'})
    assert response.status_int == 200 and response.body == asset.body


def test_head_gets_the_headers_of_get_and_no_body() -> None:
    asset = load("viewer.css")
    response = assets.head(f"/{asset.hashed_name}")
    assert response.status_int == 200
    assert response.body == b""
    assert response.headers["Content-Length"] == str(len(asset.body))
    assert response.headers["ETag"] == asset.etag


@pytest.mark.parametrize(
    "name", ["nope.js", "viewer.py", "__init__.py", "viewer.12345.js", "VIEWER.JS", "viewer.js/x", "../viewer.js", ""]
)
def test_a_name_that_is_not_an_asset_is_a_404(name: str) -> None:
    response = assets.get(f"/{quote(name)}", status=404)
    assert response.text == "no such asset\n"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_another_method_is_a_405_naming_get_and_head(method: str) -> None:
    response = getattr(assets, method.lower())(f"/{load('viewer.js').hashed_name}", status=405)
    assert response.headers["Allow"] == "GET, HEAD"


def test_the_apps_serve_the_assets_below_their_mount_point_and_run_nothing() -> None:
    target = CountingTarget()
    name = load("viewer.js").hashed_name
    stream = TestApp(logstream(target))
    assert stream.get(f"/_assets/{name}").body == load("viewer.js").body
    stream.post(f"/_assets/{name}", status=405)
    job_app = jobs(target)
    try:
        assert TestApp(job_app).get(f"/_assets/{name}").body == load("viewer.js").body
        assert TestApp(job_app).get("/_assets/index.css").body == load("index.css").body
        mounted = TestApp(LogStreamMiddleware(_not_found, {"/ops/reindex": target, "/ops/import": job_app}))
        assert mounted.get(f"/ops/reindex/_assets/{name}").body == load("viewer.js").body
        assert mounted.get(f"/ops/import/_assets/{name}").body == load("viewer.js").body
        mounted.get("/ops/reindex/other", status=404)  # only _assets/ below a plain stream is its own
    finally:
        assert job_app.shutdown()
    assert target.runs == 0


def _not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"the host app\n"]


# -- the URL the page writes -----------------------------------------------------

# (SCRIPT_NAME, PATH_INFO, the path the asset must resolve to)
CASES = [
    ("", "", "/_assets/"),
    ("", "/", "/_assets/"),
    ("", "/Ab3dEf9hIj", "/_assets/"),
    ("", "/a/b", "/_assets/"),
    ("", "/a/b/", "/_assets/"),
    ("", "/a/b/c/d", "/_assets/"),
    ("/app", "", "/app/_assets/"),
    ("/app", "/", "/app/_assets/"),
    ("/app", "/Ab3dEf9hIj", "/app/_assets/"),
    ("/app/", "", "/app/_assets/"),
    ("/ops/import", "", "/ops/import/_assets/"),
    ("/ops/import", "/", "/ops/import/_assets/"),
    ("/ops/import", "/job/x", "/ops/import/_assets/"),
    ("/ops/import", "/job/x/", "/ops/import/_assets/"),
    ("/a b", "", "/a%20b/_assets/"),
    ("/tools/we:ird", "", "/tools/we%3Aird/_assets/"),
    ("/tools/q?#", "", "/tools/q%3F%23/_assets/"),
    ("/caf\xc3\xa9", "", "/caf%C3%A9/_assets/"),  # WSGI: the URL's UTF-8 bytes, decoded as latin-1
]


@pytest.mark.parametrize("proxy", ["", "/mapped", "/two/levels"])
@pytest.mark.parametrize(("script", "path", "expected"), CASES)
def test_the_asset_url_resolves_to_the_mount_points_assets_from_the_page(
    script: str, path: str, expected: str, proxy: str
) -> None:
    # The browser's URL for the page: the app's own, below whatever prefix a proxy maps to it.
    # A page at the site's root is "/" (a proxy's prefix ends with "/" then: nginx redirects to it).
    page = "http://example.test" + proxy + (quote((script + path).encode("latin-1"), safe="/:") or "/")
    environ = {"SCRIPT_NAME": script, "PATH_INFO": path}
    url = asset_url(environ, "viewer.js")
    assert not url.startswith(("/", "http:", "//")), "a root-relative URL would miss the proxy's prefix"
    assert urljoin(page, url) == f"http://example.test{proxy}{expected}{load('viewer.js').hashed_name}"
    assert urljoin(page, asset_prefix(environ)) == f"http://example.test{proxy}{expected}"


def test_a_page_at_the_mount_point_itself_starts_its_asset_url_with_the_mounts_last_segment() -> None:
    assert asset_prefix({"SCRIPT_NAME": "/ops/import", "PATH_INFO": ""}) == "import/_assets/"
    assert asset_prefix({"SCRIPT_NAME": "/ops/import", "PATH_INFO": "/a/b"}) == "../_assets/"


# -- the page --------------------------------------------------------------------


class _Inline(HTMLParser):
    """Everything a strict CSP would block in a page: inline script and style, style and on* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.links: dict[str, str] = {}
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script":
            self._in_script = True
            if "src" not in found:
                self.blocked.append("<script> without src")
            else:
                self.links["script"] = found["src"] or ""
        if tag == "link" and found.get("rel") == "stylesheet":
            self.links["style"] = found.get("href") or ""
        self.blocked.extend(f"{name}= on <{tag}>" for name in found if name == "style" or name.startswith("on"))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.blocked.append("text inside <script>")


def _stream_html(app: Any, path: str) -> tuple[Any, str]:
    response = TestApp(app).get(path, headers={"Accept": "text/html"})
    return response, response.text


def test_the_html_stream_carries_the_csp_and_nothing_inline_it_would_block() -> None:
    def target() -> None:
        import logging

        logging.getLogger("tests.assets").warning('<script>alert(1)</script> style="x" onload=1')
        raise RuntimeError("<style>")

    response, body = _stream_html(logstream(target), "/")
    assert response.headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "style-src 'self'" in CSP
    parser = _Inline()
    parser.feed(body)
    assert parser.blocked == []
    assert parser.links == {
        "script": f"_assets/{load('viewer.js').hashed_name}",
        "style": f"_assets/{load('viewer.css').hashed_name}",
    }


def test_the_jobs_pages_carry_the_csp_and_link_their_style() -> None:
    app = jobs(lambda: None)
    try:
        job = app.start()
        assert job.wait(10)
        index = TestApp(app).get("/", headers={"Accept": "text/html"})
        assert index.headers["Content-Security-Policy"] == CSP
        parser = _Inline()
        parser.feed(index.text)
        assert parser.blocked == []
        assert parser.links == {"style": f"_assets/{load('index.css').hashed_name}"}
        response, body = _stream_html(app, f"/{job.id}")
        assert response.headers["Content-Security-Policy"] == CSP
        assert 'src="_assets/viewer.' in body
        listed = TestApp(app).get("/", headers={"Accept": "application/json"})
        assert "Content-Security-Policy" not in listed.headers
    finally:
        assert app.shutdown()


@pytest.mark.parametrize(
    ("script", "path"),
    [("", "/"), ("", "/Ab3dEf9hIjKlMn0p"), ("/ops/import", "/Ab3dEf9hIjKlMn0p"), ("/admin/logs", "")],
)
def test_the_first_write_of_the_html_stream_is_under_512_bytes(script: str, path: str) -> None:
    # Caddy's encode (and others) decide on the first write whether to compress and buffer.
    fmt = HtmlFormat(resumable=True, assets=asset_prefix({"SCRIPT_NAME": script, "PATH_INFO": path}))
    head = fmt.head("Nightly import of the customer database", time.time())
    assert len(head) < 512, len(head)


def test_the_head_grows_only_with_the_title_and_the_asset_path() -> None:
    empty = len(page_head("", 0, resumable=True, assets="").encode())
    assert len(page_head("x" * 10, 0, resumable=True, assets="").encode()) == empty + 20
    assert len(page_head("", 0, resumable=True, assets="y" * 10).encode()) == empty + 20


def test_the_scripts_state_is_declared_before_the_page_starts_reading() -> None:
    # enhance() reads and may draw synchronously from its "start" section on: a `let` of its own
    # declared further down would still be in its temporal dead zone then (a ReferenceError that
    # left a plain stream's page empty once). node --check cannot see this; the layout can.
    lines = (VIEWER / "viewer.js").read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if "-- start:" in line)
    late = [n + 1 for n, line in enumerate(lines) if n > start and line.startswith("    let ")]
    assert late == []
