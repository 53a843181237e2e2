"""Reading for every viewer of a process: one blocking XREAD, a cache of what it brought, local wake-ups.

:class:`Listener` is one thread per process (a greenlet under gevent),
started when a viewer first waits and stopped by the store's ``close()``.
:class:`ReaderLog` is what each viewer's
:class:`~wsgi_logstream.shared.StoreReader` reads through. :class:`Outage`
turns Redis connection errors into
:class:`~wsgi_logstream.errors.StoreUnavailable`, logged once per outage.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from typing import Any, Protocol, Sequence

import redis
from redis import exceptions as redis_errors

from ..channel import Entry, Summary
from ..errors import StoreUnavailable
from ..shared import LogSlice
from .layout import text

__all__ = ["Listener", "Outage", "ReaderLog", "Source", "Watch", "is_outage"]

_log = logging.getLogger("wsgi_logstream")

#: Redis errors that mean "not now" rather than "wrong": answered with 503.
_UNAVAILABLE_REPLIES = ("OOM", "MISCONF", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY")


class Outage:
    """Turns Redis connection errors into :class:`StoreUnavailable`, logging once per outage.

    ``quiet`` (seconds): the outage ends only at a success that long after the
    last failure. On one server it is 0; on a cluster, calls to the nodes still
    up succeed between failures of calls to the one down, and the outage would
    otherwise be logged over and over.
    """

    def __init__(self, quiet: float = 0.0) -> None:
        self.down = False
        self._quiet = quiet
        self._failed_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> StoreUnavailable:
        with self._lock:
            first, self.down = not self.down, True
            self._failed_at = time.monotonic()
        if first:
            _log.warning("Redis is unreachable (%s); jobs answer 503 until it is back", exc)
        return StoreUnavailable("Redis is unreachable")

    def ok(self) -> None:
        if self.down:
            with self._lock:
                was = self.down and time.monotonic() - self._failed_at >= self._quiet
                if was:
                    self.down = False
            if was:
                _log.warning("Redis is reachable again; jobs are served")


#: Cluster errors that last only while a node is down or slots move: CLUSTERDOWN, MASTERDOWN, TRYAGAIN,
#: and MOVED or ASK still bouncing after the client's retries.
_CLUSTER_TRANSIENT = (
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.AskError,
    redis_errors.SlotNotCoveredError,
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis (or a node of the cluster) is not there now, rather than a wrong call."""
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, *_CLUSTER_TRANSIENT)):
        return True
    if isinstance(exc, redis_errors.RedisClusterException):
        # The client found no node to ask (all startup nodes down) or no node for a slot.
        return "cannot be connected" in str(exc) or "not covered" in str(exc)
    if not isinstance(exc, redis_errors.ResponseError):
        return False
    # redis-py strips a known error code from the message and keeps it as ``status_code``.
    code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
    return code in _UNAVAILABLE_REPLIES


class Watch:
    """One job's stream as this process's listener knows it: its viewers, and the entries it read lately.

    ``cache`` holds, in order, every entry of the stream from ``cache_from``
    up to ``next`` (exclusive): viewers that are live take them from here,
    so a line reaches a thousand viewers of a process with one read of Redis.
    """

    __slots__ = ("cache", "cache_from", "changed", "ended", "last_used", "looked", "next", "waiters")

    def __init__(self, lock: threading.Lock, next_seq: int) -> None:
        self.changed = threading.Condition(lock)
        self.next = next_seq  # the listener has seen every entry below this
        self.cache: list[Entry] = []
        self.cache_from = next_seq
        self.ended = False
        self.waiters = 0
        self.last_used = time.monotonic()
        # When the job was last read from Redis for this process (the viewer that made the watch just read it).
        self.looked = self.last_used

    def skip_to(self, next_seq: int) -> None:
        """A viewer read further than the listener: start again from there (the cache restarts empty)."""
        self.next = self.cache_from = next_seq
        self.cache = []


