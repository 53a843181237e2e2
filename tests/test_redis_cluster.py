"""RedisStore on a real Redis Cluster of three masters: what the contract suite (also run there) does not cover.

Jobs spread over the nodes, and live viewers of all of them are served from a
bounded number of connections; a cancel and a dead runner cross processes; a
finished job's keys go from every node; a master stopped mid-job makes
requests answer 503, and once it is back (same port, same directory, so it
rejoins with its slots and data) the viewer gets the rest. Two ``RedisStore``
objects with the same prefix stand for two processes, as in
``test_redis_store.py``; one test kills a real child process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from tests.inproc import TestApp
from tests.redis_server import RedisCluster, begun, log_line, start_cluster
from tests.servers import free_port, wait_until
from wsgi_logstream import jobs
from wsgi_logstream.channel import Summary
from wsgi_logstream.errors import StoreUnavailable
from wsgi_logstream.record import JobRecord
from wsgi_logstream.redis import RedisStore

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    started = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield started
    started.stop()


@pytest.fixture
def nodes(cluster: RedisCluster) -> Iterator[dict[int, redis.Redis]]:
    """A plain client of each master, by port: to look at each node for itself."""
    clients = {port: redis.Redis(port=port) for port in cluster.ports}
    yield clients
    for client in clients.values():
        client.close()


def _store(stores: list[RedisStore], cluster: RedisCluster, prefix: str, **options: Any) -> RedisStore:
    store = RedisStore(cluster.url, cluster=True, prefix=prefix, **options)
    stores.append(store)
    return store


def _port_of(client: ClusterClient, key: str) -> int:
    return int(client.get_node_from_key(key).port)


def test_a_misused_cluster_option_is_refused_with_its_name(cluster: RedisCluster) -> None:
    with pytest.raises(TypeError, match="cluster"):
        RedisStore(cluster.url, cluster="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url_or_client"):
        RedisStore(cluster.url + "/3", cluster=True)  # Cluster has database 0 only
    plain = redis.Redis(port=cluster.ports[0])
    try:
        with pytest.raises(ValueError, match="cluster"):
            RedisStore(plain, cluster=True)
    finally:
        plain.close()


def test_jobs_spread_over_every_node_and_their_live_viewers_get_every_line_on_a_bounded_number_of_connections(
    cluster: RedisCluster, nodes: dict[int, redis.Redis], prefix: str, stores: list[RedisStore]
) -> None:
    name = f"viewers-{prefix}"
    client = ClusterClient(
        host="127.0.0.1",
        port=cluster.ports[0],
        client_name=name,
        max_connections=3,
        connection_pool_class=redis.BlockingConnectionPool,
    )
    try:
        viewer = RedisStore(client, prefix=prefix)
        stores.append(viewer)
        runner = _store(stores, cluster, prefix)
        # Two jobs on each master, found by where their hash tag's slot lives.
        job_ids: list[str] = []
        per_node: dict[int, int] = {port: 0 for port in cluster.ports}
        k = 0
        while min(per_node.values()) < 2:
            job_id, k = f"job-{k:03d}", k + 1
            port = _port_of(client, runner._record_key(job_id))
            if per_node[port] < 2:
                per_node[port] += 1
                job_ids.append(job_id)
        for job_id in job_ids:
            assert client.keyslot(runner._record_key(job_id)) == client.keyslot(runner._log_key(job_id))
        logs = {job_id: begun(runner, job_id) for job_id in job_ids}
        lines = 200
        got: dict[str, list[list[int]]] = {job_id: [] for job_id in job_ids}
        first_seen = threading.Semaphore(0)

        def view(job_id: str) -> None:
            reader = viewer.reader(job_id, 0)
            seqs: list[int] = []
            got[job_id].append(seqs)
            deadline = time.monotonic() + 60
            try:
                while not reader.at_end and time.monotonic() < deadline:
                    _missed, entries = reader.take()
                    if entries and not seqs:
                        first_seen.release()
                    seqs += [entry.seq for entry in entries]
                    if not entries:
                        reader.wait(5.0)
            finally:
                reader.close()

        threads = [threading.Thread(target=view, args=(job_ids[k % len(job_ids)],)) for k in range(60)]
        for thread in threads:
            thread.start()
        for log in logs.values():
            log_line(log, 1)
        # Live: every viewer has the first line while the runner holds back every other one.
        for _ in threads:
            assert first_seen.acquire(timeout=30), "a viewer never got the first line"
        held = 0
        for node in nodes.values():
            held += sum(1 for seen in node.client_list() if seen.get("name") == name)
        # The store's pools (3 a node) and the listener's one subscribed connection, for 60 viewers of 6 jobs.
        assert 1 <= held <= 3 * len(nodes) + 1, f"{held} connections for 60 viewers"
        for n in range(2, lines + 1):
            for log in logs.values():
                log_line(log, n)
        for log in logs.values():
            assert log.finish(Summary("ok", time.time(), time.time(), lines))
        for thread in threads:
            thread.join(60)
        for job_id in job_ids:
            assert len(got[job_id]) == 10
            for seqs in got[job_id]:
                assert seqs == list(range(1, lines + 1)), job_id
    finally:
        for store in stores:
            store.close()
        client.close()
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            node.redis_connection.connection_pool.disconnect()


def test_a_cancel_asked_through_another_store_reaches_the_runner(
    cluster: RedisCluster, prefix: str, stores: list[RedisStore]
) -> None:
    runner = _store(stores, cluster, prefix)
    web = _store(stores, cluster, prefix)
    log = begun(runner, "cancel-job")
    assert not log.cancel_event.is_set()
    assert web.request_cancel("cancel-job")
    wait_until(log.cancel_event.is_set, 10, "the runner to hear the cancel")
    assert log.finish(Summary("cancelled", time.time(), time.time(), 0))
    record = web.get("cancel-job")
    assert record is not None and record.status == "cancelled"


_CHILD = """
import sys, time
from wsgi_logstream.record import JobRecord
from wsgi_logstream.redis import RedisStore
store = RedisStore(sys.argv[1], cluster=True, prefix=sys.argv[2], lease=1.0, poll=0.25)
store.create(JobRecord(id="doomed-job", title="t", created=time.time()))
log = store.open_log("doomed-job")
assert log.begin(time.time())
log.append_log(time.time(), 20, "INFO", "app", "line 1", "INFO app: line 1")
print("running", flush=True)
time.sleep(600)
"""


def test_a_runner_killed_with_sigkill_leaves_its_job_lost_for_every_viewer(
    cluster: RedisCluster, prefix: str, stores: list[RedisStore]
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, cluster.url, prefix], stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"running\n"
        web = _store(stores, cluster, prefix)
        wait_until(lambda: (web.get("doomed-job") or JobRecord("x", "t", 0)).next_seq == 2, 10, "the first line")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        app = jobs(lambda: None, store=web)
        http = TestApp(app)

        def status() -> str:
            listed = json.loads(http.get("/", headers={"Accept": "application/json"}).text)["jobs"]
            return str(listed[0]["status"])

        # The bound: the lease (1 s) run out, and room for a loaded machine.
        wait_until(lambda: status() == "lost", 15, "the job to be lost")
        text = http.get("/doomed-job?format=text").text.splitlines()
        assert "INFO app: line 1" in text and text[-1].startswith("-- lost")
        listed = json.loads(http.get("/", headers={"Accept": "application/json"}).text)["jobs"]
        assert [(job["id"], job["status"]) for job in listed] == [("doomed-job", "lost")]
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_after_keep_finished_a_jobs_keys_are_gone_from_every_node(
    cluster: RedisCluster, nodes: dict[int, redis.Redis], prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, cluster, prefix, keep_finished=1.0)
    logs = {job_id: begun(store, job_id) for job_id in ("a", "b", "c", "d", "e", "f")}
    for log in logs.values():
        for n in range(1, 11):
            log_line(log, n)
        assert log.finish(Summary("ok", time.time(), time.time(), 10))

    def keys() -> list[bytes]:
        return [key for node in nodes.values() for key in node.scan_iter(match=f"{{{prefix}:*")]

    assert len(keys()) == 12  # a record and a log a job, each pair on its own node
    wait_until(lambda: not keys(), 10, "the jobs' keys to expire on every node")
    assert store.list() == []  # and the list forgets them
    assert [key for node in nodes.values() for key in node.scan_iter(match=f"*{prefix}*")] == []


def test_a_master_stopped_mid_job_makes_requests_answer_503_and_once_back_the_viewer_gets_the_rest(
    cluster: RedisCluster, prefix: str, stores: list[RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    runner = _store(stores, cluster, prefix)
    web = _store(stores, cluster, prefix)
    log = begun(runner, "outage-job")
    client = web._client
    assert isinstance(client, ClusterClient)
    port = _port_of(client, web._record_key("outage-job"))
    (node,) = [node for node in cluster.nodes if node.port == port]
    other = next(f"other-{k:03d}" for k in range(1000) if _port_of(client, web._record_key(f"other-{k:03d}")) != port)
    web.create(JobRecord(id=other, title="t", created=time.time()))
    for n in range(1, 11):
        log_line(log, n)
    seqs: list[int] = []
    done = threading.Event()

    def view() -> None:
        reader = web.reader("outage-job", 0)
        deadline = time.monotonic() + 90
        try:
            while not reader.at_end and time.monotonic() < deadline:
                _missed, entries = reader.take()
                seqs.extend(entry.seq for entry in entries)
                if not entries:
                    reader.wait(1.0)
        finally:
            reader.close()
            done.set()

    viewing = threading.Thread(target=view)
    viewing.start()
    app = jobs(lambda: None, store=web)
    http = TestApp(app)
    try:
        wait_until(lambda: len(seqs) >= 10, 20, "the viewer to get the first ten lines")
        caplog.set_level(logging.WARNING, logger="wsgi_logstream")
        node.stop()
        answered = 0
        for _ in range(20):  # until the others call it failed, the masters still up answer for their jobs
            with contextlib.suppress(StoreUnavailable):
                web._fresh.clear()
                answered += web.get(other) is not None
            with pytest.raises(StoreUnavailable):
                web._fresh.clear()
                web.get("outage-job")
        for n in range(11, 21):  # the operation goes on: appending never waits for Redis
            log_line(log, n)

        def refused() -> Any:
            answer = http.get("/", headers={"Accept": "application/json"}, expect_errors=True)
            return answer if answer.status_int == 503 else None

        listed = wait_until(refused, 60, "the list to get 503")
        assert listed.headers["Retry-After"] and "Traceback" not in listed.text
        # The store knows it is down now: a look at the job reads Redis, whose node for it is gone.
        shown = http.get("/outage-job?format=text", expect_errors=True)
        assert shown.status_int == 503 and shown.headers["Retry-After"] and "Traceback" not in shown.text
        node.start()
        cluster.wait_ok(60)
        for n in range(21, 31):
            log_line(log, n)
        wait_until(lambda: _has_next(web, "outage-job", 31), 60, "the runner's lines to reach Redis again")
        assert log.finish(Summary("ok", time.time(), time.time(), 30))
        assert done.wait(60), "the viewer never got the end"
        assert seqs == list(range(1, 31)) and log.dropped == 0
        # Once per store (the runner's and the web's), though calls to the two masters still up succeeded
        # between the failures of calls to the one down.
        messages = [record.getMessage() for record in caplog.records if record.name == "wsgi_logstream"]
        assert answered and 1 <= sum("unreachable" in message for message in messages) <= 2, messages
        listed = json.loads(http.get("/", headers={"Accept": "application/json"}).text)
        assert {job["id"]: job["status"] for job in listed["jobs"]} == {"outage-job": "ok", other: "queued"}
    finally:
        if not node.running:
            node.start()
            cluster.wait_ok(60)
        viewing.join(90)
        app.shutdown(10)


def _has_next(store: RedisStore, job_id: str, next_seq: int) -> bool:
    try:
        record = store.get(job_id)
    except StoreUnavailable:  # still down: try again
        return False
    return record is not None and record.next_seq >= next_seq


def test_the_readmes_cluster_snippet_runs_as_written_against_a_real_cluster(cluster: RedisCluster) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("#### Redis Cluster") :]
    snippet = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    assert "redis://10.0.0.11:6379" in snippet
    namespace: dict[str, Any] = {}
    exec(compile(snippet.replace("redis://10.0.0.11:6379", cluster.url), "README.md", "exec"), namespace)
    app, store = namespace["app"], namespace["store"]
    try:
        http = TestApp(app)
        location = http.post("/", status=303).headers["Location"]
        text = http.get(location + "?format=text").text.splitlines()
        assert [line for line in text if "imported" in line][-1].endswith("batch 2 imported")
        assert text[-1].startswith("-- ok")
    finally:
        assert app.shutdown(10)
        store.close()


def test_a_cluster_store_made_while_no_node_answers_is_made_and_answers_503_until_one_does() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}", cluster=True)  # a web process starting during an outage
    try:
        with pytest.raises(StoreUnavailable):
            store.list()
        with pytest.raises(StoreUnavailable):
            store.get("some-job-id")
    finally:
        store.close()
