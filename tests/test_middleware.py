"""``LogStreamMiddleware`` serves its mounted paths and hands everything else to the app untouched."""

from __future__ import annotations

import logging
from typing import Any, Iterator

import pytest

from tests.inproc import TestApp, call
from tests.wire import ndjson_objects
from wsgi_logstream import LogStreamMiddleware

log = logging.getLogger("tests.middleware")


class Site:
    """A WSGI app that records what it was given and whether its iterable was closed."""

    def __init__(self) -> None:
        self.environs: list[dict[str, Any]] = []
        self.copies: list[dict[str, Any]] = []
        self.bodies: list[Body] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Body:
        self.environs.append(environ)
        self.copies.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Site", "yes")])
        body = Body(f"site {environ['SCRIPT_NAME']}|{environ['PATH_INFO']}\n".encode())
        self.bodies.append(body)
        return body


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.data

    def close(self) -> None:
        self.closed += 1


def where(environ: dict[str, Any]) -> None:
    log.info("script=%r path=%r", environ["SCRIPT_NAME"], environ["PATH_INFO"])


def _where(body: str) -> str:
    objects = ndjson_objects(body)
    return next(o["message"] for o in objects if o["event"] == "log")


@pytest.mark.parametrize(
    ("path", "script", "rest"),
    [("/admin/reindex", "/admin/reindex", ""), ("/admin/reindex/", "/admin/reindex", "/")],
)
def test_a_mounted_path_is_served_with_the_path_moved_to_script_name(path: str, script: str, rest: str) -> None:
    site = Site()
    app = TestApp(LogStreamMiddleware(site, {"/admin/reindex": where}))
    response = app.get(path + "?format=ndjson")
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert _where(response.text) == f"script={script!r} path={rest!r}"
    assert site.environs == []


def test_a_mounted_path_keeps_the_script_name_the_app_is_mounted_under() -> None:
    app = LogStreamMiddleware(Site(), {"/reindex": where})
    environ_app = TestApp(app, extra_environ={"SCRIPT_NAME": "/tools"})
    body = environ_app.get("/reindex?format=ndjson").text
    assert _where(body) == "script='/tools/reindex' path=''"


def test_a_route_given_with_a_trailing_slash_matches_both_forms() -> None:
    app = TestApp(LogStreamMiddleware(Site(), {"/jobs/": where}))
    assert _where(app.get("/jobs?format=ndjson").text) == "script='/jobs' path=''"
    assert _where(app.get("/jobs/?format=ndjson").text) == "script='/jobs' path='/'"


@pytest.mark.parametrize("path", ["/", "/admin", "/admin/reindexer", "/admin/reindex/extra", "/other"])
def test_other_paths_reach_the_app_untouched_and_its_iterable_is_closed(path: str) -> None:
    site = Site()
    app = LogStreamMiddleware(site, {"/admin/reindex": where})
    with call(app, "a=1", path=path, validate=False) as response:
        assert response.result is site.bodies[0], "the app's own iterable is returned, not a wrapper"
        body = response.read_to_end()
    assert body == f"site |{path}\n".encode()
    assert response.header("X-Site") == "yes"
    assert site.environs[0] is response.environ, "the app gets the server's environ itself"
    assert site.copies[0] == response.environ, "nothing in the environ was changed"
    assert site.bodies[0].closed == 1


def test_the_app_is_served_through_webtest_too_and_closed() -> None:
    site = Site()
    response = TestApp(LogStreamMiddleware(site, {"/x": where})).get("/y")
    assert response.text == "site |/y\n"
    assert site.bodies[0].closed == 1


def test_the_callers_environ_is_not_mutated_for_a_mounted_path() -> None:
    app = LogStreamMiddleware(Site(), {"/x": where})
    with call(app, "format=text", path="/x") as stream:
        before = dict(stream.environ)
        stream.read_to_end()
    assert stream.environ == before
    assert stream.environ["SCRIPT_NAME"] == "" and stream.environ["PATH_INFO"] == "/x"


def test_bad_routes_are_refused_at_construction() -> None:
    site = Site()
    with pytest.raises(TypeError, match="routes"):
        LogStreamMiddleware(site, {})
    with pytest.raises(ValueError, match="'/'"):
        LogStreamMiddleware(site, {"x": where})
    with pytest.raises(ValueError, match="twice"):
        LogStreamMiddleware(site, {"/x": where, "/x/": where})
    with pytest.raises(TypeError, match="app"):
        LogStreamMiddleware(None, {"/x": where})  # type: ignore[arg-type]
