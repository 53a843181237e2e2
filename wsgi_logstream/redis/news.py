"""Reading for every viewer of a process on Redis Cluster: one subscribed connection, news, and a sweep.

Redis Cluster refuses one ``XREAD`` over streams of different slots, so the
standalone listener's single blocking read cannot be had there. Instead the
scripts that add to a log ``PUBLISH`` its key on the store's news channel
(``<prefix>:news``; classic pub/sub reaches every node of a cluster), and
:class:`NewsListener` holds one subscribed connection, to any node: on news
for a job a viewer here waits on, it reads the job with the same one-slot
read script (through the store's pooled cluster client), and every
``_block`` seconds it reads every watched job in one pipeline, because
pub/sub delivers at most once (news published while its connection is being
made again, or while the node it listens to is down, is lost). A process
thus holds that one connection plus the store's pool, whatever the number of
viewers and jobs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable

import redis
from redis import exceptions as redis_errors

from ..errors import StoreUnavailable
from ..shared import LogSlice
from .clients import node_client
from .layout import text
from .listener import Listener, Watch, is_outage

__all__ = ["NewsListener"]

_log = logging.getLogger("wsgi_logstream")


class NewsListener(Listener):
    """The cluster's listener: the standalone one's watches, cache and waits, fed by news and a sweep."""

    #: Jobs read in one pipeline at most (a sweep of more takes several).
    CHUNK = 200

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._pubsub: Any = None
        self._resweep = False  # a new subscription: everything is read once (news before it were not heard)
        self._node = 0  # the node the next subscription tries first (it moves on when one fails)

    def _watching(self, job_id: str, watch: Watch) -> None:
        """A new watch: read the job from the viewer's position now, so news before it existed is not missed.

        News of the job published from now on finds the watch; what was
        written between the viewer's own read and this one comes with this read.
        """
        try:
            got = self._store._read(job_id, watch.next - 1, self.CACHE)
        except StoreUnavailable:
            return  # the sweep reads it once Redis answers
        except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
            _log.error("the Redis listener could not read job %s: %s", job_id, exc)
            return
        with self._lock:
            self._took(watch, got)

    def _interrupt(self) -> None:
        """Nothing to interrupt: a new watch reads for itself (:meth:`_watching`); news need no new subscription."""

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._pubsub = None  # a connection made before a fork is not this process's
        super()._ensure_thread()

    def _run(self) -> None:
        store = self._store
        pending: set[str] = set()  # jobs with news not read yet
        sweep_at = 0.0  # when every watched job is read next
        while True:
            with self._lock:
                if self._stopping:
                    break
                self._streams()  # forgets the watches nobody uses
                watched = [job_id for job_id, watch in self._watches.items() if not watch.ended]
            if not watched:
                # Unsubscribed while nobody here waits: news unread would pile up in Redis's output buffer.
                self._close_connection()
                pending.clear()
                with self._lock:
                    if not self._stopping and not self._dirty:
                        self._idle.wait(self.KEEP)
                continue
            try:
                pubsub = self._subscribed()
            except (redis_errors.RedisError, redis_errors.RedisClusterException, OSError) as exc:
                self._failed(exc)  # no node to listen to: the sweep still runs, every _retry seconds
                pubsub, sweep_at = None, 0.0
            if self._stopping:
                break
            if self._resweep:
                self._resweep, sweep_at = False, 0.0  # news may have been lost before it: read everything
            now = time.monotonic()
            if now >= sweep_at:
                wanted, sweep_at = watched, now + store._block
            else:
                wanted = [job_id for job_id in watched if job_id in pending]
            pending.clear()
            try:
                pending.update(self._read_jobs(wanted))  # a job read to its cache's brim is read again
            except StoreUnavailable:
                sweep_at = 0.0  # the store logged it; read everything once it answers
            if pending:
                continue
            if pubsub is None or sweep_at == 0.0:
                with self._lock:
                    self._idle.wait(store._retry)
                continue
            try:
                message = pubsub.get_message(timeout=max(sweep_at - time.monotonic(), 0.0))
                while message is not None:
                    if message.get("type") == "message":
                        pending.add(store._job_of(text(message["data"])))
                    message = pubsub.get_message(timeout=0.0)
            except (redis_errors.RedisError, redis_errors.RedisClusterException, OSError) as exc:
                self._close_connection()
                if self._stopping:
                    break
                self._failed(exc)
                sweep_at = 0.0
        self._close_connection()

    def _failed(self, exc: BaseException) -> None:
        """The subscribed connection failed: the next one goes to another node; a bug is logged."""
        self._close_connection()
        if not (is_outage(exc) or isinstance(exc, OSError)):
            _log.error("the Redis listener failed: %s", exc)

    def _read_jobs(self, wanted: list[str]) -> set[str]:
        """Read ``wanted`` from where the listener is, into their caches; the jobs that may have more."""
        more: set[str] = set()
        down: BaseException | None = None
        for start in range(0, len(wanted), self.CHUNK):
            with self._lock:
                chunk = [(job_id, self._watches.get(job_id)) for job_id in wanted[start : start + self.CHUNK]]
                positions = [(job_id, watch.next - 1) for job_id, watch in chunk if watch is not None]
            if not positions:
                continue
            replies = self._by_node(positions)
            with self._lock:
                for (job_id, _after), got in zip(positions, replies, strict=True):
                    watch = self._watches.get(job_id)
                    if watch is None:
                        continue
                    if isinstance(got, BaseException):
                        if isinstance(got, StoreUnavailable) or is_outage(got):
                            down = got  # its node is down: the others' jobs were read all the same
                        else:
                            _log.error("the Redis listener could not read job %s: %s", job_id, got)
                        continue  # its viewers read Redis themselves every few seconds
                    self._took(watch, got)
                    if got is not None and len(got.entries) >= self.CACHE and not watch.ended:
                        more.add(job_id)
        if down is not None and not more:
            raise StoreUnavailable(str(down))  # read everything again soon, not at the next sweep
        return more

    def _by_node(self, wanted: list[tuple[str, int]]) -> list[LogSlice | BaseException | None]:
        """The reads of ``wanted``, one pipeline per node: a master down fails the reads of its own jobs only."""
        store = self._store
        try:
            where: Callable[[str], Any] = store._client.get_node_from_key
            nodes = [where(store._log_key(job_id)).name for job_id, _after in wanted]
        except redis_errors.RedisClusterException as exc:  # no node known for a slot
            raise store._outage.failed(exc) from None
        got: list[LogSlice | BaseException | None] = [None] * len(wanted)
        for node in set(nodes):
            indexes = [index for index, name in enumerate(nodes) if name == node]
            try:
                part = store._read_many([wanted[index] for index in indexes], self.CACHE)
            except StoreUnavailable as exc:
                part = [exc] * len(indexes)
            for index, reply in zip(indexes, part, strict=True):
                got[index] = reply
        return got

    def _subscribed(self) -> Any:
        """The subscribed pub/sub connection, made (on the next node that answers) if there is none."""
        if self._pubsub is not None:
            return self._pubsub
        store = self._store
        nodes = store._client.get_nodes()
        if not nodes:
            raise redis_errors.ConnectionError("no node of the cluster is known")
        node = nodes[self._node % len(nodes)]
        self._node += 1  # if this one fails, the next attempt tries another node
        client: redis.Redis = node_client(store._client, node, store._block)
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(store._news)
        except BaseException:
            pubsub.close()
            client.connection_pool.disconnect()
            raise
        with self._lock:
            if self._stopping:
                pubsub.close()
                client.connection_pool.disconnect()
                return None
            self._pubsub, self._conn = pubsub, client
        self._node -= 1  # it answered: stay with it
        self._resweep = True
        return pubsub

    def _close_connection(self) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
            conn, self._conn = self._conn, None
        if pubsub is not None:
            pubsub.close()
        if conn is not None:
            conn.connection_pool.disconnect()

    def _interrupt_for_stop(self) -> None:
        """End a wait for news now: shut the subscribed socket down (the thread then sees it is stopping)."""
        with self._lock:
            pubsub = self._pubsub
        connection = getattr(pubsub, "connection", None)
        sock = getattr(connection, "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
