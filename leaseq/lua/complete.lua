--[[ complete: finish items, then optionally lease the next ones in the same round trip.

KEYS[1..10]  the queue's fixed keys, all leaseq:{q}:*; uses every one of them
KEYS[11...]  leaseq:{q}:result:<id>, one per item that keeps a result, in item order
ARGV[1..3]   policy: max_attempts, dead_max, dead_ttl_ms (for the reclaim done by the lease)
ARGV[4]      next_n: items to lease after completing (0 = none)
ARGV[5]      lease_ms for those items
ARGV[6]      count of items, then for each item 5 values:
             id, inc (0 = any incarnation), token (0 = none), result, result_ttl_ms (0 = keep none)

An item is completed when it exists and inc is 0 or its incarnation: the first completer wins,
even one whose lease ran out, but a lease of an older incarnation of the id never does (no ABA).
A completed item leaves no key behind except its result, kept for result_ttl_ms.

Returns {outcome per item..., then the lease reply of lease.lua when next_n > 0}; outcome is
1 completed, 2 completed earlier by this same token (a repeated call), 0 not completed.
]]
-- @include "queue_keys"
local next_n = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])
local count_items = tonumber(ARGV[6])
-- @include "clock"
-- @include "record"
-- @include "acked"
-- @include "take"

local now = now_ms()
local out = {}
local done = 0
local result_key = 10
for i = 0, count_items - 1 do
  local base = 7 + i * 5
  local id = ARGV[base]
  local inc, tok = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local ttl = tonumber(ARGV[base + 4])
  if ttl > 0 then
    result_key = result_key + 1
  end
  local r = rec_get(id)
  if r and (inc == 0 or r.inc == inc) then
    redis.call('ZREM', Q.pending, id)
    redis.call('ZREM', Q.leased, id)
    redis.call('ZREM', Q.delayed, id)
    redis.call('ZREM', Q.dead, id)
    drop_item(id)
    if ttl > 0 then
      redis.call('SET', KEYS[result_key], ARGV[base + 3], 'PX', ttl)
    end
    if tok > 0 then
      ack_record(tok, now)
    end
    done = done + 1
    out[#out + 1] = 1
  elseif ack_seen(tok) then
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
count('completed', done)
ack_trim(now)
if next_n > 0 then
  return lease_reply(next_n, lease_ms, now, out)
end
if done > 0 then
  wake_sync()
end
return out
