--[[ complete: finish items, then optionally lease the next ones in the same round trip.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses every one of them
KEYS[9...]   leaseq:{q}:result:<id>, one per item that keeps a result, in item order
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV[1..3]   policy: max_attempts, dead_max, dead_ttl_ms (for the reclaim done by the lease)
ARGV[4]      next_n: items to lease after completing (0 = none)
ARGV[5]      lease_ms for those items
ARGV[6]      count of items, then for each item 5 values:
             id, inc (0 = any incarnation), token (0 = none), result, result_ttl_ms (0 = keep none)
ARGV[last]   optional, after the items: the holder of the next leases ('' = none)

An item is completed when it exists and inc is 0 or its incarnation: the first completer wins,
even one whose lease ran out, but a lease of an older incarnation of the id never does (no ABA).
A completed item leaves no key behind except its result, kept for result_ttl_ms.

Returns {outcome per item..., then the lease reply of lease.lua when next_n > 0}; outcome is
1 completed, 2 completed earlier by this same token (a repeated call), 0 not completed.
]]
-- @include "queue_keys"
-- @include "calls"
local next_n = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])
local count_items = tonumber(ARGV[6])
local holder = ARGV[7 + count_items * 5] or ''
-- @include "clock"
-- @include "record"
-- @include "acked"
-- @include "take"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end
bind_policy(ARGV)

local now = now_ms()
local out = {}
local ids = {}
for i = 1, count_items do
  ids[i] = ARGV[7 + (i - 1) * 5]
end
-- The incarnation is checked on the lease state; an item never leased has none, and only then
-- is its value read.
local names = {}
for i = 1, count_items do
  names[i] = ls(ids[i])
end
local recs = count_items > 0 and redis.call('HMGET', Q.items, unpack(names)) or {}
local unleased = {}
for i = 1, count_items do
  if not recs[i] then
    unleased[#unleased + 1] = i
  end
end
if #unleased > 0 then
  local which = {}
  for k, i in ipairs(unleased) do
    which[k] = ids[i]
  end
  local vals = redis.call('HMGET', Q.items, unpack(which))
  for k, i in ipairs(unleased) do
    recs[i] = vals[k]
  end
end
local finished = {} -- id -> token that finished it in this call
local done_ids, done_fields, acks = {}, {}, {}
local lo, hi = math.huge, 0 -- the lowest and highest token acked
local touched_ready = false
local result_key = 8
local now_s = fmt(now)
for i = 1, count_items do
  local base = 7 + (i - 1) * 5
  local id = ids[i]
  local tok = tonumber(ARGV[base + 2])
  local ttl = tonumber(ARGV[base + 4])
  if ttl > 0 then
    result_key = result_key + 1
  end
  if finished[id] == nil and rec_is(recs[i], ARGV[base + 1]) then
    finished[id] = tok
    done_ids[#done_ids + 1] = id
    done_fields[#done_fields + 1] = id
    done_fields[#done_fields + 1] = names[i]
    if ttl > 0 then
      redis.call('SET', KEYS[result_key], ARGV[base + 3], 'PX', ttl)
    end
    if tok > 0 then
      acks[#acks + 1] = now_s
      acks[#acks + 1] = 'c' .. ARGV[base + 2]
      lo, hi = math.min(lo, tok), math.max(hi, tok)
    end
    out[i] = 1
  elseif (finished[id] ~= nil and finished[id] == tok and tok > 0) or ack_seen('c', tok, now) then
    out[i] = 2
  else
    out[i] = 0
  end
end
if #done_ids > 0 then
  -- Most completed items are leased: the other sets are only searched for what is left.
  if redis.call('ZREM', Q.leased, unpack(done_ids)) < #done_ids then
    touched_ready = redis.call('ZREM', Q.pending, unpack(done_ids)) > 0
    redis.call('ZREM', Q.delayed, unpack(done_ids))
    redis.call('ZREM', Q.dead, unpack(done_ids))
  end
  redis.call('HDEL', Q.items, unpack(done_fields))
  count('completed', #done_ids)
end
if #acks > 0 then
  redis.call('ZADD', Q.acked, unpack(acks))
  ack_trim(now, lo, hi)
end
if next_n > 0 then
  return call_done(call, lease_reply(next_n, lease_ms, now, out, holder, touched_ready))
end
if touched_ready then
  wake_sync()
end
return call_done(call, out)