class Listener:
    """One thread per process: one blocking ``XREAD`` over every stream a local viewer waits on.

    Viewers wait on a local condition per job; the thread wakes them when an
    entry above what they have, or the end marker, arrives. A viewer that
    starts waiting on a stream the thread is not reading yet interrupts the
    blocked read with ``CLIENT UNBLOCK`` (from the store's pool), so the new
    stream is read from the viewer's own position (never from ``$``, which
    would skip what arrived in between).
    """

    #: Seconds a job's stream stays in the read after its last viewer stopped waiting.
    KEEP = 5.0
    #: Seconds after which the listener reads a watched job with no news again, once for its viewers here.
    LOOK = 5.0
    #: Seconds after which viewers distrust a watch the listener has not read, and read Redis themselves.
    STALE = 15.0
    #: Entries of a job kept for its live viewers (up to twice this before it is cut back).
    CACHE = 1000

    def __init__(self, store: Source) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._watches: dict[str, Watch] = {}
        self._dirty = False
        self._blocked = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._conn: Any = None
        self._client_id: int | None = None
        block = store._block
        self._block_ms = max(int(block * 1000), 1)

    def wait(self, job_id: str, after: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._stopping:
                return
            watch = self._watches.get(job_id)
            new = watch is None
            if watch is None:
                watch = self._watches[job_id] = Watch(self._lock, after + 1)
                self._dirty = True
            elif watch.next < after + 1:
                watch.skip_to(after + 1)  # this viewer has read that far: the next read starts there
            if watch.next > after + 1 or watch.ended:
                return
            watch.waiters += 1
            self._ensure_thread()
            interrupt = self._dirty and self._blocked
            if self._dirty:
                self._idle.notify()
        if interrupt:
            self._interrupt()
        if new:
            self._watching(job_id, watch)
        with self._lock:
            try:
                watch.changed.wait_for(
                    lambda: watch.next > after + 1 or watch.ended or self._stopping,
                    max(deadline - time.monotonic(), 0.0),
                )
            finally:
                watch.waiters -= 1
                watch.last_used = time.monotonic()

    def _watching(self, job_id: str, watch: Watch) -> None:
        """A viewer just started the watch of ``job_id``: here the next XREAD starts from its position."""

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._conn = None  # a connection made before a fork is not this process's
        self._client_id = None
        self._blocked = False
        self._thread = threading.Thread(target=self._run, name="wsgi_logstream-redis-listener", daemon=True)
        self._thread.start()

    def _interrupt(self) -> None:
        """Make the blocked XREAD return so the next one includes the new stream.

        The listener may be between two reads (or connecting): then it reads
        the new set anyway, and this returns as soon as it has taken it.
        """
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with self._lock:
                if self._stopping or not (self._dirty and self._blocked):
                    return
                client_id = self._client_id
            if client_id is not None:
                try:
                    if self._store._client.client_unblock(client_id):
                        return
                except redis_errors.RedisError:
                    return  # the listener will notice the outage itself
            time.sleep(0.002)

    def _streams(self) -> dict[str, str]:
        """Under the lock: the streams to read and from where; forgets watches nobody uses."""
        now = time.monotonic()
        for job_id, watch in list(self._watches.items()):
            if watch.waiters == 0 and (watch.ended or now - watch.last_used > self.KEEP):
                del self._watches[job_id]
        self._dirty = False
        store = self._store
        return {store._log_key(job_id): f"{w.next - 1}-0" for job_id, w in self._watches.items() if not w.ended}

    def _run(self) -> None:
        store = self._store
        while True:
            with self._lock:
                if self._stopping:
                    break
                streams = self._streams()
                if not streams:
                    self._idle.wait(self.KEEP)
                    continue
                self._blocked = True
            try:
                conn = self._connection()
                reply = conn.xread(streams, block=self._block_ms, count=1)
            except redis_errors.RedisError as exc:
                with self._lock:
                    self._blocked = False
                    self._client_id = None
                    stopping = self._stopping
                if stopping:
                    break
                if is_outage(exc):
                    store._outage.failed(exc)
                else:
                    _log.error("the Redis listener failed: %s", exc)
                self._close_connection()
                with self._lock:
                    self._idle.wait(store._retry)
                continue
            store._outage.ok()
            with self._lock:
                self._blocked = False
                news = []
                for key, _entries in reply or ():
                    job_id = store._job_of(text(key))
                    watch = self._watches.get(job_id)
                    if watch is not None:
                        news.append((job_id, watch))
            for job_id, watch in news:
                try:
                    got = store._read(job_id, watch.next - 1, self.CACHE, client=conn)
                except StoreUnavailable:
                    continue  # the next XREAD meets the outage too, and waits
                except redis_errors.RedisError as exc:  # not an outage: a bug; the viewers read Redis themselves
                    _log.error("the Redis listener could not read job %s: %s", job_id, exc)
                    continue
                with self._lock:
                    self._took(watch, got)
            self._look()
        self._close_connection()

    def _look(self) -> None:
        """Read again, in one pipeline, the watched jobs with no news for ``LOOK`` seconds.

        A job's end comes as news (its end marker), but its keys going (``keep_finished``, a lost
        runner's expiry) do not: so the viewers of a process learn it, with one read per job.
        """
        now = time.monotonic()
        with self._lock:
            due = [
                (job_id, w.next - 1)
                for job_id, w in self._watches.items()
                if not w.ended and now - w.looked > self.LOOK
            ]
        if not due:
            return
        try:
            replies = self._store._read_many(due, self.CACHE)
        except StoreUnavailable:
            return  # the next XREAD meets the outage too, and waits
        except redis_errors.RedisError as exc:  # not an outage: a bug; viewers read Redis once the watch is stale
            _log.error("the Redis listener could not look at %d jobs: %s", len(due), exc)
            return
        with self._lock:
            for (job_id, _after), got in zip(due, replies, strict=True):
                watch = self._watches.get(job_id)
                if watch is not None and not isinstance(got, BaseException):
                    self._took(watch, got)

    def _took(self, watch: Watch, got: LogSlice | None) -> None:
        """Under the lock: what a read after the XREAD brought for a job, into its cache; its viewers are woken.

        The XREAD asks for one entry a stream (that there is news); the entries
        come from the read script as one JSON text, far cheaper to parse.
        """
        watch.looked = time.monotonic()
        if got is None:
            watch.ended = True  # its keys are gone: viewers read Redis themselves, and learn it
        else:
            cache = watch.cache
            for entry in got.entries:
                if entry.seq >= watch.next:
                    cache.append(entry)
                    watch.next = entry.seq + 1
            if got.summary is not None and len(got.entries) < self.CACHE:
                watch.ended = True  # and every entry is in: none was left unread
            if len(cache) > 2 * self.CACHE:
                del cache[: len(cache) - self.CACHE]
                watch.cache_from = cache[0].seq
        watch.changed.notify_all()

    def cached(self, job_id: str, after: int, limit: int, max_history: int) -> LogSlice | None:
        """Entries above ``after`` as the listener knows them (none, if it knows of none); None: ask Redis."""
        with self._lock:
            watch = self._watches.get(job_id)
            if watch is None or watch.ended or time.monotonic() - watch.looked > self.STALE:
                return None
            if after + 1 >= watch.next:
                return LogSlice((), after + 1, None)  # nothing new: the listener reads this stream and saw none
            if after + 1 < watch.cache_from:
                return None  # older than the cache: from Redis
            cache = watch.cache
            start = bisect.bisect_right([entry.seq for entry in cache], after) if cache else 0
            oldest = watch.next - max_history  # what the store serves: the last max_history only
            entries = [entry for entry in cache[start : start + limit] if entry.seq >= oldest]
            return LogSlice(entries, watch.next, None)

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._store._listener_client()
            self._client_id = int(self._conn.client_id())
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            conn.connection_pool.disconnect()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._idle.notify_all()
            for watch in self._watches.values():
                watch.changed.notify_all()
            thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._interrupt_for_stop()
            thread.join(10)

    def _interrupt_for_stop(self) -> None:
        client_id = self._client_id
        if client_id is not None:
            try:
                self._store._client.client_unblock(client_id)
            except redis_errors.RedisError:
                pass  # Redis is down: the blocked read ends with its connection's timeout


class ReaderLog:
    """What one :class:`StoreReader` reads through: the store, and the last of the job it saw.

    If the job's keys go while it reads (``keep_finished`` or ``max_finished``
    passed, or its runner died and the keys expired), the reader ends with the
    ending it last saw (or ``lost``) and counts what it could not read as missed.
    """

    def __init__(self, store: Source, job_id: str) -> None:
        self._store = store
        self._next_seq = 1
        self._summary: Summary | None = None
        self._started = time.time()

    def begin(self, job_id: str, started: float) -> bool:
        raise NotImplementedError  # readers never begin a job

    def append(self, job_id: str, entries: Sequence[Entry], progress: object) -> None:
        raise NotImplementedError  # nor write

    def read(self, job_id: str, after: int, limit: int) -> LogSlice | None:
        store = self._store
        # A live viewer takes new entries from the listener's cache, which also learns for every viewer here
        # whether the job ended or its keys went (Listener.LOOK): Redis itself is asked only by a viewer that
        # is behind the cache, or when the listener knows nothing recent of the job.
        hit = store._listener.cached(job_id, after, limit, store.max_history)
        if hit is not None:
            self._next_seq = max(self._next_seq, hit.next_seq)
            return LogSlice(hit.entries, self._next_seq, None)
        try:
            got = store._read(job_id, after, limit)
        except StoreUnavailable:
            return LogSlice((), self._next_seq, None)  # nothing now; the viewer waits and tries again
        if got is None:
            if self._summary is None:
                ended = time.time()
                self._summary = Summary("lost", self._started, ended, 0, error="the job is no longer in the store")
            return LogSlice((), self._next_seq, self._summary)
        self._next_seq = got.next_seq
        self._summary = got.summary
        return got

    def wait(self, job_id: str, after: int, timeout: float) -> None:
        self._store._listener.wait(job_id, after, timeout)


class Source(Protocol):
    """What the listener and the readers need of the store (:class:`~wsgi_logstream.redis.RedisStore`)."""

    max_history: int
    _block: float
    _retry: float
    _outage: Outage
    _news: str
    _listener: Listener

    @property
    def _client(self) -> Any: ...  # redis.Redis, or redis.cluster.RedisCluster (see .news)

    def _log_key(self, job_id: str) -> str: ...

    def _job_of(self, log_key: str) -> str: ...

    def _read(self, job_id: str, after: int, limit: int, client: redis.Redis | None = None) -> LogSlice | None: ...

    def _read_many(
        self, wanted: Sequence[tuple[str, int]], limit: int
    ) -> Sequence[LogSlice | BaseException | None]: ...

    def _listener_client(self) -> redis.Redis: ...
