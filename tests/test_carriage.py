"""Carriage returns: a line rewritten with CR shows as its last state, and a moving bar is one line of history."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import pytest

from tests.apps import progress_bar
from tests.inproc import call
from tests.servers import wait_until
from tests.wire import ndjson_objects, parse_sse
from wsgi_logstream import jobs, logstream
from wsgi_logstream.carriage import RewriteSplitter, last_state
from wsgi_logstream.channel import Channel
from wsgi_logstream.command import Command, emit_state

log = logging.getLogger("tests.carriage")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("10%\r50%\r100%", "100%"),
        ("done\r", "done"),  # a trailing CR rewrites nothing
        ("a\r\nb", "a\nb"),  # CRLF is a line break
        ("x 1/3\rx 3/3\nnext\rlast", "x 3/3\nlast"),
        ("\r\r", ""),
        ("plain", "plain"),
    ],
)
def test_last_state_is_what_a_terminal_ends_on(text: str, shown: str) -> None:
    assert last_state(text) == shown


def _bar_message() -> None:
    log.info("downloading\r 10%\r 50%\r100%")


def test_a_logged_message_with_cr_shows_its_last_state_in_text_and_keeps_its_prefix() -> None:
    app = logstream(_bar_message, formatter="%(levelname)s %(message)s")
    with call(app, "format=text") as stream:
        lines = stream.read_to_end().decode().splitlines()
    assert lines[1] == "INFO 100%"
    assert not any("10%" in line or "50%" in line for line in lines)


def test_html_shows_the_last_state_and_ndjson_and_sse_keep_the_raw_text() -> None:
    app = logstream(_bar_message, formatter="%(levelname)s %(message)s")
    with call(app, "format=html") as stream:
        page = stream.read_to_end().decode()
    assert ">INFO 100%\n</span>" in page and " 50%" not in page
    with call(app, "format=sse") as stream:
        assert [e.data for e in parse_sse(stream.read_to_end()).events if e.type == "message"] == [
            "INFO downloading\n 10%\n 50%\n100%"
        ]
    with call(app, "format=ndjson") as stream:
        record = ndjson_objects(stream.read_to_end())[1]
    assert record["message"] == "downloading\r 10%\r 50%\r100%"
    assert record["line"] == "INFO downloading\r 10%\r 50%\r100%"
    with call(app, "format=sse&detail=1") as stream:
        event = next(e for e in parse_sse(stream.read_to_end()).events if e.type == "message")
    assert json.loads(event.data)["message"] == "downloading\r 10%\r 50%\r100%"


def test_the_states_of_a_rewritten_line_share_one_seq_and_one_place_in_the_history() -> None:
    channel = Channel(5, retain=True)
    channel.append_log(0.0, 20, "INFO", "cmd", "start", "start")
    reader = channel.reader(0)
    assert [e.seq for e in reader.take()[1]] == [1]
    for n in range(1000):
        channel.append_partial(0.0, 20, "INFO", "cmd", f"{n}%", f"{n}%", final=False)
        if n == 500:
            # A reader that took one state is moved back to take the newer one, under the same seq.
            assert [(e.seq, e.kind, e.line) for e in reader.take()[1]] == [(2, "partial", "500%")]
    channel.append_partial(0.0, 20, "INFO", "cmd", "done", "done", final=True)
    missed, batch = reader.take()
    assert missed == 0 and [(e.seq, e.kind, e.line) for e in batch] == [(2, "log", "done")]
    assert channel.next_seq == 3 and channel.records == 2 and channel.first_seq == 1
    assert [(e.seq, e.line) for e in channel.reader(0).take()[1]] == [(1, "start"), (2, "done")]


def test_a_line_appended_between_two_states_pins_the_older_state_and_the_next_one_is_a_new_line() -> None:
    channel = Channel(100, retain=True)
    channel.append_partial(0.0, 20, "INFO", "cmd", "10%", "10%", final=False)
    channel.append_log(0.0, 30, "WARNING", "cmd", "warning", "warning")
    channel.append_partial(0.0, 20, "INFO", "cmd", "20%", "20%", final=False)
    channel.append_partial(0.0, 20, "INFO", "cmd", "100%", "100%", final=True)
    assert [(e.seq, e.kind, e.line) for e in channel.reader(0).take()[1]] == [
        (1, "partial", "10%"),
        (2, "log", "warning"),
        (3, "log", "100%"),
    ]


def test_the_splitter_sends_the_state_as_it_comes_and_drops_what_was_overwritten() -> None:
    splitter = RewriteSplitter(1 << 20)
    assert splitter.feed(b"\r  0%|") == []
    assert splitter.partial() == "  0%|"
    assert splitter.partial() is None  # unchanged since
    assert splitter.feed(b"\r 50%|#####") == [] and splitter.partial() == " 50%|#####"
    assert splitter.feed(b"\r") == [] and splitter.partial() is None
    assert splitter.feed(b"\n") == [(" 50%|#####", True)]  # CR LF split across two reads is a line break
    for n in range(100_000):
        splitter.feed(b"\r%6d" % n)
    assert splitter.partial() == " 99999"  # one state held, not a hundred thousand
    assert splitter.feed(b"\nplain\n") == [(" 99999", True), ("plain", False)]


def test_a_command_drawing_a_bar_shows_one_line_that_moves_and_ends_at_its_final_state(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    app = jobs(progress_bar.command(gate, "before", "after", 0.005), formatter="%(message)s", heartbeat=0.2)
    job = app.start()
    with call(app, "format=ndjson", path=f"/{job.id}") as stream:
        # The first state arrives while the command is still waiting for the gate: it was not held for a newline.
        stream.read_until(b'"partial":true')
        assert job.status == "running"
        gate.touch()
        objects = ndjson_objects(stream.read_to_end())
    logs = [obj for obj in objects if obj["event"] == "log"]
    assert [obj["message"] for obj in logs if not obj.get("partial")] == [
        "before",
        "100%|##########| 100/100",
        "after",
    ]
    bar_seq = logs[-2]["seq"]
    partials = [obj for obj in logs if obj.get("partial")]
    assert partials and {obj["seq"] for obj in partials} == {bar_seq}  # every state replaces the same line
    record = app.lookup(job.id)
    assert record is not None and record.records == 3 and record.next_seq == 4  # three lines of history, no more
    with call(app, "format=text", path=f"/{job.id}") as stream:
        text = stream.read_to_end().decode().splitlines()
    assert text[1:4] == ["before", "100%|##########| 100/100", "after"]


def test_a_long_running_bar_does_not_fill_the_history() -> None:
    script = (
        "import sys\n"
        "for n in range(20000):\n"
        "    sys.stdout.write('\\rstep %d' % n); sys.stdout.flush()\n"
        "print()\n"
        "print('done')\n"
    )
    app = jobs(Command([sys.executable, "-c", script]), formatter="%(message)s", max_history=10)
    job = app.start()
    assert job.wait(60)
    wait_until(lambda: app.lookup(job.id) is not None and app.lookup(job.id).finished, message="job finished")  # type: ignore[union-attr]
    with call(app, "format=text", path=f"/{job.id}") as stream:
        lines = stream.read_to_end().decode().splitlines()
    assert lines[1:3] == ["step 19999", "done"]
    assert "0 dropped" in lines[-1]


_TQDM = """
import time
from tqdm import tqdm
for _ in tqdm(range(200), mininterval=0, ncols=60, ascii=True):
    time.sleep(0.002)
