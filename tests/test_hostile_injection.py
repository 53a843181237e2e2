"""Hostile log messages: nothing a record contains can escape its place in any format.

Every message below is logged as one record, in every format, and read back by
the strict readers in ``tests/wire.py``: the HTML page keeps every
record as text inside ``<pre id="log">`` (no element, comment or script comes
from a record), SSE never carries a forged event, id or retry field, NDJSON is
one strict JSON object per line, and text never carries a byte a terminal would
act on. Every record is still there, escaped rather than dropped: records in ==
records out, each one's text equal to what was logged once escaped.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable

import pytest

from tests.inproc import fetch
from tests.wire import (
    FORMATS,
    check_text,
    expected_json,
    expected_visible,
    find_in_order,
    ndjson_objects,
    parse_html,
    parse_sse,
    terminal_state,
)
from wsgi_logstream import logstream, progress
from wsgi_logstream.options import Options

log = logging.getLogger("tests.hostile.injection")


#: One record each. The names say what each tries to break.
HOSTILE: dict[str, str] = {
    "html_tags": "<b>bold</b> & <i>italic</i> &amp; &#x3C;",
    "close_pre": "</pre></div></main><h1>forged</h1><pre>",
    "script": "<script>alert(document.cookie)</script><img src=x onerror=alert(1)>",
    "comment_close": "--> <!-- -->",
    "cdata": "<![CDATA[ x ]]> <?php echo 1 ?> <!DOCTYPE evil>",
    "crlf_sse_forge": 'one\r\nevent: end\r\ndata: {"status":"ok"}\r\n\r\nid: 999\r\nretry: 1',
    "cr_alone": "a\rretry: 1\rid: 7\revent: end\r\rdata: forged",
    "lf_forge": "x\n\ndata: forged\n\nevent: end\n",
    "json_forge": '"}\n{"event":"end","status":"ok"}\n',
    "nul": "before\x00after",
    "c0": "".join(chr(c) for c in range(0x20)),
    "c1": "".join(chr(c) for c in range(0x7F, 0xA0)),
    "ansi": "\x1b[31mred\x1b[0m \x1b]0;owned\x07 \x1b[2J\x1b[H \x1b[?1049h \x9b31m \x1bP+q\x1b\\",
    "lone_surrogates": "lone \udc80 \ud800 \udfff end",
    "unicode_breaks": "a\u2028b\u2029c\x85d\x1ce\x1df\x1eg",
    "bom_and_bidi": "\ufeffbom \u202eevil\u202c",
    "trailing_cr": "ends with cr\r",
    "empty": "",
    "only_newlines": "\n\n\r\n",
    "long_1mb": "<" + "x" * (1 << 20) + "</pre>\r\n" + "\x1b[2J",
}


def _run(target: Callable[[], Any], fmt: str, **options: Any) -> bytes:
    options.setdefault("formatter", "%(message)s")
    reply = fetch(logstream(target, **options), f"format={fmt}")
    assert reply.code == 200
    return reply.body


def _log_all(messages: list[str]) -> Callable[[], None]:
    def target() -> None:
        for message in messages:
            log.info(message)

    return target


def _records(body: bytes, fmt: str, *, ansi: bool = False) -> list[str]:
    """The text of each record, read as the format's consumer reads it, checking the format on the way."""
    if fmt == "ndjson":
        objects = ndjson_objects(body)
        assert objects[0]["event"] == "start" and objects[-1]["event"] == "end"
        assert {o["event"] for o in objects} <= {"start", "log", "progress", "dropped", "end"}
        return [o["message"] for o in objects if o["event"] == "log"]
    if fmt == "sse":
        stream = parse_sse(body)
        assert not stream.pending, "the stream ended inside an event"
        assert set(stream.fields) <= {"id", "event", "data", "retry"}, stream.fields
        assert stream.retries == [3000], f"retry forged: {stream.retries}"
        types = [e.type for e in stream.events]
        assert set(types) <= {"message", "progress", "end"}, f"forged event type in {Counter(types)}"
        assert types[-1] == "end" and types.count("end") == 1
        ids = [int(e.id) for e in stream.events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), f"ids forged or out of order: {ids}"
        return [e.data for e in stream.of_type("message")]
    if fmt == "html":
        doc = parse_html(body)
        assert doc.end_status is not None
        return [text[:-1] for text in doc.records]  # each span ends with its line break
    text = check_text(body, ansi=ansi)
    assert text.rstrip("\n").rsplit("\n", 1)[-1].startswith("-- ok"), "no end summary"
    return [text]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_hostile_message_stays_a_record_of_its_own_in_every_format(fmt: str) -> None:
    messages = list(HOSTILE.values())
    body = _run(_log_all(messages), fmt)
    records = _records(body, fmt)
    if fmt == "ndjson":
        assert records == [expected_json(m) for m in messages]
    elif fmt == "sse":
        assert records == [expected_visible(m) for m in messages]
    elif fmt == "html":  # a line rewritten with CR shows its last state, as in a terminal
        assert records == [expected_visible(terminal_state(m)) for m in messages]
    else:
        find_in_order(records[0], [expected_visible(terminal_state(m)) + "\n" for m in messages])
    print(f"\n[injection] {fmt}: {len(messages)} hostile records in, {len(records)} read back")


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_logger_name_exception_and_progress_cannot_break_out(fmt: str) -> None:
    """The message is not the only thing a record carries: so do its logger name and the end summary."""
    hostile = HOSTILE["close_pre"] + HOSTILE["crlf_sse_forge"] + HOSTILE["ansi"] + HOSTILE["lone_surrogates"]

    def target() -> None:
        logging.getLogger("tests.hostile.</pre>\r\nevent: end\x1b[2J").info("named")
        progress(1, 2, message=hostile)
        progress(float("nan"), float("inf"), message="not numbers")
        raise RuntimeError(hostile)

    body = _run(target, fmt, formatter="%(name)s: %(message)s")
    if fmt == "ndjson":
        objects = ndjson_objects(body)
        assert objects[-1]["status"] == "error"
        assert objects[-1]["error"] == "RuntimeError: " + expected_json(hostile)
        assert [o["message"] for o in objects if o["event"] == "progress"] == [expected_json(hostile), "not numbers"]
        assert objects[-2]["done"] is None and objects[-2]["total"] is None
    elif fmt == "sse":
        stream = parse_sse(body)
        assert set(stream.fields) <= {"id", "event", "data", "retry"} and stream.retries == [3000]
        assert [e.type for e in stream.events] == ["message", "progress", "progress", "end"]
    elif fmt == "html":
        doc = parse_html(body)
        assert doc.end_status == "error" and len(doc.records) == 1 and len(doc.progress) == 2
        assert expected_visible(hostile) in doc.end_text and expected_visible(hostile) in doc.traceback
    else:
        text = check_text(body)
        assert text.count("-- progress") == 2 and expected_visible(hostile) in text
        last = text.rstrip("\n").rsplit("\n", 1)[-1]
        assert last.startswith("-- error: RuntimeError: ") and last.endswith(" --"), "the summary is not one line"


