"""Options are checked when the app is built, and a mistake names the option it is about.

A wrong value must fail at construction, in the developer's face, not as a
traceback on the first request in production. Valid values must then do
what they say.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tests.inproc import TestApp
from tests.wire import ndjson_objects
from wsgi_logstream import LogStreamMiddleware, logstream

log = logging.getLogger("tests.options")


def noop() -> None:
    log.info("noop")


BAD = [
    ("heartbeat", 0, ValueError),
    ("heartbeat", -1, ValueError),
    ("heartbeat", float("nan"), ValueError),
    ("heartbeat", float("inf"), ValueError),
    ("heartbeat", "15", TypeError),
    ("heartbeat", True, TypeError),
    ("max_buffer", -1, ValueError),
    ("max_buffer", 0, ValueError),
    ("max_buffer", 1.5, TypeError),
    ("max_concurrent", 0, ValueError),
    ("max_concurrent", "2", TypeError),
    ("on_disconnect", "x", ValueError),
    ("on_disconnect", None, ValueError),
    ("level", "NOPE", ValueError),
    ("level", -1, ValueError),
    ("level", True, TypeError),
    ("level", 1.5, TypeError),
    ("formatter", 3, TypeError),
    ("formatter", "%(nosuchfield)s", ValueError),
    ("formatter", "%(message", ValueError),
    ("loggers", [], ValueError),
    ("loggers", [""], ValueError),
    ("loggers", 3, TypeError),
    ("title", 3, TypeError),
    ("timeout", 0, ValueError),
    ("timeout", "1", TypeError),
    ("traceback", "yes", TypeError),
    ("ansi", 1, TypeError),
    ("redact", "(", ValueError),
    ("redact", ["ok", "[unclosed"], ValueError),
    ("redact", [3], TypeError),
    ("redact", 3, TypeError),
]


@pytest.mark.parametrize(("option", "value", "error"), BAD, ids=[f"{o}={v!r}" for o, v, _ in BAD])
def test_a_bad_option_value_fails_at_construction_naming_the_option(option: str, value: Any, error: type) -> None:
    with pytest.raises(error) as raised:
        logstream(noop, **{option: value})
    assert option in str(raised.value)


def test_the_middleware_checks_options_the_same_way() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        LogStreamMiddleware(lambda e, s: [], {"/x": noop}, heartbeat=0)


def test_an_unknown_option_name_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="heartbeats"):
        logstream(noop, heartbeats=1)


def test_a_target_that_is_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="callable"):
        logstream("not a function")  # type: ignore[arg-type]


def test_a_target_requiring_two_arguments_is_a_type_error_at_construction() -> None:
    def two(environ: dict[str, Any], other: Any) -> None:
        pass

    with pytest.raises(TypeError, match="requires 2"):
        logstream(two)


def test_a_target_taking_one_argument_gets_the_environ() -> None:
    def with_environ(environ: dict[str, Any]) -> None:
        log.info("path=%s query=%s", environ["PATH_INFO"], environ["QUERY_STRING"])

    body = TestApp(logstream(with_environ, formatter="%(message)s")).get("/some/where?format=text&x=1").text
    assert "path=/some/where query=format=text&x=1\n" in body


@pytest.mark.parametrize(
    "target",
    [
        lambda: log.info("no argument"),
        lambda environ=None: log.info("optional %s", "environ" if environ else "none"),
        lambda *args: log.info("varargs %d", len(args)),
    ],
    ids=["none", "optional", "varargs"],
)
def test_targets_without_a_required_argument_are_called_accordingly(target: Any) -> None:
    body = TestApp(logstream(target, formatter="%(message)s")).get("/?format=ndjson").text
    objects = ndjson_objects(body)
    assert objects[-1]["status"] == "ok", objects[-1]
    messages = [o["message"] for o in objects if o["event"] == "log"]
    assert messages in (["no argument"], ["optional environ"], ["varargs 1"])


def test_options_passed_are_not_mutated() -> None:
    loggers = ["tests.options"]
    redact = ["secret"]
    logstream(noop, loggers=loggers, redact=redact)
    assert loggers == ["tests.options"] and redact == ["secret"]


# -- valid values do what they say ----------------------------------------------


def _messages(app: Any) -> list[str]:
    body = TestApp(app).get("/?format=ndjson").text
    return [o["message"] for o in map(json.loads, body.splitlines()) if o["event"] == "log"]


def test_level_sets_the_lowest_level_captured() -> None:
    def levels() -> None:
        log.debug("debug")
        log.info("info")
        log.warning("warning")

    assert _messages(logstream(levels, level="debug")) == ["debug", "info", "warning"]
    assert _messages(logstream(levels)) == ["info", "warning"]
    assert _messages(logstream(levels, level=logging.WARNING)) == ["warning"]


def test_loggers_take_a_name_and_its_children_only() -> None:
    def several() -> None:
        logging.getLogger("app").info("app")
        logging.getLogger("app.db").info("app.db")
        logging.getLogger("application").info("application")
        logging.getLogger("other").info("other")

    assert _messages(logstream(several, loggers=["app"])) == ["app", "app.db"]
    assert _messages(logstream(several, loggers="other")) == ["other"]


def test_formatter_and_title_shape_the_text_stream() -> None:
    body = TestApp(logstream(noop, formatter="[%(levelname)s] %(message)s", title="Nightly")).get("/").text
    lines = body.splitlines()
    assert lines[0].startswith("-- Nightly: started")
    assert lines[1] == "[INFO] noop"


def test_redact_true_hides_common_secrets_in_every_format() -> None:
    def leaks() -> None:
        log.info("connecting with password=hunter2 and Authorization: Bearer abc.def")

    app = TestApp(logstream(leaks, redact=True))
    for name in ("text", "html", "sse", "ndjson"):
        body = app.get(f"/?format={name}").text
        assert "hunter2" not in body and "abc.def" not in body
        assert "[redacted]" in body


def test_redact_patterns_replace_their_matches() -> None:
    def leaks() -> None:
        log.info("card 4111-1111-1111-1111 ok")

    body = TestApp(logstream(leaks, redact=[r"\d{4}(-\d{4}){3}"], formatter="%(message)s")).get("/").text
    assert re.search(r"^card \[redacted\] ok$", body, re.M)
