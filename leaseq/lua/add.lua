--[[ add: add items, each with an id; an id already present is left unchanged.

KEYS[1..10]  the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, delayed, leased,
             dead, items, data, wake
ARGV[1]      count of items, then for each item 4 values:
             id, payload, priority (-1000..1000), delay_ms (0 = ready now)

Returns one integer per item: 0 added, or the state the existing id is in
(1 pending, 2 delayed, 3 leased, 4 dead; 5 when its record is in no set).
]]
-- @include "queue_keys"
local count_items = tonumber(ARGV[1])
-- @include "clock"
-- @include "record"
-- @include "wake"

local now = now_ms()
local out = {}
local added, ready = 0, 0
local inc = next_seq(count_items)
for i = 0, count_items - 1 do
  local base = 2 + i * 4
  local id, payload = ARGV[base], ARGV[base + 1]
  local prio, delay = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  if redis.call('HSETNX', Q.items, id,
      string.format('%d:%d:%d:0:0', inc + i, prio, inc + i)) == 1 then
    redis.call('HSET', Q.data, id, payload)
    if delay > 0 then
      delay_item(id, now + delay)
    else
      redis.call('ZADD', Q.pending, string.format('%d', (1000 - prio) * BAND + inc + i), id)
      ready = ready + 1
    end
    added = added + 1
    out[#out + 1] = 0
  else
    local st = state_of(id)
    if st == 0 then st = 5 end
    out[#out + 1] = st
  end
end
count('added', added)
if ready > 0 then
  wake_one()
end
return out