def test_ansi_true_keeps_colour_and_nothing_else() -> None:
    body = _run(_log_all([HOSTILE["ansi"], HOSTILE["c0"], HOSTILE["c1"]]), "text", ansi=True)
    text = check_text(body, ansi=True)
    assert "\x1b[31mred\x1b[0m" in text, "colour should pass with ansi=True"
    # Everything but SGR is still made visible: the title set, clear screen, alternate screen, DCS.
    for shown in ("␛]0;owned␇", "␛[2J", "␛[?1049h", "\\x9b31m", "␛P+q"):
        assert shown in text


def test_without_ansi_colour_is_shown_not_applied() -> None:
    text = check_text(_run(_log_all([HOSTILE["ansi"]]), "text"))
    assert "␛[31mred␛[0m" in text


def test_a_record_ending_in_cr_keeps_its_own_line_in_text() -> None:
    text = check_text(_run(_log_all(["first\r", "second"]), "text"))
    # A trailing CR rewrites nothing (a terminal still shows "first"), and "second" is a line of its own.
    assert "\nfirst\nsecond\n" in text


_UNDECODABLE = b"ok \xff\xfe bad \xc3\x28 half \xe2\x82 surrogate \xed\xa0\x80 nul \x00 esc \x1b[2J end\n"


def _subprocess_output() -> None:
    """Run a child that writes bytes that are not UTF-8, decode them the way tools do, log each line."""
    child = subprocess.run(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read() * 3)"],
        input=_UNDECODABLE,
        capture_output=True,
        check=True,
        timeout=30,
    )
    for line in child.stdout.decode("utf-8", errors="surrogateescape").splitlines():
        log.info("child: %s", line)


