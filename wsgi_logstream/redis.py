"""Jobs in Redis: any number of workers and hosts share them (``pip install 'wsgi-logstream[redis]'``).

:class:`RedisStore` is a :class:`~wsgi_logstream.store.JobStore`: give it to
``jobs(target, store=RedisStore("redis://..."))`` in every worker process and
a job started by one is listed, streamed, resumed and cancelled by all.

What it keeps, for a job ``<id>`` under the prefix ``P`` (default
``wsgi_logstream``):

* ``{P:<id>}:record``, a hash: the job's :class:`~wsgi_logstream.record.JobRecord`,
  one field per attribute, each value JSON;
* ``{P:<id>}:log``, a stream: one entry per log line or progress event, its
  entry id ``<seq>-0`` being the library's sequence number, so ``?since=N``,
  ``Last-Event-ID`` and a reader's count of missed lines work as in memory.
  The log is trimmed to about ``max_history`` entries (``XTRIM MAXLEN ~``);
  entries older than the last ``max_history`` are never served, so readers
  see exactly ``max_history`` whatever Redis's trimming left. A final entry
  ``<next_seq>-0`` with the field ``end`` marks the end, so a blocked reader
  wakes when the job ends;
* ``P:jobs`` and ``P:ended``, sorted sets: every job by creation time (the
  list), and finished ones by ending time (for ``max_finished``).

The two keys of a job share the hash tag ``{P:<id>}``, so each script that
touches a job runs in one slot; the two sorted sets are keys of their own.

Memory is bounded: every key of a job expires ``keep_finished`` seconds after
it ends; while it runs, the writer renews the expiry with its lease, so the
keys of a job whose runner died go ``keep_finished`` after its lease ran out
(the job shows ``lost`` until then). ``max_finished`` finished jobs are kept
at most, the oldest ending going first.

Writing goes through :class:`~wsgi_logstream.batching.BatchingLog`: one
script call per batch, never a round trip per line on the operation's thread.
Reading: a viewer reads history with ``XRANGE`` (in a script that also
reads the record). Once live, it waits on a local condition, woken by one
thread per process that blocks in a single ``XREAD`` over every stream this
process's viewers wait on, on one connection of its own; the entries that
read brings are kept (the latest thousand or so per job) and live viewers
take them from there, asking Redis itself every few seconds. So a
process serves any number of viewers of any number of jobs with that one
connection plus a small pool (``max_connections``), and a new line costs
one read of Redis per process, not one per viewer.

If Redis cannot be reached, every call that needs it raises
:class:`~wsgi_logstream.errors.StoreUnavailable` (the jobs app answers
``503`` with ``Retry-After``), the outage is logged once to the
``wsgi_logstream`` logger, and everything resumes when Redis is back.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from dataclasses import asdict, replace
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Callable, Sequence, TypeVar

import redis
from redis import exceptions as redis_errors

from .batching import Batch, BatchingLog, Heard
from .channel import Entry, Summary
from .errors import StoreUnavailable
from .options import check_store_options
from .record import JobRecord
from .shared import LogSlice, StoreReader

__all__ = ["RedisStore"]

_log = logging.getLogger("wsgi_logstream")

T = TypeVar("T")

#: Redis errors that mean "not now" rather than "wrong": answered with 503.
_UNAVAILABLE_REPLIES = ("OOM", "MISCONF", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY")

# Values in the record hash are JSON: a status is stored as "\"running\"".
_LUA_COMMON = """
local function active(status) return status == '"queued"' or status == '"running"' end
"""

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

_BEGIN = (
    _LUA_COMMON
    + """
if redis.call('HGET', KEYS[1], 'status') ~= '"queued"' then return 0 end
if redis.call('HGET', KEYS[1], 'cancel_requested') == 'true' then return 0 end
redis.call('HSET', KEYS[1], 'status', '"running"', 'started', ARGV[1], 'lease_until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS: record, log. ARGV: lease_until, ttl_ms, max_history, next_seq, records, progress ('' for none),
# the entries' sequence numbers (comma-separated) and their payloads (JSON, one a line: JSON text has no
# raw newline). Two arguments for a whole batch, not two per entry: packing them is the writer's main cost.
# Entries below the stored next_seq were written already (a batch retried after a lost reply).
_WRITE = (
    _LUA_COMMON
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 3 end
if not active(status) then return 2 end
local stored = tonumber(redis.call('HGET', KEYS[1], 'next_seq'))
local wrote = false
local payloads = ARGV[8]
local pos = 1
for seq in string.gmatch(ARGV[7], '%d+') do
  local newline = string.find(payloads, '\\n', pos, true)
  local last = newline and newline - 1 or #payloads
  if tonumber(seq) >= stored then
    redis.call('XADD', KEYS[2], seq .. '-0', 'e', string.sub(payloads, pos, last))
    wrote = true
  end
  pos = last + 2
end
if wrote then redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[3]) end
local next_seq = tonumber(ARGV[4])
if next_seq > stored then redis.call('HSET', KEYS[1], 'next_seq', ARGV[4]) end
if tonumber(ARGV[5]) > tonumber(redis.call('HGET', KEYS[1], 'records')) then
  redis.call('HSET', KEYS[1], 'records', ARGV[5])
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[6]) end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if redis.call('HGET', KEYS[1], 'cancel_requested') == 'true' then return 1 end
return 0
"""
)

# KEYS: record, log. ARGV: ttl_ms, next_seq, records, then field, value pairs of the ending.
_FINISH = (
    _LUA_COMMON
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or not active(status) then return 0 end
if redis.call('HGET', KEYS[1], 'started') == 'null' then
  redis.call('HSET', KEYS[1], 'started', redis.call('HGET', KEYS[1], 'created'))
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local next_seq = math.max(tonumber(redis.call('HGET', KEYS[1], 'next_seq')), tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'next_seq', tostring(next_seq))
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'records')) then
  redis.call('HSET', KEYS[1], 'records', ARGV[3])
end
redis.call('XADD', KEYS[2], tostring(next_seq) .. '-0', 'end', '1')
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
"""
)

