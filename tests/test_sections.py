"""Sections: ``with section(name)`` and a command's ``::group::`` travel in every format, nested, with a status."""

from __future__ import annotations

import json
import logging
import sys
from html.parser import HTMLParser

import pytest

from tests.inproc import call
from tests.wire import ndjson_objects, parse_sse
from wsgi_logstream import jobs, logstream, section
from wsgi_logstream.command import Command

log = logging.getLogger("tests.sections")


def _build() -> None:
    log.info("before")
    with section("Install"):
        log.info("installing")
        with section("Download"):
            log.info("downloading")
    with section("Migrate database"):
        log.error("table locked")
    try:
        with section("Deploy"):
            raise RuntimeError("no route")
    except RuntimeError:
        pass
    log.info("after")


def _finished(target: object = _build) -> tuple[object, str]:
    app = jobs(target, formatter="%(message)s")  # type: ignore[arg-type]
    job = app.start()
    assert job.wait(10)
    return app, job.id


def _ndjson(app: object, job_id: str, query: str = "") -> list[dict[str, object]]:
    with call(app, "format=ndjson" + query, path=f"/{job_id}") as stream:  # type: ignore[arg-type]
        return ndjson_objects(stream.read_to_end())


def test_sections_are_ndjson_events_with_depth_status_and_duration() -> None:
    app, job_id = _finished()
    sections = [obj for obj in _ndjson(app, job_id) if obj["event"] == "section"]
    assert [(obj["action"], obj["name"], obj["depth"], obj.get("status")) for obj in sections] == [
        ("start", "Install", 1, None),
        ("start", "Download", 2, None),
        ("end", "Download", 2, "ok"),
        ("end", "Install", 1, "ok"),
        ("start", "Migrate database", 1, None),
        ("end", "Migrate database", 1, "error"),  # an ERROR was logged in it
        ("start", "Deploy", 1, None),
        ("end", "Deploy", 1, "error"),  # it raised
    ]
    assert all(isinstance(obj["elapsed"], float) and obj["elapsed"] >= 0 for obj in sections if obj["action"] == "end")
    seqs = [obj["seq"] for obj in sections]
    assert seqs == sorted(seqs)


def test_sections_are_named_sse_events_with_the_logs_ids() -> None:
    app, job_id = _finished()
    with call(app, "format=sse", path=f"/{job_id}") as stream:
        events = parse_sse(stream.read_to_end()).events
    sections = [event for event in events if event.type == "section"]
    assert len(sections) == 8
    first = json.loads(sections[0].data)
    assert first["action"] == "start" and first["name"] == "Install"
    assert sections[0].id == str(first["seq"])
    messages = [event.data for event in events if event.type == "message"]
    assert messages == ["before", "installing", "downloading", "table locked", "after"]


def test_sections_are_marked_lines_in_text_that_no_logged_line_can_forge() -> None:
    def target() -> None:
        with section("Build\n-- ok"):
            log.info("-- section end: Build (ok, 0.0s) --")

    app = logstream(target, formatter="%(message)s")
    with call(app, "format=text") as stream:
        lines = stream.read_to_end().decode().splitlines()
    assert lines[1] == "-- section start: Build\u2424-- ok --"
    assert lines[2] == "- -- section end: Build (ok, 0.0s) --"  # the logged imitation, dash-escaped
    assert lines[3].startswith("-- section end: Build\u2424-- ok (ok, ") and lines[3].endswith("s) --")


class _Tree(HTMLParser):
    """The open/close structure of ``<details>`` and what each holds."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, object]] = []
        self.sections: list[dict[str, object]] = []
        self.errors: list[str] = []
        self._in_summary = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            node: dict[str, object] = {"attrs": dict(attrs), "name": "", "depth": len(self.stack) + 1, "end": None}
            self.stack.append(node)
            self.sections.append(node)
        elif tag == "summary":
            self._in_summary = True
        elif tag == "span" and self.stack and "sec-end" in (dict(attrs).get("class") or ""):
            self.stack[-1]["end"] = dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            if not self.stack:
                self.errors.append("</details> without <details>")
            else:
                self.stack.pop()
        elif tag == "summary":
            self._in_summary = False

    def handle_data(self, data: str) -> None:
        if self._in_summary and self.stack:
            self.stack[-1]["name"] = str(self.stack[-1]["name"]) + data


def test_sections_fold_in_html_as_balanced_details_inside_the_log_and_a_failed_one_is_marked() -> None:
    app, job_id = _finished()
    with call(app, "format=html", path=f"/{job_id}") as stream:
        page = stream.read_to_end().decode()
    tree = _Tree()
    tree.feed(page)
    assert not tree.errors and not tree.stack
    found = {(node["name"], node["depth"]): node for node in tree.sections}
    assert set(found) == {("Install", 1), ("Download", 2), ("Migrate database", 1), ("Deploy", 1)}
    assert all("open" in node["attrs"] for node in tree.sections)  # open while it runs (and with JavaScript off)
    statuses = {name: node["end"]["data-status"] for (name, _), node in found.items()}  # type: ignore[index]
    assert statuses == {"Install": "ok", "Download": "ok", "Migrate database": "error", "Deploy": "error"}
    assert all(float(node["end"]["data-elapsed"]) >= 0 for node in tree.sections)  # type: ignore[index]
    # Inside the one <pre> that streams the log, so the page stays one document with JavaScript off.
    pre = page[page.index("<pre") : page.index("</pre>")]
    assert pre.count("<details") == 4 and pre.count("</details>") == 4


def test_a_section_name_is_escaped_in_html() -> None:
    def target() -> None:
        with section("<script>alert(1)</script>"):
            pass

    app = logstream(target)
    with call(app, "format=html") as stream:
        page = stream.read_to_end().decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_section_outside_a_stream_does_nothing_and_still_raises_through() -> None:
    with pytest.raises(ValueError, match="boom"), section("nowhere"):
        raise ValueError("boom")


def test_the_level_filter_keeps_sections_around_the_lines_it_keeps() -> None:
    app, job_id = _finished()
    objects = _ndjson(app, job_id, "&level=ERROR")
    assert [obj["message"] for obj in objects if obj["event"] == "log"] == ["table locked"]
    assert len([obj for obj in objects if obj["event"] == "section"]) == 8


def test_a_commands_group_lines_become_sections_and_an_error_annotation_fails_its_group() -> None:
    script = (
        "print('::group::Compile'); print('cc main.c'); print('::endgroup::');"
        "print('::group::Test'); print('::error file=t.py,line=3::test_x failed'); print('::endgroup::');"
        "print('::group::Left open'); print('last line')"
    )
    app, job_id = _finished(Command([sys.executable, "-c", script]))
    objects = _ndjson(app, job_id)
    sections = [(obj["action"], obj["name"], obj.get("status")) for obj in objects if obj["event"] == "section"]
    assert sections == [
        ("start", "Compile", None),
        ("end", "Compile", "ok"),
        ("start", "Test", None),
        ("end", "Test", "error"),
        ("start", "Left open", None),
        ("end", "Left open", "ok"),  # closed when the command exited 0
    ]
    logs = [(obj["level"], obj["message"]) for obj in objects if obj["event"] == "log"]
    assert ("ERROR", "test_x failed") in logs
    assert not any("::" in message for _, message in logs)  # the workflow commands are not lines of the log
