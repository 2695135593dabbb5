--[[ stats: sizes and lifetime counters of a queue, read atomically.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, delayed, leased, dead
ARGV         none

Returns {now_ms, pending, delayed, leased, dead, delayed_due, leases_expired, field, value, ...}
where delayed_due / leases_expired count items whose time has come but that no lease or sweep
has moved yet, and the field/value pairs are the meta hash (counters and seq).
]]
-- @include "queue_keys"
-- @include "clock"
bind_queue(KEYS)

local now = now_ms()
local out = {
  fmt(now),
  redis.call('ZCARD', Q.pending),
  redis.call('ZCARD', Q.delayed),
  redis.call('ZCARD', Q.leased),
  redis.call('ZCARD', Q.dead),
  redis.call('ZCOUNT', Q.delayed, '-inf', fmt(now)),
  redis.call('ZCOUNT', Q.leased, '-inf', fmt(now)),
}
local meta = redis.call('HGETALL', Q.meta)
for i = 1, #meta do
  out[#out + 1] = meta[i]
end
return out
