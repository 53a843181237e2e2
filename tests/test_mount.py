"""Calling an app from a framework's view: the mounted environ and the reply in parts (``wsgi_logstream.mount``)."""

from __future__ import annotations

import io
from typing import Any, Iterator

import pytest

from wsgi_logstream.assets import asset_url, load
from wsgi_logstream.mount import call_app, call_mounted, mounted_environ, wsgi_string


def test_the_mount_point_and_the_rest_become_script_name_and_path_info_as_wsgi_strings() -> None:
    base = {"SCRIPT_NAME": "", "PATH_INFO": "/ops/café/abc/cancel", "REQUEST_METHOD": "POST"}
    environ = mounted_environ(base, path="/ops/café/abc/cancel", rest="abc/cancel", body=b"a=1", scheme="https")
    assert environ["SCRIPT_NAME"] == "/ops/caf\xc3\xa9"
    assert environ["PATH_INFO"] == "/abc/cancel"
    assert environ["wsgi.input"].read() == b"a=1" and environ["CONTENT_LENGTH"] == "3"
    assert environ["wsgi.url_scheme"] == "https"
    assert base["PATH_INFO"] == "/ops/café/abc/cancel"  # the caller's environ is not changed
    index = mounted_environ(base, path="/ops/jobs/", rest="", body=b"", scheme="http")
    assert (index["SCRIPT_NAME"], index["PATH_INFO"]) == ("/ops/jobs", "/")
    whole = mounted_environ(base, path="/ops/reindex", rest=None, body=b"", scheme="http")
    assert (whole["SCRIPT_NAME"], whole["PATH_INFO"]) == ("/ops/reindex", "")
    assert wsgi_string("é") == "\xc3\xa9"


def test_a_body_the_framework_did_not_read_is_left_for_the_app() -> None:
    stream = io.BytesIO(b"x" * 10)
    base = {"CONTENT_LENGTH": "10", "wsgi.input": stream}
    environ = mounted_environ(base, path="/a/", rest="", body=None, scheme="http")
    assert environ["wsgi.input"] is stream and environ["CONTENT_LENGTH"] == "10"


def test_a_rest_that_does_not_end_the_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="does not end the path"):
        mounted_environ({}, path="/a/b", rest="c", body=b"", scheme="http")


class Lazy:
    """A WSGI body that starts the response on its first ``next()``, and notes its ``close()``."""

    def __init__(self, start_response: Any) -> None:
        self.start_response = start_response
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        self.start_response("201 Created", [("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")])
        yield b"one"
        yield b"two"

    def close(self) -> None:
        self.closed = True


def test_an_app_that_starts_its_response_lazily_is_read_once_and_closed_through_the_reply() -> None:
    made: list[Lazy] = []

    def app(environ: dict[str, Any], start_response: Any) -> Lazy:
        made.append(Lazy(start_response))
        return made[0]

    reply = call_app(app, {})
    assert (reply.status, reply.reason) == (201, "Created")
    assert reply.header("x-a") == "1, 2"
    assert reply.whole is None  # no Content-Length: a stream
    assert list(reply.body) == [b"one", b"two"]
    reply.body.close()  # type: ignore[attr-defined]
    assert made[0].closed


def test_a_body_given_whole_with_its_length_is_whole() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Length", "4")])
        return [b"no", b"pe"]

    reply = call_app(app, {})
    assert reply.whole == b"nope" and reply.status == 404


def test_write_is_refused_and_an_app_that_never_starts_is_an_error() -> None:
    def writes(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])(b"x")
        return []

    with pytest.raises(NotImplementedError, match="not write"):
        call_app(writes, {})
    with pytest.raises(AssertionError, match="without calling start_response"):
        call_app(lambda environ, start_response: [], {})


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"app"]


def test_only_a_view_mounted_at_one_url_has_its_page_ask_that_url_for_its_assets_and_answers_them() -> None:
    base = {"REQUEST_METHOD": "GET", "QUERY_STRING": "logstream_asset=" + load("viewer.js").hashed_name}
    alone = mounted_environ(base, path="/ops/once/", rest=None, body=b"", scheme="http")
    assert asset_url(alone, "viewer.js") == f"?logstream_asset={load('viewer.js').hashed_name}"
    reply = call_mounted(_echo, alone)
    assert reply.status == 200 and reply.whole == load("viewer.js").body
    # Under urls() or a blueprint the app's own _assets/ is routed: the query field is the app's to read.
    below = mounted_environ(base, path="/ops/jobs/", rest="", body=b"", scheme="http")
    assert asset_url(below, "viewer.js") == f"_assets/{load('viewer.js').hashed_name}"  # /ops/jobs/_assets/
    assert call_mounted(_echo, below).whole == b"app"
