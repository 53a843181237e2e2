"""Apache 2.4 (Debian's): serving the site with mod_wsgi, and as a mod_proxy reverse proxy before gunicorn.

Both run from their example configs (``examples/apache-mod_wsgi.conf``,
``examples/apache-proxy.conf``) with mod_deflate compressing pages and
streams, ``apache2 -DFOREGROUND`` with its own config, pid file, port and
error log in a temporary directory (as root, its workers run as nobody).
Each format passes compressed while the operation still waits for the
test: mod_wsgi and mod_proxy_http both flush each chunk, and mod_deflate
answers a flush with a sync flush, so no streaming option is needed.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator

import pytest

from tests.apps.deploy_site import PAGE
from tests.nginx import assert_ended_ok, gunicorn_with
from tests.proxies import APP, GzipClient, Served, apache_mod_wsgi, apache_proxy, live, start_job
from tests.servers import RawClient
from tests.wire import FORMATS

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def mod_wsgi() -> Iterator[Served]:
    with apache_mod_wsgi() as server:
        yield server


@pytest.fixture(scope="module")
def mod_proxy() -> Iterator[Served]:
    with gunicorn_with("gunicorn.conf.py", APP) as upstream, apache_proxy(f"127.0.0.1:{upstream.port}") as server:
        yield server


def _errors(server: Served) -> str:
    log = server.tmp / "error.log"
    return log.read_text(errors="replace") if log.exists() else ""


def _passes_compressed(server: Served, fmt: str) -> None:
    key = uuid.uuid4().hex
    with GzipClient(server.url, f"/ops/run?format={fmt}&key={key}", {"Accept-Encoding": "gzip"}) as client:
        body = live(client, key, server.url)
    assert client.status == 200, _errors(server)
    assert client.headers.get("content-encoding") == "gzip"  # mod_deflate is on the stream, and did not hold it
    assert f"line 3 of {key}".encode() in body
    assert_ended_ok(fmt, body)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_passes_apache_mod_wsgi_with_deflate_while_operation_runs(mod_wsgi: Served, fmt: str) -> None:
    _passes_compressed(mod_wsgi, fmt)


def test_a_job_goes_on_after_its_post_under_mod_wsgi(mod_wsgi: Served) -> None:
    key = uuid.uuid4().hex
    job = start_job(mod_wsgi.url, key)
    with RawClient(mod_wsgi.url, f"{job}?format=ndjson") as client:
        body = live(client, key, mod_wsgi.url)
    assert_ended_ok("ndjson", body)
    with RawClient(mod_wsgi.url, "/hosting") as client:
        assert client.read_to_end() == b"None\n"  # not uWSGI: nothing to report


def test_apache_deflate_compresses_the_site_pages(mod_wsgi: Served) -> None:
    with RawClient(mod_wsgi.url, "/page", {"Accept-Encoding": "gzip"}) as client:
        raw = client.read_to_end()
    assert client.headers.get("content-encoding") == "gzip"
    assert zlib.decompress(raw, wbits=31) == PAGE


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_passes_apache_mod_proxy_with_deflate_while_operation_runs(mod_proxy: Served, fmt: str) -> None:
    _passes_compressed(mod_proxy, fmt)
