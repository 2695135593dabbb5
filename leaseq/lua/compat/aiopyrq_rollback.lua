--[[ aiopyrq_rollback: count one rollback of an item (aio-py-rq's can_rollback_item).

KEYS[1]  leaseq:{q}:aiopyrq:rollbacks  HASH  <content id>:n -> rollbacks, <content id>:t -> first (ms)
KEYS[2]  leaseq:{q}:meta               HASH  read for clock_offset (the queue's clock)
ARGV[1]  content id of the item
ARGV[2]  max_retry_rollback
ARGV[3]  max_timeout_in_queue in ms

Returns 0 once more than max_retry_rollback rollbacks were counted and max_timeout_in_queue has
passed since the first one, else 1.
]]
local rollbacks, meta = KEYS[1], KEYS[2]
local cid, max_retry, max_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local t = redis.call('TIME')
local off = tonumber(redis.call('HGET', meta, 'clock_offset') or 0) or 0
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + off
local n = redis.call('HINCRBY', rollbacks, cid .. ':n', 1)
local first = tonumber(redis.call('HGET', rollbacks, cid .. ':t') or '')
if not first then
  first = now
  redis.call('HSET', rollbacks, cid .. ':t', string.format('%d', now))
end
if n > max_retry and now - first >= max_ms then
  return 0
end
return 1