_CANCEL = (
    _LUA_COMMON
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or not active(status) then return 0 end
redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
if status == '"queued"' then return 2 end
return 1
"""
)

# KEYS: record, log. ARGV: after, limit, max_history. The record, and entries above ``after`` among the
# last max_history (older ones may still be in the stream: MAXLEN ~ trims whole nodes), as one JSON text
# [[seq, payload], ...]: one string to parse, not five reply items an entry.
_READ = """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return false end
local next_seq = 1
for i = 1, #record, 2 do
  if record[i] == 'next_seq' then next_seq = tonumber(record[i + 1]) end
end
local start = math.max(tonumber(ARGV[1]) + 1, next_seq - tonumber(ARGV[3]), 1)
local entries = redis.call('XRANGE', KEYS[2], tostring(start) .. '-0', '+', 'COUNT', ARGV[2])
local parts = {}
for i, entry in ipairs(entries) do
  local fields = entry[2]
  if fields[1] == 'e' then
    local id = entry[1]
    parts[#parts + 1] = '[' .. string.sub(id, 1, string.find(id, '-', 1, true) - 1) .. ',' .. fields[2] .. ']'
  end
end
return {record, '[' .. table.concat(parts, ',') .. ']'}
"""

# KEYS: record, log. ARGV: max_history. The record and the id of the oldest entry.
_GET = """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return false end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_id = ''
if #first > 0 then first_id = first[1][1] end
return {record, first_id}
"""


_encode = json.JSONEncoder(separators=(",", ":")).encode
_quote = encode_basestring_ascii


def _encode_entry(entry: Entry) -> str:
    """An entry as compact JSON, built by hand for log lines: the writer's cost per line is mostly this."""
    if entry.kind == "log":
        line, message = entry.line, entry.message
        # The formatted line usually ends with the message: keep its length, not a second copy.
        kept = str(len(message)) if message and line.endswith(message) else _quote(message)
        # ASCII-only JSON: a lone surrogate in a line cannot make the write fail.
        return (
            f'["log",{float(entry.created)!r},{int(entry.levelno)},{_quote(entry.levelname)},'
            f"{_quote(entry.name)},{kept},{_quote(line)}]"
        )
    return _encode([entry.kind, entry.created, entry.message, entry.done, entry.total])


def _decode_entry(seq: int, data: list[Any]) -> Entry:
    if data[0] == "log":
        line, kept = data[6], data[5]
        message = line[len(line) - kept :] if isinstance(kept, int) else kept
        entry = Entry("log", data[1], data[2], data[3], data[4], message, line)
    else:
        entry = Entry("progress", data[1], message=data[2], done=data[3], total=data[4])
    entry.seq = seq
    return entry


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _record_from_hash(flat: Sequence[Any], first_id: Any, max_history: int) -> JobRecord:
    data = {_text(flat[i]): json.loads(_text(flat[i + 1])) for i in range(0, len(flat), 2)}
    record = JobRecord.from_dict(data)
    next_seq = record.next_seq
    first = next_seq
    if first_id:
        first = min(int(_text(first_id).split("-")[0]), next_seq)
    first = max(first, next_seq - max_history, 1)
    return record if first == record.first_seq else _with_first(record, first)


def _with_first(record: JobRecord, first_seq: int) -> JobRecord:
    return replace(record, first_seq=first_seq)


class _Outage:
    """Turns Redis connection errors into :class:`StoreUnavailable`, logging once per outage."""

    def __init__(self) -> None:
        self.down = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> StoreUnavailable:
        with self._lock:
            first, self.down = not self.down, True
        if first:
            _log.warning("Redis is unreachable (%s); jobs answer 503 until it is back", exc)
        return StoreUnavailable("Redis is unreachable")

    def ok(self) -> None:
        if self.down:
            with self._lock:
                was, self.down = self.down, False
            if was:
                _log.warning("Redis is reachable again; jobs are served")


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
        return True
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES)


class _Watch:
    """One job's stream as this process's listener knows it: its viewers, and the entries it read lately.

    ``cache`` holds, in order, every entry of the stream from ``cache_from``
    up to ``next`` (exclusive): viewers that are live take them from here,
    so a line reaches a thousand viewers of a process with one read of Redis.
    """

    __slots__ = ("cache", "cache_from", "changed", "ended", "last_used", "next", "waiters")

    def __init__(self, lock: threading.Lock, next_seq: int) -> None:
        self.changed = threading.Condition(lock)
        self.next = next_seq  # the listener has seen every entry below this
        self.cache: list[Entry] = []
        self.cache_from = next_seq
        self.ended = False
        self.waiters = 0
        self.last_used = time.monotonic()

    def skip_to(self, next_seq: int) -> None:
        """A viewer read further than the listener: start again from there (the cache restarts empty)."""
        self.next = self.cache_from = next_seq
        self.cache = []


class _Listener:
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
    #: Entries of a job kept for its live viewers (up to twice this before it is cut back).
    CACHE = 1000

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._watches: dict[str, _Watch] = {}
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
            if watch is None:
                watch = self._watches[job_id] = _Watch(self._lock, after + 1)
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
        with self._lock:
            try:
                watch.changed.wait_for(
                    lambda: watch.next > after + 1 or watch.ended or self._stopping,
                    max(deadline - time.monotonic(), 0.0),
                )
            finally:
                watch.waiters -= 1
                watch.last_used = time.monotonic()

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
                if _is_outage(exc):
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
                    job_id = store._job_of(_text(key))
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
        self._close_connection()

    def _took(self, watch: _Watch, got: LogSlice | None) -> None:
        """Under the lock: what a read after the XREAD brought for a job, into its cache; its viewers are woken.

        The XREAD asks for one entry a stream (that there is news); the entries
        come from the read script as one JSON text, far cheaper to parse.
        """
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
            if watch is None or watch.ended:
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


class _ReaderLog:
    """What one :class:`StoreReader` reads through: the store, and the last of the job it saw.

    If the job's keys go while it reads (``keep_finished`` or ``max_finished``
    passed, or its runner died and the keys expired), the reader ends with the
    ending it last saw (or ``lost``) and counts what it could not read as missed.
    """

    #: Seconds a live viewer goes at most without asking Redis itself (the end comes through the
    #: listener; this is how a viewer learns that a job's keys are gone).
    LOOK = 5.0

    def __init__(self, store: RedisStore, job_id: str) -> None:
        self._store = store
        self._look_again = 0.0
        self._next_seq = 1
        self._summary: Summary | None = None
        self._started = time.time()

    def begin(self, job_id: str, started: float) -> bool:
        raise NotImplementedError  # readers never begin a job

    def append(self, job_id: str, entries: Sequence[Entry], progress: object) -> None:
        raise NotImplementedError  # nor write

    def read(self, job_id: str, after: int, limit: int) -> LogSlice | None:
        store = self._store
        now = time.monotonic()
        if now < self._look_again:
            # A live viewer: new entries come from the listener's cache; Redis itself is asked
            # at most every LOOK seconds (has the job ended, or gone?).
            hit = store._listener.cached(job_id, after, limit, store.max_history)
            if hit is not None:
                self._next_seq = max(self._next_seq, hit.next_seq)
                return LogSlice(hit.entries, self._next_seq, None)
        self._look_again = now + self.LOOK
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
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("create", _CREATE),
                ("begin", _BEGIN),
                ("write", _WRITE),
                ("finish", _FINISH),
                ("cancel", _CANCEL),
                ("read", _READ),
                ("get", _GET),
            )
        }
        self._outage = _Outage()
        self._retry = 0.5
        self._block = 5.0  # seconds an XREAD blocks at most; its connection's timeout is longer
        self._listener = _Listener(self)
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
            if _is_outage(exc):
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
        if held is not None and now - held[0] < self.FRESH:
            return held[1]
        got = self._script("get", [self._record_key(job_id), self._log_key(job_id)], [self.max_history])
        record = None if not got else _record_from_hash(got[0], got[1], self.max_history)
        if len(self._fresh) > 1000:
            self._fresh = {key: value for key, value in self._fresh.items() if now - value[0] < self.FRESH}
        self._fresh[job_id] = (now, record)
        return record

    def _changed(self, job_id: str) -> None:
        """This process changed the job: the next ``get`` reads Redis."""
        self._fresh.pop(job_id, None)

    def list(self) -> list[JobRecord]:
        def listed() -> tuple[list[Any], list[Any]]:
            ids = [_text(job_id) for job_id in self._client.zrevrange(self._jobs_key, 0, -1)]
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
                records.append(_record_from_hash(got[0], got[1], self.max_history))
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
        return StoreReader(_ReaderLog(self, job_id), job_id, since)

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
        args.append("\n".join([_encode_entry(entry) for entry in entries]))
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
            oldest = [_text(old) for old in client.zrange(self._ended_key, 0, excess - 1)]
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
        record = _record_from_hash(flat, "", self.max_history)
        entries = [_decode_entry(seq, data) for seq, data in json.loads(packed)]
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
