"""The Lua scripts of the Redis store (`bridge.store.redis`): each documents its KEYS and ARGV.

Every write script checks before it writes, so a script either does all of its change or none of
it; `WRITE_SCRIPTS` are loaded when a store connects (EVALSHA inside MULTI cannot load them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from bridge.lease import fenced_script

__all__ = ["APPEND", "DEAD_LETTERS", "DUE", "ENQUEUE", "ENQUEUE_FENCED", "TRANSITION", "WRITE_SCRIPTS", "Script"]


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


# ------------------------------------------------------------------------------------------ scripts

APPEND = Script("append", """#!lua
--[[ Append entries to the journal under consecutive seqs, unless this writer is fenced off.
KEYS[1] journal (STREAM)   KEYS[2] writers (HASH writer id -> fence token)
ARGV[1] writer id          ARGV[2] the fence token this batch was sent with
ARGV[3..] 4 per entry: at, kind, source, data (JSON)
Returns {ID ("0-<seq>") of the first entry, `at` of the entry before it or ""}; the others follow
it without a gap (one script runs alone). Times never go back along the journal: an entry whose
`at` is below the previous entry's is written with the previous `at` (processes' clocks differ
a little; the engine applies entries in seq order at their `at`). Returns the error FENCED,
having written nothing, if ARGV[2] is not the writer's token any more: a batch the writer
already gave up on, arriving late. ]]
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED stale batch of writer ' .. ARGV[1])
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local floor = ''
if last then
  for j = 1, #last[2], 2 do
    if last[2][j] == 'at' then floor = last[2][j + 1] end
  end
end
local before = floor
local first
for i = 3, #ARGV, 4 do
  local at = ARGV[i]
  if floor ~= '' and tonumber(at) < tonumber(floor) then at = floor end
  floor = at
  local id = redis.call('XADD', KEYS[1], '0-*', 'at', at, 'kind', ARGV[i + 1],
                        'source', ARGV[i + 2], 'data', ARGV[i + 3], 'writer', ARGV[1])
  first = first or id
end
return {first, before}
""")

ENQUEUE = Script("enqueue", """#!lua
--[[ Insert new pending deliveries, due now; a known idempotency key is skipped.
KEYS[1] delivery ids (STRING)   KEYS[2] idempotency keys (HASH key -> id)
KEYS[3] heads (ZSET)            KEYS[4] counts (HASH state -> n)
ARGV[1] delivery key prefix (the delivery's HASH is prefix .. id)   ARGV[2] now
ARGV[3..] 7 per delivery: idempotency key, sink, incident id, revision, kind, action JSON, lane key
Also writes each new delivery's HASH and its lane (ZSET; same prefix, same slot).
Returns how many deliveries were new. ]]
local prefix, now, new = ARGV[1], ARGV[2], 0
for i = 3, #ARGV, 7 do
  local key, lane = ARGV[i], ARGV[i + 6]
  if redis.call('HEXISTS', KEYS[2], key) == 0 then
    local id = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2], key, id)
    redis.call('HSET', prefix .. id, 'idempotency_key', key, 'sink', ARGV[i + 1],
               'incident_id', ARGV[i + 2], 'revision', ARGV[i + 3], 'kind', ARGV[i + 4],
               'action', ARGV[i + 5], 'state', 'pending', 'attempts', '0', 'next_at', now,
               'created_at', now, 'updated_at', now, 'last_error', '', 'lane', lane)
    if redis.call('EXISTS', lane) == 0 then  -- the newest id heads only an empty lane
      redis.call('ZADD', KEYS[3], now, id)
    end
    redis.call('ZADD', lane, id, id)
    new = new + 1
  end
