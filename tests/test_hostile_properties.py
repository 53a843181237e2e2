"""Properties over arbitrary messages, logger names, levels, query strings and headers.

Hypothesis writes the inputs; the strict readers in ``tests/wire.py``
read every response back. The claims: every response is valid for its format and
decodes to exactly the records that were logged, in order (NDJSON, SSE and HTML
exactly; text, whose records may themselves hold line breaks, as the escaped
lines in order); any request gets either a stream or a short ``text/plain`` 4xx,
and a rejected request never runs the target; a redacted secret never shows.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apps.targets import CountingTarget
from tests.inproc import fetch
from tests.wire import (
    FORMATS,
    check_text,
    expected_json,
    expected_text,
    expected_visible,
    find_in_order,
    ndjson_objects,
    parse_html,
    parse_sse,
    terminal_state,
)
from wsgi_logstream import logstream

LINE_FORMAT = "%(levelname)s|%(name)s|%(message)s"

EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Any code point, lone surrogates included, with the troublemakers made likely.
_any_char = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
)
_tricky = st.sampled_from(
    [
        "\r",
        "\n",
        "\r\n",
        "<",
        ">",
        "&",
        '"',
        "\\",
        "\x00",
        "\x1b[31m",
        "\x1b]0;t\x07",
        "\x85",
        "\u2028",
        "data: x",
        "event: end",
        "id: 9",
        "retry: 1",
        ":",
        "</pre>",
        "<script>",
        "-->",
        "�",
        "%s",
        "%(x)s",
    ]
)
messages = st.lists(_any_char | _tricky, max_size=12).map("".join)
logger_names = st.lists(_any_char | _tricky, min_size=1, max_size=6).map(lambda parts: "hp." + "".join(parts))
levels = st.integers(min_value=1, max_value=60)
records = st.lists(st.tuples(logger_names, levels, messages), min_size=0, max_size=6)


#: What the examples covered, printed at the end of the module (``pytest -s``).
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_counts() -> Iterator[None]:
    yield
    print("\n[properties] " + ", ".join(f"{key}: {count}" for key, count in sorted(TRIED.items())))


def _emit(logged: list[tuple[str, int, str]]) -> Any:
    def target() -> None:
        for name, level, message in logged:
            logging.getLogger(name).log(level, message)

    return target


def _lines(logged: list[tuple[str, int, str]]) -> list[str]:
    return [f"{logging.getLevelName(level)}|{name}|{message}" for name, level, message in logged]


def _shown_lines(logged: list[tuple[str, int, str]]) -> list[str]:
    """How text and HTML show each line: its message (or, if only the rest holds a CR, the line) at its last state."""
    shown = []
    for (name, level, message), line in zip(logged, _lines(logged), strict=True):
        if "\r" in message:
            line = f"{logging.getLevelName(level)}|{name}|{terminal_state(message)}"
        elif "\r" in line:
            line = terminal_state(line)
        shown.append(line)
    return shown


def _ndjson_records(body: bytes) -> list[dict[str, Any]]:
    objects = ndjson_objects(body)
    assert objects[0]["event"] == "start" and objects[-1]["event"] == "end"
    assert objects[-1]["status"] == "ok" and objects[-1]["dropped"] == 0
    return [o for o in objects if o["event"] == "log"]


def _expected_objects(logged: list[tuple[str, int, str]]) -> list[tuple[Any, ...]]:
    return [
        (seq, expected_json(logging.getLevelName(level)), level, expected_json(name), expected_json(message), line)
        for seq, ((name, level, message), line) in enumerate(zip(logged, _lines(logged), strict=True), start=1)
    ]


def _objects(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(o["seq"], o["level"], o["levelno"], o["logger"], o["message"], o["line"]) for o in found]


@pytest.mark.parametrize("fmt", [*FORMATS, "sse-detail"])
@EXAMPLES
@given(logged=records)
def test_every_format_decodes_to_exactly_the_records_logged_in_order(
    fmt: str, logged: list[tuple[str, int, str]]
) -> None:
    app = logstream(_emit(logged), level=1, formatter=LINE_FORMAT)
    query = "format=sse&detail=1" if fmt == "sse-detail" else f"format={fmt}"
    reply = fetch(app, query)
    assert reply.code == 200
    TRIED[f"{fmt} streams"] += 1
    TRIED[f"{fmt} records"] += len(logged)
    lines = _lines(logged)
    if fmt == "ndjson":
        found = _ndjson_records(reply.body)
        expected = [(*row[:5], expected_json(row[5])) for row in _expected_objects(logged)]
        assert _objects(found) == expected
    elif fmt == "sse-detail":
        stream = parse_sse(reply.body)
        found = [json.loads(e.data) for e in stream.of_type("message")]
        expected = [(*row[:5], expected_json(row[5])) for row in _expected_objects(logged)]
        assert _objects(found) == expected
        assert [int(e.id) for e in stream.of_type("message")] == list(range(1, len(logged) + 1))
    elif fmt == "sse":
        stream = parse_sse(reply.body)
        assert set(stream.fields) <= {"id", "event", "data", "retry"} and stream.retries == [3000]
        assert [e.type for e in stream.events] == ["message"] * len(logged) + ["end"]
        assert [e.data for e in stream.of_type("message")] == [expected_visible(line) for line in lines]
        assert [int(e.id) for e in stream.of_type("message")] == list(range(1, len(logged) + 1))
    elif fmt == "html":
        doc = parse_html(reply.body)
        assert doc.records == [expected_visible(line) + "\n" for line in _shown_lines(logged)]
        assert doc.end_status == "ok"
    else:
        text = check_text(reply.body)
        find_in_order(text, [expected_text(line) + "\n" for line in _shown_lines(logged)])
        assert text.endswith(f"{len(logged)} line{'' if len(logged) == 1 else 's'}, 0 dropped) --\n")


# -- requests ------------------------------------------------------------------------

_latin1 = st.characters(min_codepoint=0, max_codepoint=0xFF)
_query_parts = st.sampled_from(
    [
        "format=",
        "text",
        "html",
        "sse",
        "ndjson",
        "json",
        "&",
        "=",
        "detail=1",
        "format=sse",
        "format=html",
        "%00",
        "%ff",
        "%",
        "+",
        ";",
        "since=1",
        "format=TEXT",
        "x" * 5000,
        "&format=text",
    ]
)
queries = st.lists(_latin1 | _query_parts, max_size=12).map("".join)
_media = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "text/event-stream",
        "application/x-ndjson",
        "application/json",
        "*/*",
        "text/*",
        "image/png",
        "",
        " ",
        ";q=1",
        "text/html;q=0",
        "application/ndjson;q=0.5",
        "*/*;q=0",
        "text/plain;q=x",
        "text/event-stream;q=1.5",
        "text/html;level=1;q=0.9",
        "TEXT/HTML",
    ]
)
accepts = st.lists(_media | st.text(_latin1, max_size=8), max_size=5).map(",".join)
header_names = st.sampled_from(["X-Junk", "User-Agent", "Cookie", "Referer", "X-Forwarded-For", "Last-Event-ID"])
headers = st.dictionaries(header_names, st.text(_latin1, max_size=40) | st.just("x" * 17000), max_size=3)

REJECTED = {204, 400, 405, 406, 414, 431}
MEDIA = {
    "text/plain; charset=utf-8": "text",
    "text/html; charset=utf-8": "html",
    "text/event-stream": "sse",
    "application/x-ndjson": "ndjson",
}


@settings(EXAMPLES, max_examples=200)
@given(query=queries, accept=st.none() | accepts, extra=headers, method=st.sampled_from(["GET", "HEAD", "POST"]))
def test_any_request_gets_a_valid_stream_or_a_short_plain_4xx_and_only_a_stream_runs_the_target(
    query: str, accept: str | None, extra: dict[str, str], method: str
) -> None:
    counter = CountingTarget("hp.request")
    sent = dict(extra)
    if accept is not None:
        sent["Accept"] = accept
    reply = fetch(logstream(counter), query, method=method, headers=sent)
    TRIED[f"requests answered {reply.code}"] += 1
    if reply.code == 200:
        fmt = MEDIA[reply.content_type]
        if method == "HEAD":
            assert reply.body == b"" and counter.runs == 0
            return
        assert counter.runs == 1
        if fmt == "ndjson":
            assert [o["message"] for o in _ndjson_records(reply.body)] == ["ran <1>"]
        elif fmt == "sse":
            stream = parse_sse(reply.body)
            # detail=1 sends the JSON object; either way the one record is there, then the end.
            assert [e.type for e in stream.events] == ["message", "end"]
            assert "ran <1>" in stream.events[0].data
        elif fmt == "html":
            assert [r.endswith("ran <1>\n") for r in parse_html(reply.body).records] == [True]
        else:
            assert "ran <1>\n" in check_text(reply.body)
        return
    assert reply.code in REJECTED, f"unexpected status {reply.code}"
    assert counter.runs == 0, "a rejected request ran the target"
    if reply.code == 204:
        assert "Last-Event-ID" in sent and reply.body == b""
        return
    assert reply.content_type.startswith("text/plain")
    message = reply.body.decode("utf-8")
    assert message.endswith("\n") and "\n" not in message[:-1], f"not one line: {message!r}"
    assert len(message) < 300 and "Traceback" not in message


# -- secrets -------------------------------------------------------------------------

secrets = st.from_regex(r"\A[a-z]{6}[0-9]{6}[A-Z]{4}\Z")
surroundings = st.lists(_any_char | _tricky | st.sampled_from([" ", "=", "&", ":"]), max_size=10).map("".join)


@pytest.mark.parametrize("fmt", FORMATS)
@EXAMPLES
@given(secret=secrets, before=surroundings, after=surroundings)
def test_a_redacted_secret_never_shows_whatever_surrounds_it(fmt: str, secret: str, before: str, after: str) -> None:
    # A surrounding char that continues the token (a letter, say) makes it part of
    # the redacted span; a separator ends it. Either way the secret must not show.
    message = f"{before} password={secret}{after}"

    def target() -> None:
        logging.getLogger("hp.secret").info(message)
        raise RuntimeError(message)

    reply = fetch(logstream(target, redact=True, formatter=LINE_FORMAT), f"format={fmt}")
    assert reply.code == 200
    TRIED[f"{fmt} secrets redacted"] += 1
    text = reply.body.decode("utf-8")
    assert secret not in text
    assert "[redacted]" in text
