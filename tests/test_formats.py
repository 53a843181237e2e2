"""The four wire formats, how a request picks one, and the headers and methods every stream answers.

Each format is read the way its consumer reads it: text line by line, HTML
through an HTML parser, SSE through a parser that follows the EventSource
specification, NDJSON line by line through ``json``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tests.apps.targets import CountingTarget
from tests.inproc import TestApp, call
from tests.servers import RawClient, wsgiref_server
from tests.wire import MEDIA_TYPES, ndjson_objects, parse_html, parse_sse, summary
from wsgi_logstream import logstream

log = logging.getLogger("tests.formats")

FORMAT = "%(levelname)s %(name)s: %(message)s"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers"}
HOP_BY_HOP |= {"transfer-encoding", "upgrade"}


def two_lines() -> None:
    log.info("one")
    log.warning("two")


def failing() -> None:
    log.info("before")
    raise RuntimeError("it broke")


def _app(target: Any = two_lines, **options: Any) -> TestApp:
    options.setdefault("formatter", FORMAT)
    return TestApp(logstream(target, **options))


# -- negotiation ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(MEDIA_TYPES))
def test_format_query_parameter_picks_the_format_and_its_content_type(name: str) -> None:
    response = _app().get(f"/?format={name}", headers={"Accept": "text/html"})
    assert response.headers["Content-Type"] == MEDIA_TYPES[name]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/event-stream", "sse"),
        ("application/x-ndjson", "ndjson"),
        ("text/html", "html"),
        ("*/*", "text"),
        (None, "text"),
        ("text/plain", "text"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"),
        ("text/html;q=0.5, text/event-stream", "sse"),
        ("text/event-stream;q=0.2, application/x-ndjson;q=0.9", "ndjson"),
        ("text/html;q=0, */*", "text"),
        ("application/json, */*;q=0.1", "text"),
    ],
)
def test_accept_header_negotiates_the_format(accept: str | None, expected: str) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    response = _app().get("/", headers=headers)
    assert response.headers["Content-Type"] == MEDIA_TYPES[expected]


def test_unknown_format_is_a_400_naming_the_accepted_values_and_runs_nothing() -> None:
    counter = CountingTarget("tests.formats")
    response = _app(counter).get("/?format=xml", status=400)
    assert response.text == "unknown format 'xml': use one of text, html, sse, ndjson\n"
    assert counter.runs == 0


# -- text ------------------------------------------------------------------------


def test_text_is_each_formatted_record_on_its_own_line_then_the_summary() -> None:
    lines = _app(title="Reindex").get("/?format=text").text.split("\n")
    assert lines[0].startswith("-- Reindex: started ")
    assert lines[1:3] == ["INFO tests.formats: one", "WARNING tests.formats: two"]
    assert re.fullmatch(r"-- ok \(after \d+\.\d\ds: 2 lines, 0 dropped\) --", lines[3]), lines[3]
    assert lines[4:] == [""], "the body ends with a newline after the summary"


def test_text_keeps_a_traceback_on_the_lines_it_spans() -> None:
    def logs_exception() -> None:
        try:
            raise ValueError("inner")
        except ValueError:
            log.exception("caught")
        log.info("after")

    lines = _app(logs_exception).get("/?format=text").text.split("\n")
    start = lines.index("ERROR tests.formats: caught")
    assert lines[start + 1] == "Traceback (most recent call last):"
    end = lines.index("ValueError: inner")
    assert end > start + 1
    assert lines[end + 1] == "INFO tests.formats: after"


# -- html ------------------------------------------------------------------------


def test_html_is_a_valid_document_from_its_first_chunk() -> None:
    with call(logstream(two_lines), "format=html") as stream:
        head = stream.next()
        stream.read_to_end()
    assert head.lower().startswith(b"<!doctype html>")
    tree = parse_html(stream.body)  # fails on an element left open or closed out of order
    assert [d.lower() for d in tree.declarations] == ["doctype html"]
    assert stream.body.rstrip().endswith(b"</html>")
    tags = {tag: parents for tag, parents, _ in tree.elements}
    assert tags["html"] == ()
    assert tags["head"] == ("html",) and tags["body"] == ("html",)
    assert tags["title"] == ("html", "head")
    assert "pre" in tags and tags["pre"][:2] == ("html", "body")


def test_html_escapes_a_logged_tag_so_it_is_text_never_an_element() -> None:
    def logs_markup() -> None:
        log.info("<script>alert(1)</script> & <b>bold</b>")

    body = _app(logs_markup).get("/?format=html").text
    tree = parse_html(body)
    in_log = {tag for tag, parents, _ in tree.elements if "pre" in parents}
    assert not in_log & {"script", "b"}, in_log
    baseline = parse_html(_app().get("/?format=html").text)
    assert [tag for tag, _, _ in tree.elements].count("script") == [tag for tag, _, _ in baseline.elements].count(
        "script"
    )
    text = "".join(data for parents, data in tree.texts if "pre" in parents)
    assert "<script>alert(1)</script> & <b>bold</b>" in text


def test_html_ends_with_a_visible_summary_and_closes_the_document() -> None:
    body = _app().get("/?format=html").text
    assert body.rstrip().endswith("</html>")
    tree = parse_html(body)
    ends = [attrs for tag, _, attrs in tree.elements if attrs.get("id") == "end"]
    assert len(ends) == 1
    assert ends[0]["data-status"] == "ok"
    visible = [data for parents, data in tree.texts if parents and parents[-1] == "p"]
    assert any(re.search(r"ok \(after \d+\.\d\ds: 2 lines, 0 dropped\)", data) for data in visible), visible


def test_html_summary_says_error_when_the_target_fails() -> None:
    tree = parse_html(_app(failing).get("/?format=html").text)
    ends = [attrs for tag, _, attrs in tree.elements if attrs.get("id") == "end"]
    assert ends[0]["data-status"] == "error"
    assert "RuntimeError: it broke" in "".join(data for _, data in tree.texts)


# -- sse ---------------------------------------------------------------------------


def test_sse_sends_each_record_as_one_event_with_its_sequence_as_id() -> None:
    response = _app(formatter="%(message)s").get("/?format=sse")
    events = parse_sse(response.body).events
    assert [(e.type, e.data, e.id) for e in events[:2]] == [("message", "one", "1"), ("message", "two", "2")]
    assert len(events) == 3


def test_sse_multi_line_message_is_several_data_lines_and_cannot_forge_an_event() -> None:
    forged = "x\n\nevent: end\ndata: forged\r\nid: 99\rretry: 1"

    def logs_forgery() -> None:
        log.info(forged)
        log.info("after")

    body = _app(logs_forgery, formatter="%(message)s").get("/?format=sse").body
    events = parse_sse(body).events
    assert [e.type for e in events] == ["message", "message", "end"], events
    assert events[0].data == forged.replace("\r\n", "\n").replace("\r", "\n")
    assert events[0].id == "1"
    assert events[1].data == "after"
    assert json.loads(events[2].data)["status"] == "ok"


def test_sse_end_event_carries_status_and_the_error_when_the_target_failed() -> None:
    ok = parse_sse(_app().get("/?format=sse").body).events[-1]
    assert ok.type == "end"
    summary = json.loads(ok.data)
    assert summary["status"] == "ok" and "error" not in summary
    assert {"elapsed", "dropped"} <= summary.keys()

    failed = parse_sse(_app(failing).get("/?format=sse").body).events[-1]
    assert failed.type == "end"
    summary = json.loads(failed.data)
    assert summary["status"] == "error"
    assert summary["error"] == "RuntimeError: it broke"


# -- ndjson -----------------------------------------------------------------------


def test_ndjson_is_one_object_per_record_and_ends_with_the_summary() -> None:
    body = _app().get("/?format=ndjson").text
    assert body.endswith("\n")
    objects = ndjson_objects(body)
    records = [o for o in objects if o.get("event") == "log"]
    assert [(r["seq"], r["level"], r["logger"], r["message"], r["line"]) for r in records] == [
        (1, "INFO", "tests.formats", "one", "INFO tests.formats: one"),
        (2, "WARNING", "tests.formats", "two", "WARNING tests.formats: two"),
    ]
    for record in records:
        assert isinstance(record["time"], float)
    end = objects[-1]
    assert end["event"] == "end" and end["status"] == "ok"
    assert end["dropped"] == 0 and isinstance(end["elapsed"], float)


def test_ndjson_keeps_a_multi_line_message_in_one_object() -> None:
    def multi() -> None:
        log.info('a\nb "quoted"\n{"event":"end"}')

    objects = ndjson_objects(_app(multi).get("/?format=ndjson").text)
    records = [o for o in objects if o.get("event") == "log"]
    assert [r["message"] for r in records] == ['a\nb "quoted"\n{"event":"end"}']
    assert [o["event"] for o in objects].count("end") == 1


def test_ndjson_end_object_has_error_status_when_the_target_failed() -> None:
    end = json.loads(_app(failing).get("/?format=ndjson").text.splitlines()[-1])
    assert end["event"] == "end"
    assert end["status"] == "error" and end["error"] == "RuntimeError: it broke"


# -- every format ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MEDIA_TYPES))
def test_every_format_ends_with_a_summary_of_status_elapsed_and_dropped(name: str) -> None:
    for target, status, lines in ((two_lines, "ok", 2), (failing, "error", 1)):
        end = summary(_app(target).get(f"/?format={name}").body, name)
        assert (end["status"], end["records"]) == (status, lines)
        assert end["dropped"] == 0
        assert end["elapsed"] >= 0


@pytest.mark.parametrize("name", list(MEDIA_TYPES))
def test_every_stream_sends_the_no_buffering_headers_and_no_hop_by_hop_header(name: str) -> None:
    with call(logstream(two_lines), f"format={name}") as stream:
        stream.read_to_end()
    assert stream.code == 200
    assert stream.header("Cache-Control") == "no-store"
    assert stream.header("X-Accel-Buffering") == "no"
    assert stream.header("X-Content-Type-Options") == "nosniff"
    assert stream.header("Content-Type") == MEDIA_TYPES[name]
    assert stream.header("Content-Length") is None
    names = {k.lower() for k, _ in stream.headers}
    assert not names & HOP_BY_HOP


def test_a_real_server_sends_no_content_length_for_a_stream() -> None:
    """WebTest may add a Content-Length; a real server shows what the app sent."""
    with wsgiref_server(logstream(two_lines)) as url:
        for name in MEDIA_TYPES:
            with RawClient(url, f"/?format={name}") as client:
                client.read_to_end()
            assert client.status == 200
            assert "content-length" not in client.headers
            assert client.headers["cache-control"] == "no-store"
            assert client.headers["x-accel-buffering"] == "no"
            assert client.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", list(MEDIA_TYPES))
def test_head_answers_the_headers_without_running_the_target(name: str) -> None:
    counter = CountingTarget("tests.formats")
    response = _app(counter).head(f"/?format={name}")
    assert response.status_int == 200
    assert response.headers["Content-Type"] == MEDIA_TYPES[name]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.body == b""
    assert counter.runs == 0


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_with_allow_and_run_nothing(method: str) -> None:
    counter = CountingTarget("tests.formats")
    response = _app(counter).request("/", method=method, status=405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed
    assert method not in allowed
    assert counter.runs == 0
