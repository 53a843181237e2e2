"""``examples/scaled/`` runs as its README says: two gunicorn instances behind nginx, Redis, Celery and RQ workers.

The example's own modules and configs (``site.py``, ``tasks.py``,
``nginx.conf``, ``examples/gunicorn.conf.py``) on free ports, every program
real and stopped by its id. The claims its README makes about restarts,
cancels and dead workers are proven on the same layout by
``tests/test_scaled_queues.py``.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Iterator

import pytest

from tests.apps.deployment import Deployment
from tests.servers import RawClient
from tests.wire import ndjson_objects

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with Deployment(
        tmp_path_factory.mktemp("example"),
        app="examples.scaled.site:application",
        tasks="examples.scaled.tasks",
        rq_queue="logstream",
        workers=3,
    ) as deployed:
        deployed.start_celery()
        deployed.start_rq()
        yield deployed


def _start(url: str) -> str:
    request = urllib.request.Request(url, data=b"rows=3&delay=0", method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as raised:  # urllib reports an unfollowed 303 as an error
        opener.open(request, timeout=10)
    with raised.value as reply:
        assert reply.code == 303, reply.read()
        return str(reply.headers["Location"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.parametrize("kind", ["celery", "rq"])
def test_an_import_started_through_nginx_runs_in_the_worker_and_every_instance_shows_it(
    deployment: Deployment, kind: str
) -> None:
    location = _start(f"{deployment.nginx.url}/{kind}/")
    assert location.startswith(f"/{kind}/")
    with RawClient(deployment.url(0), f"{location}?format=text") as text:
        body = text.read_to_end().decode()
    assert "import: importing 3 rows on " in body and "import: row 3 stored" in body, body
    assert body.rstrip("\n").rsplit("\n", 1)[-1].startswith("-- ok (after "), body
    with RawClient(deployment.url(1), f"{location}?format=ndjson") as ndjson:
        events = ndjson_objects(ndjson.read_to_end())
    logged = [event["message"] for event in events if event["event"] == "log"]
    assert logged[1:] == ["row 1 stored", "row 2 stored", "row 3 stored"], logged
    assert events[-1]["event"] == "end" and events[-1]["status"] == "ok", events[-1]
    request = urllib.request.Request(f"{deployment.nginx.url}/{kind}/", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        listed = {job["id"]: job["status"] for job in json.load(reply)["jobs"]}
    assert listed[location.rsplit("/", 1)[1]] == "ok"


def test_the_home_page_links_both_queues(deployment: Deployment) -> None:
    with urllib.request.urlopen(f"{deployment.nginx.url}/", timeout=10) as reply:
        page = reply.read().decode()
    assert 'href="celery/"' in page and 'href="rq/"' in page
