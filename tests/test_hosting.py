"""``wsgi_logstream.hosting``: telling, from a request, whether a job's thread would freeze.

The decision is unit-tested here on stand-ins for uWSGI's ``uwsgi`` module
(a plain namespace with its ``has_threads`` and ``opt`` attributes, as the
real one has them: ``opt`` maps ``str`` names to ``True`` for a flag or bytes
for a value). ``tests/test_deploy_uwsgi.py`` proves it inside a real uWSGI,
with and without threads.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from wsgi_logstream.hosting import UWSGI_THREADS_HELP, threads_disabled_reason, uwsgi_threads_disabled_reason


def test_a_request_not_from_uwsgi_has_nothing_to_report() -> None:
    assert threads_disabled_reason({"SERVER_SOFTWARE": "gunicorn/23.0.0", "wsgi.multithread": False}) is None


def test_an_environ_that_claims_uwsgi_outside_uwsgi_has_nothing_to_report() -> None:
    """A test client may copy uWSGI's keys; without the ``uwsgi`` module there is nothing to read."""
    assert "uwsgi" not in sys.modules
    assert threads_disabled_reason({"uwsgi.version": b"2.0.21"}) is None


@pytest.mark.parametrize(
    ("has_threads", "opt"),
    [(0, {}), (0, {"enable-threads": b"false"}), (0, {"processes": b"4", "master": True})],
)
def test_uwsgi_without_threads_is_reported_with_the_fix(has_threads: int, opt: dict[str, object]) -> None:
    reason = uwsgi_threads_disabled_reason(SimpleNamespace(has_threads=has_threads, opt=opt))
    assert reason == UWSGI_THREADS_HELP
    assert "--enable-threads" in reason and "--threads" in reason


@pytest.mark.parametrize(
    "opt", [{"enable-threads": True}, {"threads": b"4"}, {"enable-threads": b"true"}, {"threads": b"1"}]
)
def test_uwsgi_with_threads_has_nothing_to_report(opt: dict[str, object]) -> None:
    assert uwsgi_threads_disabled_reason(SimpleNamespace(has_threads=1, opt=opt)) is None


@pytest.mark.parametrize(
    ("opt", "expected"),
    [
        ({}, UWSGI_THREADS_HELP),
        ({"enable-threads": b"false"}, UWSGI_THREADS_HELP),
        ({"enable-threads": [b"true", b"off"]}, UWSGI_THREADS_HELP),
        ({b"enable-threads": True}, None),
        ({"enable-threads": b"yes"}, None),
        ({"threads": b"8"}, None),
    ],
)
def test_options_decide_when_a_uwsgi_has_no_has_threads(opt: dict[object, object], expected: str | None) -> None:
    assert uwsgi_threads_disabled_reason(SimpleNamespace(opt=opt)) == expected


def test_hosting_imports_nothing_of_uwsgi_at_import_time() -> None:
    code = "import sys, wsgi_logstream.hosting; print('uwsgi' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "False"
