"""The benchmark harness keeps working, and its checks catch a stream that is wrong.

``bench/run.py`` is run once with tiny counts, every contender and workload
included, so the benchmarks cannot rot. Only correctness is asserted (every
line arrived, in order, the first before the operation ended), never speed.
The client's checks are also pointed at streams known to be wrong, to show
they would fail.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import pytest

from tests.servers import ROOT, require_program, wsgiref_server

BENCH = ROOT / "bench"


def _load(name: str) -> ModuleType:
    # Loaded under a private name: bench/ is not a package and its module names are plain.
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


client = _load("client")
workload = _load("workload")

SERVER_CONTENDERS = {
    "throughput": ["logstream-text", "logstream-sse", "django-recipe", "flask-recipe", "bare-generator", "handoff"],
    "latency": ["logstream-text", "logstream-sse", "django-recipe", "flask-recipe", "bare-generator", "handoff"],
    "idle": [
        "logstream-text",
        "logstream-gevent",
        "django-recipe",
        "flask-recipe",
        "bare-generator",
        "bare-generator-gevent",
    ],
}


@pytest.mark.servers
def test_harness_delivers_every_line_in_order_for_every_contender(tmp_path: Path) -> None:
    require_program("gunicorn")
    args = [sys.executable, str(BENCH / "run.py"), "--quick", "--records", "2000", "--latency-records", "40"]
    args += ["--idle", "10", "--scale", "30", "--scale-window", "2.5", "--rounds", "1", "--no-chart"]
    args += ["--fanout", "30:200", "--fanout-seconds", "1.5", "--fanout-rounds", "1", "--out", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"bench/run.py exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())["results"]

    for name in [*SERVER_CONTENDERS["throughput"], "producer"]:
        (run,) = results["throughput"][name]
        assert run["ok"], (name, run["errors"])
        assert run["received"] == run["expected"] == 2000, name
    for name in SERVER_CONTENDERS["throughput"]:
        assert results["throughput"][name][0]["in_order"], name
    for name in SERVER_CONTENDERS["latency"]:
        (run,) = results["latency"][name]
        assert run["ok"] and run["in_order"] and run["received"] == 40, (name, run["errors"])
        assert run["first_before_end"], f"{name}: the first line arrived only after the operation ended"
    for name in SERVER_CONTENDERS["idle"]:
        (run,) = results["idle"][name]
        assert run["ok"] and run["streams"] == 10, (name, run["errors"])
    for name in ("logstream-gevent", "logstream-gevent-gc"):
        (level,) = results["scale"][name]
        assert level["streams"] == 30 and level["lines"] > 0, (name, level)
    for name in ("fanout-logstream", "fanout-ceiling", "fanout-recipe"):
        # Every viewer of the one producer received every line, the first of them line 0 (no history replayed).
        (run,) = results["fanout"][f"{name}@30x200"]
        assert run["ok"] and run["ready"] == 30, (name, run["errors"])
        assert run["complete"] == 30 and run["received"] == 30 * 300, (name, run)
    (cost,) = results["cost"]["micro"]
    assert cost["ok"] and cost["stream_info"] > 0 and cost["disabled_debug_after"] > 0
    assert "### Throughput" in done.stdout and "### Fan-out" in done.stdout and "### Targets" in done.stdout


def _serve(make_lines: Callable[[], Iterable[bytes]]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return make_lines()

    return app


def _read(make_lines: Callable[[], Iterable[bytes]], records: int) -> dict[str, Any]:
    with wsgiref_server(_serve(make_lines)) as url:
        port = int(url.rsplit(":", 1)[1])
        result: dict[str, Any] = client.read_stream(port, "/", records, 30.0)
    return result


def _lines(records: int = 20) -> Iterator[bytes]:
    """Lines as the workload makes them, one every 5 ms, each sent as soon as it is made."""
    return workload.bare_lines(workload.Params(workload="latency", records=records, interval=0.005))  # type: ignore[no-any-return]


def _without(position: int) -> Iterator[bytes]:
    for i, line in enumerate(_lines()):
        if i != position:
            yield line


def _swapped(position: int) -> Iterator[bytes]:
    held = b""
    for i, line in enumerate(_lines()):
        if i == position:
            held = line
            continue
        yield line
        if i == position + 1:
            yield held


def _all_at_the_end() -> Iterator[bytes]:
    yield b"".join(_lines())


def test_client_accepts_a_complete_stream() -> None:
    result = _read(_lines, 20)
    assert result["ok"], result["errors"]
    assert result["received"] == 20 and result["in_order"] and result["first_before_end"]


def test_client_check_fails_when_a_line_is_missing() -> None:
    result = _read(lambda: _without(7), 20)
    assert not result["ok"]
    assert any("received 19 records" in e for e in result["errors"]), result["errors"]


def test_client_check_fails_when_lines_arrive_out_of_order() -> None:
    result = _read(lambda: _swapped(3), 20)
    assert not result["ok"] and not result["in_order"]
    assert any("out of order at position 3" in e for e in result["errors"]), result["errors"]


def test_client_check_fails_when_the_stream_arrives_only_after_the_operation_ended() -> None:
    # The operation (20 records, 5 ms apart) runs to its end before its body is sent, in one piece.
    result = _read(_all_at_the_end, 20)
    assert not result["ok"] and result["first_before_end"] is False
    assert any("after the operation ended" in e for e in result["errors"]), result["errors"]
