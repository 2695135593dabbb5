--[[ add: add items, each with an id; an id already present is left unchanged.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, delayed, leased,
             dead, items, wake
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV[1]      count of items, then for each item 4 values:
             id, payload, priority (-1000..1000), delay_ms (0 = ready now)

Returns one integer per item: 0 added, or the state the existing id is in
(1 pending, 2 delayed, 3 leased, 4 dead; 5 when its record is in no set).
]]
-- @include "queue_keys"
-- @include "calls"
local count_items = tonumber(ARGV[1])
-- @include "clock"
-- @include "record"
-- @include "wake"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end

local now = nil -- read on the first delayed item only (a ready item needs no clock)
local out = {}
local ids = {}
for i = 1, count_items do
  ids[i] = ARGV[2 + (i - 1) * 4]
end
local existing = redis.call('HMGET', Q.items, unpack(ids))
local inc = next_seq(count_items)
local records, ready = {}, {}
local taken = {}
for i = 1, count_items do
  local base = 2 + (i - 1) * 4
  local id = ids[i]
  if existing[i] or taken[id] then
    local st = state_of(id)
    if st == 0 then st = taken[id] or 5 end
    out[i] = st
  else
    local prio, delay = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
    local seq = inc + i - 1
    records[#records + 1] = id
    records[#records + 1] = string.format('%d:%d:%d:', seq, prio, seq) .. ARGV[base + 1]
    if delay > 0 then
      taken[id] = 2
      now = now or now_ms()
      delay_item(id, now + delay)
    else
      taken[id] = 1
      ready[#ready + 1] = string.format('%d', (1000 - prio) * BAND + seq)
      ready[#ready + 1] = id
    end
    out[i] = 0
  end
end
if #records > 0 then
  redis.call('HSET', Q.items, unpack(records))
  count('added', #records / 2)
end
if #ready > 0 then
  redis.call('ZADD', Q.pending, unpack(ready))
  wake_one()
end
return call_done(call, out)
