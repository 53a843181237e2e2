"""A running job's page has a cancel button: a plain form, carrying the host's hidden fields (a CSRF token)."""

from __future__ import annotations

import re
import threading
from typing import Any

from tests.inproc import TestApp, call
from tests.servers import wait_until
from wsgi_logstream import jobs, wait_cancelled
from wsgi_logstream.record import JobRecord

FORM = re.compile(rb'<form method=post action="([^"]+)" class=cancel>(.*?)</form>', re.S)


def _header(app: Any, job_id: str) -> bytes:
    """The job page up to the end of its header, read while the job runs."""
    with call(app, "format=html", path=f"/{job_id}") as page:
        return page.read_until(b"</header>")


def _running_app(**options: Any) -> tuple[Any, threading.Event]:
    started = threading.Event()

    def work() -> None:
        started.set()
        wait_cancelled(30)

    return jobs(work, **options), started


def test_a_running_jobs_page_has_a_cancel_form_with_the_hosts_hidden_fields_and_it_cancels() -> None:
    app, started = _running_app(form_fields=lambda environ: {"csrf_token": 'a"<b'})
    client = TestApp(app)
    job_id = client.post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    assert started.wait(10)
    forms = FORM.findall(_header(app, job_id))
    assert len(forms) == 1
    action, inside = forms[0]
    assert action == f"{job_id}/cancel".encode()  # relative to the page, so a proxy's prefix is kept
    assert b'<input type="hidden" name="csrf_token" value="a&quot;&lt;b">' in inside
    reply = client.post(f"/{job_id}/cancel", {"csrf_token": 'a"<b'}, status=303)
    assert reply.headers["Location"] == f"/{job_id}"

    def cancelled() -> bool:
        record = app.lookup(job_id)
        return record is not None and record.status == "cancelled"

    wait_until(cancelled, 10, "the job to end cancelled")


def test_a_finished_jobs_page_and_a_viewer_who_may_not_cancel_get_no_button() -> None:
    def hook(environ: dict[str, Any], action: str, job: JobRecord | None) -> bool:
        return action != "cancel" or environ.get("REMOTE_USER") == "ops"

    app, started = _running_app(authorize=hook)
    client = TestApp(app)
    job_id = client.post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    assert started.wait(10)
    assert FORM.findall(_header(app, job_id)) == []  # nobody logged in: may view, may not cancel
    ops = {"REMOTE_USER": "ops"}
    with call(app, "format=html", path=f"/{job_id}", extra=ops) as page:
        assert len(FORM.findall(page.read_until(b"</header>"))) == 1
    TestApp(app, extra_environ=ops).post(f"/{job_id}/cancel", status=303)
    wait_until(lambda: (app.lookup(job_id) or JobRecord("", "", 0)).finished, 10, "the job to end")
    assert FORM.findall(_header(app, job_id)) == []