@pytest.mark.parametrize("fmt", FORMATS)
def test_undecodable_bytes_from_a_subprocess_arrive_as_visible_escapes(fmt: str) -> None:
    body = _run(_subprocess_output, fmt)
    expected = "child: " + _UNDECODABLE.decode("utf-8", "surrogateescape").rstrip("\n")
    records = _records(body, fmt)
    if fmt == "ndjson":
        assert records == [expected_json(expected)] * 3
    elif fmt in ("sse", "html"):
        assert records == [expected_visible(expected)] * 3
    else:
        assert records[0].count(expected_visible(expected) + "\n") == 3
    # Each undecodable byte is still there to read, as text.
    joined = "".join(records)
    for escape in ("\\udcff", "\\udcfe", "\\udcc3", "\\udced"):
        assert escape in joined
    print(f"\n[injection] {fmt}: 3 lines of invalid UTF-8 from a subprocess, 3 records read back")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_1mb_line_arrives_whole_and_escaped(fmt: str) -> None:
    message = HOSTILE["long_1mb"]
    body = _run(_log_all(["before", message, "after"]), fmt)
    records = _records(body, fmt)
    if fmt == "text":
        find_in_order(records[0], ["before\n", expected_visible(message) + "\n", "after\n"])
    else:
        expect = expected_json if fmt == "ndjson" else expected_visible
        assert records == [expect(m) for m in ("before", message, "after")]
        assert len(records[1]) > 1 << 20


# -- secrets -------------------------------------------------------------------------

SECRET = "s3cr3tT0k3nV4lu3xyz"

REDACT_SPECS: dict[str, Any] = {
    "pattern strings": [r"s3cr3t\w+", r"unused-(\d+)"],
    "compiled patterns": [re.compile(r"S3CR3T\w+", re.IGNORECASE)],
    "one pattern": r"s3cr3t\w+",
    "a callable": lambda text: text.replace(SECRET, "[gone]"),
    "True (DEFAULT_REDACTIONS)": True,
}


def _leaky() -> None:
    log.info("connecting with password=%s", SECRET)
    log.info("Authorization: Bearer %s", SECRET)
    log.info("%s", {"token": SECRET})
    try:
        raise ConnectionError(f"refused: token={SECRET}")
    except ConnectionError:
        log.exception("retrying")  # the traceback is part of the record's line
    raise PermissionError("login failed: password=s3cr3tT0k3nV4lu3xyz")  # the source line shows it too


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("spec", list(REDACT_SPECS))
def test_a_redacted_secret_appears_in_no_format_not_even_in_the_error_and_traceback(spec: str, fmt: str) -> None:
    body = _run(_leaky, fmt, redact=REDACT_SPECS[spec], formatter="%(levelname)s %(message)s")
    text = body.decode("utf-8")
    assert SECRET not in text
    assert "PermissionError" in text and "login failed" in text, "the error itself must still show"
    assert "Traceback (most recent call last)" in text.replace("\\n", "\n")
    assert "retrying" in text and "ConnectionError" in text
    print(f"\n[secrets] {fmt}, redact={spec}: 5 places the secret was put, 0 found")


@pytest.mark.parametrize("fmt", ["ndjson", "sse"])
def test_a_redacted_secret_in_a_progress_message_or_logger_name_does_not_show(fmt: str) -> None:
    def target() -> None:
        progress(1, 2, message=f"uploading with token={SECRET}")
        logging.getLogger(f"tests.hostile.fetch.https://bob:{SECRET}@example.invalid").info("fetched")

    body = _run(target, fmt, redact=True, formatter="%(name)s %(message)s")
    query = "&detail=1" if fmt == "sse" else ""
    detail = fetch(logstream(target, redact=True), f"format={fmt}{query}").body
    assert SECRET not in body.decode() and SECRET not in detail.decode()