print("after")
"""


def test_a_real_tqdm_bar_in_a_commands_output_is_one_line_at_100_percent() -> None:
    pytest.importorskip("tqdm", reason="tqdm (a test extra) is not installed")
    app = jobs(Command([sys.executable, "-c", _TQDM]), formatter="%(message)s", max_history=20)
    job = app.start()
    assert job.wait(60)
    objects = _lines_of(app, job.id)
    finals = [obj["message"] for obj in objects if obj["event"] == "log"]
    assert len(finals) == 2 and finals[1] == "after"
    assert finals[0].startswith("100%|") and "200/200" in finals[0]
    with call(app, "format=text", path=f"/{job.id}") as stream:
        text = stream.read_to_end().decode().splitlines()
    assert text[1] == finals[0] and text[2] == "after" and len(text) == 4


def _lines_of(app: object, job_id: str) -> list[dict[str, object]]:
    with call(app, "format=ndjson", path=f"/{job_id}") as stream:  # type: ignore[arg-type]
        return ndjson_objects(stream.read_to_end())


def test_every_viewer_of_a_job_sees_each_new_state_of_a_rewritten_line() -> None:
    steps = [threading.Event(), threading.Event()]

    def target() -> None:
        bar = logging.getLogger("bar")
        emit_state(bar, logging.INFO, "1%", final=False)
        assert steps[0].wait(10)
        emit_state(bar, logging.INFO, "50%", final=False)
        assert steps[1].wait(10)
        emit_state(bar, logging.INFO, "100%", final=True)

    app = jobs(target, formatter="%(message)s", heartbeat=0.2)
    job = app.start()
    with call(app, "format=ndjson", path=f"/{job.id}") as one, call(app, "format=ndjson", path=f"/{job.id}") as two:
        for viewer in (one, two):
            viewer.read_until(b'"message":"1%"')
        steps[0].set()
        for viewer in (one, two):
            viewer.read_until(b'"message":"50%"')
        steps[1].set()
        seen = []
        for viewer in (one, two):
            objects = ndjson_objects(viewer.read_to_end())
            seen.append(
                [(obj["seq"], obj["message"], bool(obj.get("partial"))) for obj in objects if obj["event"] == "log"]
            )
    assert seen[0] == seen[1] == [(1, "1%", True), (1, "50%", True), (1, "100%", False)]
