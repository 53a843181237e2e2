"""The store itself: :class:`RedisStore`, the JobStore the jobs app and the runners use."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from typing import Any, Callable, Sequence, TypeVar

import redis
from redis import exceptions as redis_errors
from redis.cluster import RedisCluster

from ..batching import Batch, BatchingLog, Heard
from ..channel import Summary
from ..options import check_store_options
from ..record import JobRecord
from ..shared import LogSlice, StoreReader
from .clients import Client, close_client, dedicated_client, make_client
from .layout import SCRIPTS, decode_entry, encode_entry, record_from_hash, text
from .listener import Listener, Outage, ReaderLog, is_outage
from .news import NewsListener

__all__ = ["RedisStore"]

T = TypeVar("T")


class RedisStore:
    """A :class:`~wsgi_logstream.store.JobStore` in Redis, shared by every process that uses the same prefix.

    - ``url_or_client``: a ``redis://`` URL (the store makes a pool of at most
      ``max_connections`` and closes it in :meth:`close`), a ``redis.Redis``
      client or a ``redis.cluster.RedisCluster`` client (used as it is, and
      left open).
    - ``cluster`` (False): with a URL, make a Redis Cluster client (the URL
      names any one node; the others are found). A ``RedisCluster`` client
      needs no flag.
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
    - ``max_connections`` (4): the pool's size when the store makes it (per
      node on Cluster); the listener's own connection is one more (on one
      node, on Cluster).
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis | RedisCluster,
        *,
        cluster: bool = False,
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
        self._make, self._owns_client, self._cluster = make_client(
            url_or_client, cluster=cluster, max_connections=max_connections
        )
        self._made: tuple[Client, dict[str, Any]] | None = None
        self._jobs_key = f"{prefix}:jobs"
        self._ended_key = f"{prefix}:ended"
        # On Cluster, the scripts that add to a log tell the listeners of every process here (see .news).
        self._news = f"{prefix}:news" if self._cluster else ""
        self._outage = Outage(quiet=5.0 if self._cluster else 0.0)
        self._retry = 0.5
        self._block = 5.0  # seconds an XREAD blocks at most; its connection's timeout is longer
        self._listener: Listener = NewsListener(self) if self._cluster else Listener(self)
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

    @property
    def _client(self) -> Client:
        return self._connected()[0]

    @property
    def _scripts(self) -> dict[str, Any]:
        return self._connected()[1]

    def _connected(self) -> tuple[Client, dict[str, Any]]:
        """The client and its scripts, made at first use (a cluster client asks the cluster as it is made)."""
        made = self._made
        if made is None:
            with self._lock:
                made = self._made
                if made is None:
                    try:
                        client = self._make()
                    except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
                        if is_outage(exc):
                            raise self._outage.failed(exc) from None
                        raise
                    scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
                    made = self._made = (client, scripts)
        return made

    def _call(self, action: Callable[[], T]) -> T:
        try:
            result = action()
        except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
            if is_outage(exc):
                raise self._outage.failed(exc) from None
            raise
        self._outage.ok()
        return result

    def _pipe_script(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue a script on a pipeline.

        A cluster pipeline refuses ``Script(client=pipe)``, and for an
        ``EVALSHA`` it does not aim itself asks the default node ``COMMAND
        GETKEYS`` (a round trip, holding a connection of each node already in
        the pipeline: with a few threads, the pools ran dry for seconds). So
        on Cluster it is aimed at the node of its keys' slot; a ``MOVED`` is
        then retried by the client as any command.
        """
        script = self._scripts[name]
        client = self._client
        if isinstance(client, RedisCluster):
            node = client.get_node_from_key(keys[0])  # type: ignore[no-untyped-call]
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, target_nodes=node)
        else:
            script(keys=list(keys), args=list(args), client=pipe)

    def _pipelined(self, build: Callable[[Any], None], raise_on_error: bool = True) -> list[Any]:
        """One pipeline of what ``build`` queues; on Cluster its commands may span slots and nodes.

        A cluster pipeline does not load scripts first as a plain one does: a
        node that lost them (restarted) answers NOSCRIPT, and then every node
        is given them and the pipeline runs again (it holds only reads, or
        scripts that did not run).
        """
        for attempt in (1, 2):
            pipe = self._client.pipeline(transaction=False)
            build(pipe)
            if not self._cluster:
                return list(pipe.execute(raise_on_error=raise_on_error))
            replies = list(pipe.execute(raise_on_error=False))
            if attempt == 1 and any(isinstance(reply, redis_errors.NoScriptError) for reply in replies):
                for source in SCRIPTS.values():
                    self._client.script_load(source)
                continue
            if raise_on_error:
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts[name]
        return self._call(lambda: script(keys=list(keys), args=list(args)))

    def _listener_client(self) -> redis.Redis:
        """A client of one connection for the listener, whose socket timeout outlasts its XREAD BLOCK."""
        assert isinstance(self._client, redis.Redis), "the cluster listener makes its own (see .news)"
        return dedicated_client(self._client, self._block)

    # -- JobStore ----------------------------------------------------------------------

    def create(self, record: JobRecord) -> None:
        fields: list[Any] = []
        for name, value in record.to_dict().items():
            fields += [name, json.dumps(value)]
        ttl = 0
        # A queued job ends by its deadline or, if no worker begins it, by its lease (queue_timeout): its keys
        # outlive that ending by keep_finished even if nobody looks. `begin` and `finish` set their own expiry.
        ends = [when for when in (record.deadline, record.lease_until) if when is not None]
        if ends:
            ttl = self._ttl_ms(min(ends) - time.time() + self.keep_finished)
        if record.finished:
            ttl = self._ttl_ms(self.keep_finished)

        def create(pipe: Any) -> None:
            self._pipe_script(pipe, "create", [self._record_key(record.id)], [ttl, *fields])
            pipe.zadd(self._jobs_key, {record.id: record.created}, nx=True)

        self._changed(record.id)
        made, _added = self._call(lambda: self._pipelined(create))
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

            def gets(pipe: Any) -> None:
                for job_id in ids:
                    keys = [self._record_key(job_id), self._log_key(job_id)]
                    self._pipe_script(pipe, "get", keys, [self.max_history])

            return ids, self._pipelined(gets) if ids else []

        ids, replies = self._call(listed)
        records, gone = [], []
        for job_id, got in zip(ids, replies, strict=True):
            if got:
                records.append(record_from_hash(got[0], got[1], self.max_history))
            else:
                gone.append(job_id)
        if gone:  # their keys expired: forget them in the sorted sets too

            def forget(pipe: Any) -> None:
                pipe.zrem(self._jobs_key, *gone)
                pipe.zrem(self._ended_key, *gone)

            self._call(lambda: self._pipelined(forget))
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
        if self._owns_client and self._made is not None:
            close_client(self._made[0])

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
        args.append(self._news)
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
        finished = self._script("finish", keys, [ttl, next_seq, summary.records, self._news, *fields])
        self._changed(job_id)  # again: a look during the script may have kept the record as it was
        if not finished:
            return False
        self._forget_finished(job_id, summary.ended)
        return True

    def _forget_finished(self, job_id: str, ended: float) -> None:
        """Keep at most ``max_finished`` finished jobs: the oldest endings go, keys and all."""

        def count(pipe: Any) -> None:
            pipe.zadd(self._ended_key, {job_id: ended})
            pipe.zremrangebyscore(self._ended_key, "-inf", time.time() - self.keep_finished)
            pipe.zcard(self._ended_key)

        def prune() -> None:
            *_, counted = self._pipelined(count)
            excess = int(counted) - self.max_finished
            if excess <= 0:
                return
            oldest = [text(old) for old in self._client.zrange(self._ended_key, 0, excess - 1)]

            def forget(pipe: Any) -> None:
                for old in oldest:
                    pipe.delete(self._record_key(old))  # one key a DEL: a cluster pipeline takes no more
                    pipe.delete(self._log_key(old))
                    self._changed(old)
                pipe.zrem(self._ended_key, *oldest)
                pipe.zrem(self._jobs_key, *oldest)

            self._pipelined(forget)

        self._call(prune)

    def _read(self, job_id: str, after: int, limit: int, client: redis.Redis | None = None) -> LogSlice | None:
        keys = [self._record_key(job_id), self._log_key(job_id)]
        script = self._scripts["read"]
        got = self._call(lambda: script(keys=keys, args=[after, limit, self.max_history], client=client))
        return self._slice(got)

    def _read_many(self, wanted: Sequence[tuple[str, int]], limit: int) -> Sequence[LogSlice | BaseException | None]:
        """``_read`` of many jobs (job id, after) in one pipeline; a job's error comes back in its place."""

        def reads(pipe: Any) -> None:
            for job_id, after in wanted:
                keys = [self._record_key(job_id), self._log_key(job_id)]
                self._pipe_script(pipe, "read", keys, [after, limit, self.max_history])

        replies = self._call(lambda: self._pipelined(reads, raise_on_error=False))
        return [reply if isinstance(reply, BaseException) else self._slice(reply) for reply in replies]

    def _slice(self, got: Any) -> LogSlice | None:
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
