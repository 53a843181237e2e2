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
So the store works on Redis Cluster too (give it a
``redis.cluster.RedisCluster`` client, or a URL and ``cluster=True``); there
it reads as ``redis.news`` says, since Cluster refuses one read across slots.

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
one read of Redis per process, not one per viewer. (On Cluster the one
connection is subscribed to the store's news channel instead: see ``redis.news``.)

If Redis cannot be reached, every call that needs it raises
:class:`~wsgi_logstream.errors.StoreUnavailable` (the jobs app answers
``503`` with ``Retry-After``), the outage is logged once to the
``wsgi_logstream`` logger, and everything resumes when Redis is back.
"""

from .store import RedisStore

__all__ = ["RedisStore"]