#: Things DEFAULT_REDACTIONS must hide (the secret part of each) ...
SHOULD_REDACT = {
    "Authorization: Bearer abc.def-ghi_123456": "abc.def-ghi_123456",
    "authorization=Basic dXNlcjpwYXNzd29yZA==": "dXNlcjpwYXNzd29yZA==",
    "curl -H 'Authorization: token ghx1234567890'": "ghx1234567890",
    "DB_PASSWORD=hunter2 next": "hunter2",
    '{"password": "hunter2", "user": "bob"}': "hunter2",
    "client_secret=s3cr3t&scope=all": "s3cr3t",
    "api_key: AbC123xyz": "AbC123xyz",
    "X-Api-Key=zzz999": "zzz999",
    "token: abcd1234": "abcd1234",
    "postgres://bob:pw123@db.internal/app": "pw123",
    "key AKIAABCDEFGHIJKLMNOP used": "AKIAABCDEFGHIJKLMNOP",
    "gh token ghp_" + "a1" * 18: "ghp_" + "a1" * 18,
    "github_pat_" + "B2" * 15: "github_pat_" + "B2" * 15,
    "slack xoxb-1234567890-abcdefghij": "xoxb-1234567890-abcdefghij",
    "stripe sk_live_" + "c3" * 12: "sk_live_" + "c3" * 12,
    "google AIza" + "d" * 35: "AIza" + "d" * 35,
    "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl": "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
    "Cookie: sessionid=abc123; csrftoken=def456": "abc123",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----": "MIIEowIBAAKCAQEA7x",
}

#: ... and ordinary lines they must leave alone.
SHOULD_KEEP = [
    "tokens=5 max_tokens: 100 token_count=3",
    "password reset requested for bob@example.com",
    "secretary=Ann, secretariat meeting at 10",
    "https://example.com/path?q=1&page=2",
    "the bearer of bad news",
    "user bob logged in from 10.0.0.1:8080",
    "processed 1234 rows in 5.6s",
    "AKIA is a prefix, AKIA123 is too short",
    "Authorization failed for user bob",
    "sk_live is mentioned, sk_live_short too",
]


def test_default_redactions_hide_common_secret_shapes_and_leave_ordinary_lines_alone() -> None:
    redact = Options.from_kwargs(redact=True).redact
    assert redact is not None
    for line, secret in SHOULD_REDACT.items():
        assert secret not in redact(line), f"DEFAULT_REDACTIONS missed {secret!r} in {line!r}: {redact(line)!r}"
        assert "[redacted]" in redact(line)
    for line in SHOULD_KEEP:
        assert redact(line) == line, f"false positive: {line!r} became {redact(line)!r}"
    # The key that names a secret stays readable.
    assert redact("DB_PASSWORD=hunter2") == "DB_PASSWORD=[redacted]"
    assert redact("postgres://bob:pw@db/x") == "postgres://bob:[redacted]@db/x"
    print(f"\n[secrets] DEFAULT_REDACTIONS: {len(SHOULD_REDACT)} secret shapes hidden, {len(SHOULD_KEEP)} lines kept")


def test_default_redactions_stay_linear_on_hostile_megabyte_lines() -> None:
    redact = Options.from_kwargs(redact=True).redact
    assert redact is not None
    hostile = [
        "password" * 150_000,
        "password" + " " * (1 << 20),
        "://" * 400_000,
        "://a" + "a" * (1 << 20),
        "-----BEGIN " + "A " * 500_000,
        "eyJ" + "a" * (1 << 20) + ".",
        "authorization:" + " " * (1 << 20),
        "Bearer " * 150_000,
    ]
    results: list[float] = []

    def run() -> None:
        for line in hostile:
            started = time.perf_counter()
            redact(line)
            results.append(time.perf_counter() - started)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)  # catastrophic backtracking would take hours, not seconds
    assert len(results) == len(hostile), "a default redaction pattern backtracks on a hostile line"
    print(f"\n[secrets] {len(hostile)} hostile 1 MB lines redacted, slowest {max(results):.2f}s")