end
if new > 0 then redis.call('HINCRBY', KEYS[4], 'pending', new) end
return new
""")

TRANSITION = Script("transition", """#!lua
--[[ Move one delivery to another state, keeping its lane and the indexes in step.
KEYS[1] the delivery (HASH)   KEYS[2] heads (ZSET)   KEYS[3] dead (ZSET)   KEYS[4] counts (HASH)
ARGV[1] delivery key prefix (to read a lane's new head)   ARGV[2] delivery id
ARGV[3] delivered | retry | dead | revive                  ARGV[4] now
ARGV[5] retry: next_at; dead: error    ARGV[6] retry: error; dead: attempts to add (0 or 1)
Also writes the delivery's lane, the ZSET named by its `lane` field (same prefix, same slot).
Returns 1 if the delivery was pending (dead, for revive) and was moved, else 0. ]]
local prefix, id, op, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if op ~= 'delivered' and op ~= 'retry' and op ~= 'dead' and op ~= 'revive' then
  return redis.error_reply('unknown transition ' .. op)
end
local state, lane = unpack(redis.call('HMGET', KEYS[1], 'state', 'lane'))
if state ~= (op == 'revive' and 'dead' or 'pending') then return 0 end
if op == 'retry' then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'next_at', ARGV[5], 'last_error', ARGV[6], 'updated_at', now)
  redis.call('ZADD', KEYS[2], 'XX', ARGV[5], id)  -- reschedules it only if it heads its lane
  return 1
end
local old = redis.call('ZRANGE', lane, 0, 0)[1]
if op == 'revive' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', '0', 'next_at', now, 'updated_at', now)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', lane, id, id)
  redis.call('HINCRBY', KEYS[4], 'dead', -1)
  redis.call('HINCRBY', KEYS[4], 'pending', 1)
else
  if op == 'dead' then
    redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[6])
    redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', ARGV[5], 'updated_at', now)
    redis.call('ZADD', KEYS[3], id, id)
  else
    redis.call('HSET', KEYS[1], 'state', 'delivered', 'updated_at', now)
  end
  redis.call('ZREM', lane, id)
  redis.call('HINCRBY', KEYS[4], 'pending', -1)
  redis.call('HINCRBY', KEYS[4], op, 1)
end
local new = redis.call('ZRANGE', lane, 0, 0)[1]
if new ~= old then  -- the lane has another head: move the heads entry to it
  if old then redis.call('ZREM', KEYS[2], old) end
  if new then redis.call('ZADD', KEYS[2], redis.call('HGET', prefix .. new, 'next_at'), new) end
end
return 1
""")

DUE = Script("due", """#!lua flags=no-writes
--[[ The due lane heads, oldest (lowest id) first. Sorts all due heads: O(h log h) for h due lanes.
KEYS[1] heads (ZSET id by next_at)
ARGV[1] now   ARGV[2] limit   ARGV[3] delivery key prefix   ARGV[4..] the fields to return
Returns up to `limit` arrays {id, field values...}. ]]
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE')
table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
local out = {}
for i = 1, math.min(#ids, tonumber(ARGV[2])) do
  out[i] = redis.call('HMGET', ARGV[3] .. ids[i], unpack(ARGV, 4))
  table.insert(out[i], 1, ids[i])
end
return out
""")

DEAD_LETTERS = Script("dead_letters", """#!lua flags=no-writes
--[[ Dead deliveries, newest (highest id) first.
KEYS[1] dead (ZSET id by id)
ARGV[1] offset   ARGV[2] limit (> 0)   ARGV[3] delivery key prefix   ARGV[4..] the fields to return
Returns arrays {id, field values...}. ]]
local offset = tonumber(ARGV[1])
local ids = redis.call('ZRANGE', KEYS[1], offset, offset + tonumber(ARGV[2]) - 1, 'REV')
local out = {}
for i, id in ipairs(ids) do
  out[i] = redis.call('HMGET', ARGV[3] .. id, unpack(ARGV, 4))
  table.insert(out[i], 1, id)
end
return out
""")

#: The scripts a write batch calls inside MULTI (loaded at connect: EVALSHA cannot load them there).
#: `ENQUEUE` behind the partition lease's fence (bridge/lease.py): KEYS = [fence key, *its keys],
#: ARGV = [token, *its args]; refused with FENCED, writing nothing, unless the token is the owner's.
ENQUEUE_FENCED = Script("enqueue-fenced", fenced_script(ENQUEUE.source))

WRITE_SCRIPTS: Final = (APPEND, ENQUEUE, ENQUEUE_FENCED, TRANSITION)
