"""The store itself: :class:`RedisStore`, the JobStore the jobs app and the runners use."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from typing import Any, Callable, Sequence, TypeVar

import redis
from redis import exceptions as redis_errors

from ..batching import Batch, BatchingLog, Heard
from ..channel import Summary
from ..options import check_store_options
from ..record import JobRecord
from ..shared import LogSlice, StoreReader
from .layout import SCRIPTS, decode_entry, encode_entry, record_from_hash, text
from .listener import Listener, Outage, ReaderLog, is_outage

__all__ = ["RedisStore"]

T = TypeVar("T")


class RedisStore:
    """A :class:`~wsgi_logstream.store.JobStore` in Redis, shared by every process that uses the same prefix.

    - ``url_or_client``: a ``redis://`` URL (the store makes a pool of at most
      ``max_connections`` and closes it in :meth:`close`) or a
      ``redis.Redis`` client (used as it is, and left open).
    - ``prefix`` ("wsgi_logstream"): the start of every key; stores with
      different prefixes share nothing.
    - ``max_history`` (10000), ``keep_finished`` (3600), ``max_finished``
      (100): as for :class:`~wsgi_logstream.store.MemoryStore`.
    - ``lease`` (10.0): seconds a runner's lease lasts; a job whose runner
      stops renewing it (killed, out of memory, host gone) is ``lost`` at
      the first look after it runs out.
    - ``poll`` (0.5): seconds between a runner's writes when nothing is
      logged: how soon it hears a cancel asked elsewhere, and how often it
      renews its lease. At most ``lease / 2``.
    - ``buffer`` (10000): entries a runner holds while Redis is slow or down;
      beyond that the oldest are dropped (and counted as missed by readers).
    - ``max_connections`` (4): the pool's size when the store makes it; the
      listener's own connection is one more.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "wsgi_logstream",
        keep_finished: float = 3600.0,
        max_finished: int = 100,
        max_history: int = 10_000,
        lease: float = 10.0,
        poll: float = 0.5,
        buffer: int = 10_000,
        max_connections: int = 4,
    ) -> None:
        self.max_history, self.keep_finished, self.max_finished = check_store_options(
            max_history=max_history, keep_finished=keep_finished, max_finished=max_finished
        )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        if not prefix or any(char in prefix for char in "{}") or prefix != prefix.strip():
            raise ValueError(f"prefix must be a non-empty name without braces or spaces around it, got {prefix!r}")
        self.lease = _seconds("lease", lease)
        self.poll = _seconds("poll", poll)
        if self.poll > self.lease / 2:
            raise ValueError(f"poll must be at most lease / 2 ({self.lease / 2:g}), got {poll!r}")
        self.buffer = _count("buffer", buffer, 1)
        max_connections = _count("max_connections", max_connections, 2)
        self.prefix = prefix
        if isinstance(url_or_client, str):
            pool = redis.BlockingConnectionPool.from_url(
                url_or_client,
                max_connections=max_connections,
                timeout=5,
                socket_timeout=5,
                socket_connect_timeout=2,
            )
            self._client: redis.Redis = redis.Redis(connection_pool=pool)
            self._owns_client = True
        elif isinstance(url_or_client, redis.Redis):
            self._client = url_or_client
            self._owns_client = False
        else:
            raise TypeError(f"url_or_client must be a redis:// URL or a redis.Redis client, got {url_or_client!r}")
        self._jobs_key = f"{prefix}:jobs"
        self._ended_key = f"{prefix}:ended"
        self._scripts = {name: self._client.register_script(source) for name, source in SCRIPTS.items()}
        self._outage = Outage()
        self._retry = 0.5
        self._block = 5.0  # seconds an XREAD blocks at most; its connection's timeout is longer
        self._listener = Listener(self)
        self._logs: set[BatchingLog] = set()
        self._fresh: dict[str, tuple[float, JobRecord | None]] = {}
        self._lock = threading.Lock()
        self._closed = False

    #: Seconds a record this process read is given to other lookups in this process.
    FRESH = 0.25

    def __repr__(self) -> str:
        return f"<RedisStore prefix={self.prefix!r}>"

    # -- keys --------------------------------------------------------------------------

    def _record_key(self, job_id: str) -> str:
        return f"{{{self.prefix}:{job_id}}}:record"

    def _log_key(self, job_id: str) -> str:
        return f"{{{self.prefix}:{job_id}}}:log"

    def _job_of(self, log_key: str) -> str:
        return log_key[len(self.prefix) + 2 : -len("}:log")]

    def _ttl_ms(self, seconds: float) -> int:
        return max(int(seconds * 1000), 1)

    # -- calls -------------------------------------------------------------------------

    def _call(self, action: Callable[[], T]) -> T:
        try:
            result = action()
        except redis_errors.RedisError as exc:
            if is_outage(exc):
                raise self._outage.failed(exc) from None
            raise
        self._outage.ok()
        return result

    def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts[name]
        return self._call(lambda: script(keys=list(keys), args=list(args)))

    def _listener_client(self) -> redis.Redis:
        """A client of one connection for the listener, whose socket timeout outlasts its XREAD BLOCK."""
        pool = self._client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        timeout = kwargs.get("socket_timeout")
        kwargs["socket_timeout"] = None if timeout is None else max(float(timeout), self._block + 5.0)
        listener_pool = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)
        return redis.Redis(connection_pool=listener_pool)

    # -- JobStore ----------------------------------------------------------------------

    def create(self, record: JobRecord) -> None:
        fields: list[Any] = []
        for name, value in record.to_dict().items():
            fields += [name, json.dumps(value)]
        ttl = 0
        if record.deadline is not None:
            ttl = self._ttl_ms(record.deadline - time.time() + self.keep_finished)
        if record.finished:
            ttl = self._ttl_ms(self.keep_finished)

        def create() -> Any:
            pipe = self._client.pipeline(transaction=False)
            self._scripts["create"](keys=[self._record_key(record.id)], args=[ttl, *fields], client=pipe)
            pipe.zadd(self._jobs_key, {record.id: record.created}, nx=True)
            return pipe.execute()

        self._changed(record.id)
        made, _added = self._call(create)
        if not made:
            raise ValueError(f"job id {record.id!r} is already taken")

    def get(self, job_id: str) -> JobRecord | None:
        # Every viewer of a running job looks at its record about once a second: within FRESH seconds,
        # the viewers of one process share one read. This process's own changes are seen at once.
        now = time.monotonic()
        held = self._fresh.get(job_id)
        if held is not None and now - held[0] < self.FRESH and not self._outage.down:
            return held[1]
        got = self._script("get", [self._record_key(job_id), self._log_key(job_id)], [self.max_history])
        record = None if not got else record_from_hash(got[0], got[1], self.max_history)
        if len(self._fresh) > 1000:
            self._fresh = {key: value for key, value in self._fresh.items() if now - value[0] < self.FRESH}
        self._fresh[job_id] = (now, record)
        return record

    def _changed(self, job_id: str) -> None:
        """This process changed the job: the next ``get`` reads Redis."""
        self._fresh.pop(job_id, None)

    def list(self) -> list[JobRecord]:
        def listed() -> tuple[list[Any], list[Any]]:
            ids = [text(job_id) for job_id in self._client.zrevrange(self._jobs_key, 0, -1)]
            pipe = self._client.pipeline(transaction=False)
            for job_id in ids:
                self._scripts["get"](
                    keys=[self._record_key(job_id), self._log_key(job_id)], args=[self.max_history], client=pipe
                )
            return ids, pipe.execute() if ids else []

        ids, replies = self._call(listed)
        records, gone = [], []
        for job_id, got in zip(ids, replies, strict=True):
            if got:
                records.append(record_from_hash(got[0], got[1], self.max_history))
            else:
                gone.append(job_id)
        if gone:  # their keys expired: forget them in the sorted sets too

            def forget() -> None:
                pipe = self._client.pipeline(transaction=False)
                pipe.zrem(self._jobs_key, *gone)
                pipe.zrem(self._ended_key, *gone)
                pipe.execute()

            self._call(forget)
        records.sort(key=lambda record: record.created, reverse=True)
        return records

    def finish(self, job_id: str, summary: Summary) -> bool:
        return self.finish_job(job_id, summary, 0)

    def request_cancel(self, job_id: str) -> bool:
        self._changed(job_id)
        result = self._script("cancel", [self._record_key(job_id)], [])
        self._changed(job_id)
        if result == 2:  # it was queued: it never starts
            now = time.time()
            self.finish(job_id, Summary("cancelled", now, now, 0))
        return bool(result)

    def reader(self, job_id: str, since: int) -> StoreReader:
        return StoreReader(ReaderLog(self, job_id), job_id, since)

    def open_log(self, job_id: str) -> BatchingLog:
        log = _RedisLog(self, job_id, buffer=self.buffer, lease=self.lease, poll=self.poll)
        with self._lock:
            self._logs.add(log)
        return log

    def close(self) -> None:
        """Stop the listener thread and the writers of jobs still open here, and close the pool if it is ours."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            logs = list(self._logs)
            self._logs.clear()
        for log in logs:
            log.close()
        self._listener.stop()
        if self._owns_client:
            self._client.close()
            self._client.connection_pool.disconnect()

    # -- primitives: BatchTarget, and reading ------------------------------------------

    def begin_job(self, job_id: str, started: float, lease_until: float) -> bool:
        self._changed(job_id)
        ttl = self._ttl_ms(self.lease + self.keep_finished)
        return bool(self._script("begin", [self._record_key(job_id)], [repr(started), repr(lease_until), ttl]))

    def write_batch(self, job_id: str, batch: Batch) -> str:
        args: list[Any] = [
            repr(batch.lease_until),
            self._ttl_ms(self.lease + self.keep_finished),
            self.max_history,
            batch.next_seq,
            batch.records,
            "" if batch.progress is None else json.dumps(asdict(batch.progress)),
        ]
        entries = batch.entries
        args.append(",".join([str(entry.seq) for entry in entries]))
        args.append("\n".join([encode_entry(entry) for entry in entries]))
        result = self._script("write", [self._record_key(job_id), self._log_key(job_id)], args)
        return (Heard.RUNNING, Heard.CANCEL, Heard.ENDED, Heard.GONE)[int(result)]

    def finish_job(self, job_id: str, summary: Summary, next_seq: int) -> bool:
        fields: list[Any] = []
        for name, value in (
            ("status", summary.status),
            ("ended", summary.ended),
            ("error", summary.error),
            ("traceback", summary.traceback),
            ("lease_until", None),
        ):
            fields += [name, json.dumps(value)]
        ttl = self._ttl_ms(self.keep_finished) if self.keep_finished > 0 else 0
        keys = [self._record_key(job_id), self._log_key(job_id)]
        self._changed(job_id)
        finished = self._script("finish", keys, [ttl, next_seq, summary.records, *fields])
        self._changed(job_id)  # again: a look during the script may have kept the record as it was
        if not finished:
            return False
        self._forget_finished(job_id, summary.ended)
        return True

    def _forget_finished(self, job_id: str, ended: float) -> None:
        """Keep at most ``max_finished`` finished jobs: the oldest endings go, keys and all."""

        def prune() -> None:
            client = self._client
            pipe = client.pipeline(transaction=False)
            pipe.zadd(self._ended_key, {job_id: ended})
            pipe.zremrangebyscore(self._ended_key, "-inf", time.time() - self.keep_finished)
            pipe.zcard(self._ended_key)
            *_, count = pipe.execute()
            excess = int(count) - self.max_finished
            if excess <= 0:
                return
            oldest = [text(old) for old in client.zrange(self._ended_key, 0, excess - 1)]
            pipe = client.pipeline(transaction=False)
            for old in oldest:
                pipe.delete(self._record_key(old), self._log_key(old))
                self._changed(old)
            pipe.zrem(self._ended_key, *oldest)
            pipe.zrem(self._jobs_key, *oldest)
            pipe.execute()

        self._call(prune)

    def _read(self, job_id: str, after: int, limit: int, client: redis.Redis | None = None) -> LogSlice | None:
        keys = [self._record_key(job_id), self._log_key(job_id)]
        script = self._scripts["read"]
        got = self._call(lambda: script(keys=keys, args=[after, limit, self.max_history], client=client))
        if not got:
            return None
        flat, packed = got
        record = record_from_hash(flat, "", self.max_history)
        entries = [decode_entry(seq, data) for seq, data in json.loads(packed)]
        return LogSlice(entries, record.next_seq, record.summary())


class _RedisLog(BatchingLog):
    """A runner's log in a :class:`RedisStore`; forgotten by the store once closed."""

    def __init__(self, store: RedisStore, job_id: str, **options: Any) -> None:
        super().__init__(store, job_id, **options)
        self._store = store

    def close(self) -> None:
        super().close()
        with self._store._lock:
            self._store._logs.discard(self)

    def finish(self, summary: Summary) -> bool:
        try:
            return super().finish(summary)
        finally:
            self.close()


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}, got {value!r}")
    return value
