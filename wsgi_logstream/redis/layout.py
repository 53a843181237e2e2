"""What a job looks like in Redis: the scripts that change it, and how entries and records are encoded.

Every change to a job is one Lua script on its two keys (record and log),
so it is atomic and runs in one slot. On Redis Cluster the scripts that add
to a log also ``PUBLISH`` its key on the store's news channel (a channel is
not a key: classic pub/sub reaches every node), which is how the cluster
listener (:mod:`.news`) hears of new entries without a cross-slot read. Values in the record hash are JSON; a
stream entry holds one field ``e``, a compact JSON array (see
:func:`encode_entry`), or ``end`` for the marker that ends the log.
"""

from __future__ import annotations

import json
from dataclasses import replace
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Sequence

from ..channel import Entry
from ..record import JobRecord

__all__ = [
    "BEGIN",
    "CANCEL",
    "CREATE",
    "FINISH",
    "GET",
    "READ",
    "SCRIPTS",
    "WRITE",
    "decode_entry",
    "encode_entry",
    "record_from_hash",
    "text",
]

# Values in the record hash are JSON: a status is stored as "\"running\"".
LUA_COMMON = """
local function active(status) return status == '"queued"' or status == '"running"' end
"""

CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

BEGIN = (
    LUA_COMMON
    + """
if redis.call('HGET', KEYS[1], 'status') ~= '"queued"' then return 0 end
if redis.call('HGET', KEYS[1], 'cancel_requested') == 'true' then return 0 end
-- A queued job's lease is when a worker had to begin it by (queue_timeout): past it, it is lost.
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until'))
if lease and lease < tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', '"running"', 'started', ARGV[1], 'lease_until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS: record, log. ARGV: lease_until, ttl_ms, max_history, next_seq, records, progress ('' for none),
# the entries' sequence numbers (comma-separated) and their payloads (JSON, one a line: JSON text has no
# raw newline), and the news channel ('' for none: see NEWS). Two arguments for a whole batch, not two per
# entry: packing them is the writer's main cost.
# Entries below the stored next_seq were written already (a batch retried after a lost reply).
WRITE = (
    LUA_COMMON
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
if wrote then
  redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[3])
  if ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[9], KEYS[2]) end
end
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

# KEYS: record, log. ARGV: ttl_ms, next_seq, records, the news channel ('' for none), then field, value
# pairs of the ending.
FINISH = (
    LUA_COMMON
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or not active(status) then return 0 end
if redis.call('HGET', KEYS[1], 'started') == 'null' then
  redis.call('HSET', KEYS[1], 'started', redis.call('HGET', KEYS[1], 'created'))
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
local next_seq = math.max(tonumber(redis.call('HGET', KEYS[1], 'next_seq')), tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'next_seq', tostring(next_seq))
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'records')) then
  redis.call('HSET', KEYS[1], 'records', ARGV[3])
end
redis.call('XADD', KEYS[2], tostring(next_seq) .. '-0', 'end', '1')
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], KEYS[2]) end
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

CANCEL = (
    LUA_COMMON
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
READ = """
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
GET = """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return false end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_id = ''
if #first > 0 then first_id = first[1][1] end
return {record, first_id}
"""

#: name -> source, registered once per store.
SCRIPTS = {
    "create": CREATE,
    "begin": BEGIN,
    "write": WRITE,
    "finish": FINISH,
    "cancel": CANCEL,
    "read": READ,
    "get": GET,
}


_encode = json.JSONEncoder(separators=(",", ":")).encode
_quote = encode_basestring_ascii


def encode_entry(entry: Entry) -> str:
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
    if entry.kind == "progress":
        return _encode(["progress", entry.created, entry.message, entry.done, entry.total])
    # Any other kind (a section's start or end, ...): every field, so nothing a kind keeps is lost.
    return _encode(
        [
            entry.kind,
            entry.created,
            entry.levelno,
            entry.levelname,
            entry.name,
            entry.message,
            entry.line,
            entry.done,
            entry.total,
        ]
    )


def decode_entry(seq: int, data: list[Any]) -> Entry:
    kind = data[0]
    if kind == "log":
        line, kept = data[6], data[5]
        message = line[len(line) - kept :] if isinstance(kept, int) else kept
        entry = Entry("log", data[1], data[2], data[3], data[4], message, line)
    elif kind == "progress":
        entry = Entry("progress", data[1], message=data[2], done=data[3], total=data[4])
    else:
        entry = Entry(kind, *data[1:9])
    entry.seq = seq
    return entry


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def record_from_hash(flat: Sequence[Any], first_id: Any, max_history: int) -> JobRecord:
    data = {text(flat[i]): json.loads(text(flat[i + 1])) for i in range(0, len(flat), 2)}
    record = JobRecord.from_dict(data)
    next_seq = record.next_seq
    first = next_seq
    if first_id:
        first = min(int(text(first_id).split("-")[0]), next_seq)
    first = max(first, next_seq - max_history, 1)
    return record if first == record.first_seq else _with_first(record, first)


def _with_first(record: JobRecord, first_seq: int) -> JobRecord:
    return replace(record, first_seq=first_seq)
