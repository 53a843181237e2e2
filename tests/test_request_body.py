"""A POST's form reaches the target, read before the target's thread starts."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from webtest import TestApp

from wsgi_logstream import logstream

log = logging.getLogger("tests.body")


def echo_form(environ: dict[str, Any]) -> None:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    form = parse_qs(environ["wsgi.input"].read(length).decode())
    log.info("table=%s", form["table"][0])


def test_a_post_form_reaches_the_target() -> None:
    app = TestApp(logstream(echo_form, formatter="%(message)s"))
    reply = app.post("/?format=text", {"table": "orders"})
    assert "table=orders\n" in reply.text
    assert reply.text.rstrip("\n").splitlines()[-1].startswith("-- ok")


def test_an_oversized_body_is_refused_and_runs_nothing() -> None:
    runs: list[int] = []
    app = TestApp(logstream(lambda: runs.append(1)))
    reply = app.post("/", b"x" * ((1 << 20) + 1), content_type="application/octet-stream", expect_errors=True)
    assert reply.status_int == 413
    assert reply.content_type == "text/plain"
    assert runs == []
