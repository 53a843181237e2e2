"""A Celery job watched from headless Chromium while every gunicorn process is killed and started, twice.

The deployment is ``tests/apps/deployment.py``'s (the layout of
``examples/scaled/``); the operation waits for a file the test writes only
after the browser showed its first line.

- A page following the job with ``EventSource`` (``/follow.html``): each
  restart cuts its connection, and EventSource reconnects by itself with
  ``Last-Event-ID``. It must get every line exactly once, in order, and the end.
- The HTML viewer: a job's page reads the job as NDJSON and, when a killed
  server breaks that response (the connection closes inside the chunked
  body), says so and reads again from the last line it has (``?since=``).
"""

from __future__ import annotations

import urllib.request
from typing import Iterator

import pytest

from tests.apps.deployment import Deployment
from tests.browser import Chromium, Page, wait_for

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with Deployment(
        tmp_path_factory.mktemp("browser"),
        app="tests.apps.queue_site:application",
        tasks="tests.apps.queue_tasks",
        rq_queue="logstream",
    ) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Chromium) -> Iterator[Page]:
    with browser.new_page() as tab:
        yield tab
        tab.navigate("about:blank")  # leave the stream before the servers stop


def _restart_every_gunicorn(deployment: Deployment) -> None:
    for index in range(len(deployment.ports)):
        deployment.kill_gunicorn(index)
    for index in range(len(deployment.ports)):
        deployment.start_gunicorn(index)


def _start_job(deployment: Deployment, key: str) -> str:
    """POST the job on instance 0; its path (``/celery/<id>``)."""
    request = urllib.request.Request(f"{deployment.url(0)}/celery/", data=f"key={key}".encode(), method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request, timeout=10) as reply:  # follows the 303 to the job's page
        return "/" + str(reply.url).split("/", 3)[3]


def _expected(key: str) -> list[str]:
    return [f"detail {key}", f"second {key} cancelled=False", *(f"line {n} of {key}" for n in (1, 2, 3))]


def test_an_eventsource_following_a_celery_job_gets_every_line_once_across_two_restarts_of_every_gunicorn(
    deployment: Deployment, page: Page
) -> None:
    key = "browser-sse"
    path = _start_job(deployment, key)
    page.navigate(f"{deployment.url(0)}/follow.html?job={path}")
    worker = deployment.start_celery()
    try:
        wait_for(page, f"window.received.some((e) => e[1].startsWith('first {key}'))", 30)
        for restart in (1, 2):
            _restart_every_gunicorn(deployment)
            wait_for(page, f"window.opens === {restart + 1}", 30)  # EventSource came back by itself
        deployment.release(key)
        wait_for(page, "window.ended !== null", 30)
    finally:
        worker.stop()
    received = page.evaluate("window.received")
    assert [seq for seq, _message in received] == list(range(1, 7)), received
    assert received[0][1].startswith(f"first {key} pid=")
    assert [message for _seq, message in received[1:]] == _expected(key)
    assert page.evaluate("window.ended.status") == "ok"


def test_the_html_viewer_of_a_celery_job_goes_on_across_two_restarts_of_every_gunicorn(
    deployment: Deployment, page: Page
) -> None:
    key = "browser-html"
    path = _start_job(deployment, key)
    page.navigate(f"{deployment.url(0)}{path}")
    worker = deployment.start_celery()
    try:
        wait_for(page, f"document.getElementById('log').textContent.includes('first {key}')", 30)
        for _restart in (1, 2):
            # Blank what the page says, so that what it says next is about this restart.
            page.evaluate(
                "document.getElementById('banner').textContent = document.getElementById('state').textContent = ''"
            )
            _restart_every_gunicorn(deployment)
            # The page saw its stream break, and then reading again: it says so.
            wait_for(page, "document.getElementById('banner').textContent.includes('trying again')", 30)
            wait_for(page, "document.getElementById('state').textContent === 'running'", 30)
        deployment.release(key)
        wait_for(page, "document.getElementById('end') !== null", 30)
    finally:
        worker.stop()
    records = page.evaluate(
        "Array.from(document.querySelectorAll('#log .r[data-seq]'), (r) => [Number(r.dataset.seq), r.textContent])"
    )
    assert [seq for seq, _text in records] == list(range(1, 7)), records
    texts = [text.split(": ", 1)[1].rstrip("\n") for _seq, text in records]
    assert texts[0].startswith(f"first {key} pid=") and texts[1:] == _expected(key), texts
    assert page.evaluate("document.getElementById('end').dataset.status") == "ok"
