"""docs/servers.md cannot rot: its snippets are excerpts of the example files the deployment tests run.

Each fenced block after a ``<!-- example: PATH -->`` marker must appear
verbatim in ``PATH``; every example config of the guide is quoted; the Caddy
workaround is the one ``tests/proxies.py`` runs; and the SSE client snippet
is run against a real job.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apps.deploy_site import application
from tests.proxies import CADDY_EXCEPT_STREAMS, start_job
from tests.servers import ROOT, RawClient, wsgiref_server

GUIDE = ROOT / "docs" / "servers.md"
QUOTED = re.compile(r"<!-- example: (\S+) -->\n```[a-z]*\n(.*?)```\n", re.S)
CONFIGS = [
    "examples/uwsgi.ini",
    "examples/nginx-uwsgi.conf",
    "examples/apache-mod_wsgi.conf",
    "examples/apache-proxy.conf",
    "examples/Caddyfile",
    "examples/haproxy.cfg",
    "examples/traefik-dynamic.yml",
]


def _quotes() -> list[tuple[str, str]]:
    return QUOTED.findall(GUIDE.read_text())


@pytest.mark.parametrize("path", CONFIGS)
def test_every_example_config_is_quoted_verbatim_in_the_servers_guide(path: str) -> None:
    quotes = [text for quoted, text in _quotes() if quoted == path]
    assert quotes, f"docs/servers.md quotes nothing of {path}"
    source = (ROOT / path).read_text()
    for text in quotes:
        assert text in source, f"docs/servers.md's snippet of {path} is no longer in that file:\n{text}"


def test_the_guide_quotes_only_files_the_tests_run() -> None:
    assert sorted({path for path, _ in _quotes()}) == sorted(CONFIGS)


def test_the_guide_gives_the_caddy_workaround_the_tests_run() -> None:
    assert CADDY_EXCEPT_STREAMS in GUIDE.read_text()


def _python_snippet(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```\n", GUIDE.read_text(), re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"one python snippet with {marker!r} in docs/servers.md"
    return found[0]


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with wsgiref_server(application) as url:
        yield url


def test_the_guides_sse_snippet_follows_a_job_live_to_its_end(site: str) -> None:
    key = uuid.uuid4().hex
    printed: list[str] = []

    def collect(*args: Any) -> None:
        printed.append(" ".join(map(str, args)))
        if printed[-1].endswith(f"first {key}"):
            with RawClient(site, f"/release?key={key}") as release:  # only once the snippet has shown it
                release.read_to_end()

    namespace: dict[str, Any] = {"print": collect}
    exec(_python_snippet("def follow(url)"), namespace)  # the guide's own code, on purpose
    namespace["follow"](f"{site}{start_job(site, key)}")
    assert any(line.endswith(f"second {key} released=True") for line in printed), printed
    assert printed[-1].endswith(f"line 3 of {key}")
