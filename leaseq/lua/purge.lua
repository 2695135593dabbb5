--[[ purge: delete every item of a queue, in every state.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; unlinks all of them but meta
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV         none

The meta hash stays: its lifetime counters, and its seq counter, which keeps old lease tokens
from ever matching an item added after the purge. Kept results expire on their own.

Returns the number of items deleted.
]]
-- @include "queue_keys"
-- @include "calls"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end

local n = redis.call('ZCARD', Q.pending) + redis.call('ZCARD', Q.delayed)
  + redis.call('ZCARD', Q.leased) + redis.call('ZCARD', Q.dead)
redis.call('UNLINK', Q.pending, Q.delayed, Q.leased, Q.dead, Q.items, Q.acked, Q.wake)
if n > 0 then
  redis.call('HINCRBY', Q.meta, 'purged', n)
end
return call_done(call, n)
