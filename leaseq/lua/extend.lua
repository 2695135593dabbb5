--[[ extend: move the deadline of current leases to now + lease_ms (a heartbeat).

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, items, leased
ARGV[1]      lease_ms (> 0)
ARGV[2]      count of leases, then for each 3 values: id, inc, token

A lease is current while its token is the item's token and the item is still in the leased set
(not yet reclaimed, completed, failed or requeued). A stale lease is refused.

Returns one value per lease: the new deadline (ms), or 0 when refused.
]]
-- @include "queue_keys"
local lease_ms = tonumber(ARGV[1])
local count_items = tonumber(ARGV[2])
-- @include "clock"
-- @include "record"
-- @include "acked"
-- @include "timers"
bind_queue(KEYS)

local deadline_ms = now_ms() + lease_ms
local deadline = fmt(deadline_ms)
local out = {}
for i = 0, count_items - 1 do
  local base = 3 + i * 3
  local id = ARGV[base]
  if current_lease(id, tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])) then
    due_lower(deadline_ms)
    redis.call('ZADD', Q.leased, 'XX', deadline, id)
    out[#out + 1] = deadline
  else
    out[#out + 1] = 0
  end
end
return out
