"""``wsgi-logstream tail FILE...``: files followed like ``tail -F``, in process and end to end."""

from __future__ import annotations

import io
import os
from pathlib import Path

from tests.servers import RawClient
from tests.test_cli_support import cli
from wsgi_logstream.follow import Follower, LineSplitter, last_lines_offset


def _drain(follower: Follower) -> list[tuple[str, str]]:
    return list(follower.poll())


def _append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


# -- the follower, polled by hand -------------------------------------------------


def test_follower_starts_with_the_last_lines_then_gives_only_new_ones(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {n}\n" for n in range(1, 31)))
    follower = Follower(str(log), lines=3)
    try:
        assert _drain(follower) == [("line", "line 28"), ("line", "line 29"), ("line", "line 30")]
        assert _drain(follower) == []
        _append(log, "line 31\npartial")
        assert _drain(follower) == [("line", "line 31")]  # an unfinished line waits for its newline
        _append(log, " done\n")
        assert _drain(follower) == [("line", "partial done")]
    finally:
        follower.close()


def test_follower_reads_a_truncated_file_again_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old one\nold two\n")
    follower = Follower(str(log), lines=10)
    try:
        _drain(follower)
        log.write_text("new\n")  # shorter than what was read: truncated
        assert _drain(follower) == [("notice", f"{log}: file truncated"), ("line", "new")]
    finally:
        follower.close()


def test_follower_finishes_a_rotated_file_then_follows_the_new_one_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("before\n")
    follower = Follower(str(log), lines=10)
    try:
        _drain(follower)
        _append(log, "written just before rotation\n")
        log.rename(tmp_path / "app.log.1")
        log.write_text("first of the new file\n")
        assert _drain(follower) == [
            ("line", "written just before rotation"),
            ("notice", f"{str(log)!r} has been replaced; following new file"),
            ("line", "first of the new file"),
        ]
    finally:
        follower.close()


def test_follower_waits_for_a_missing_file_and_reads_it_whole_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    follower = Follower(str(log), lines=1)
    try:
        (kind, text), *rest = _drain(follower)
        assert kind == "notice" and "No such file" in text and rest == []
        assert _drain(follower) == []  # said once, not at every poll
        log.write_text("one\ntwo\n")
        assert _drain(follower) == [
            ("notice", f"{str(log)!r} has appeared; following new file"),
            ("line", "one"),
            ("line", "two"),
        ]
    finally:
        follower.close()


class _CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_last_lines_are_found_from_the_end_without_reading_a_large_file_whole() -> None:
    data = b"".join(b"%08d some log text\n" % n for n in range(400_000))  # 9.6 MB
    file = _CountingFile(data)
    offset = last_lines_offset(file, 10)
    assert data[offset:].splitlines() == [b"%08d some log text" % n for n in range(399_990, 400_000)]
    assert file.bytes_read < 200_000


def test_last_lines_count_an_unfinished_last_line_and_handle_short_files() -> None:
    assert last_lines_offset(io.BytesIO(b"a\nb\nc"), 2) == 2
    assert last_lines_offset(io.BytesIO(b"a\nb\n"), 5) == 0
    assert last_lines_offset(io.BytesIO(b"a\nb\n"), 0) == 4
    assert last_lines_offset(io.BytesIO(b""), 3) == 0


def test_line_splitter_cuts_long_lines_on_character_boundaries_and_strips_crlf() -> None:
    splitter = LineSplitter(max_line=8)
    assert splitter.feed(b"ab\r\ncd") == ["ab"]
    assert splitter.feed(b"\n") == ["cd"]
    # "abc" then two 3-byte euro signs: a cut at byte 8 would split the second one; it backs off to byte 6.
    pieces = splitter.feed("abc\u20ac\u20ac".encode() + b"z\n")
    assert pieces == ["abc\u20ac", "\u20acz"]
    assert splitter.feed(b"\xff\n") == ["\udcff"]
    assert splitter.feed(b"0123456789") == ["01234567"]
    assert splitter.pending == 2
    assert splitter.flush() == ["89"]


# -- end to end -------------------------------------------------------------------


def test_tail_replays_the_last_lines_to_each_viewer_then_streams_new_ones(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {n}\n" for n in range(1, 31)))
    with cli("tail", "-n", "5", "--interval", "0.05", str(log)) as running:
        with RawClient(running.base, f"{running.job_path}?format=text") as first:
            first.read_until(b"line 30\n")
            assert b"line 25\n" not in first.body and b"line 26\n" in first.body
            # A burst far longer than -n: a live viewer gets every line of it, not just the last five.
            _append(log, "".join(f"burst {n}\n" for n in range(1, 501)))
            first.read_until(b"burst 500\n")
            bursts = [line for line in first.body.decode().splitlines() if line.startswith("burst")]
            assert bursts == [f"burst {n}" for n in range(1, 501)]
            _append(log, "line 31\n")
            first.read_until(b"line 31\n")
        with RawClient(running.base, f"{running.job_path}?format=text") as second:
            second.read_until(b"line 31\n")
            body = second.body.decode()
    assert body.splitlines()[1:] == ["burst 497", "burst 498", "burst 499", "burst 500", "line 31"]


def test_tail_follows_truncation_rotation_and_a_file_that_appears_later(tmp_path: Path) -> None:
    main, later = tmp_path / "main.log", tmp_path / "later.log"
    main.write_text("start\n")
    with (
        cli("tail", "--interval", "0.05", str(main), str(later)) as running,
        RawClient(running.base, f"{running.job_path}?format=text") as client,
    ):
        client.read_until(f"{main}: start\n".encode())
        client.read_until(b"No such file or directory")
        main.write_text("")  # truncated...
        client.read_until(b"file truncated")
        _append(main, "after truncation\n")
        client.read_until(b"after truncation\n")
        # Rotation without a moment where the name is missing: keep the old file as .1, move a new one in.
        fresh = tmp_path / "fresh"
        fresh.write_text("in the new file\n")
        os.link(main, tmp_path / "main.log.1")
        os.replace(fresh, main)
        client.read_until(b"in the new file\n")
        later.write_text("it appeared\n")
        client.read_until(f"{later}: it appeared\n".encode())
        body = client.body.decode()
    assert "has been replaced; following new file" in body
    assert "has appeared; following new file" in body
