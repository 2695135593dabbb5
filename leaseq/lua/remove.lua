--[[ remove: delete items in any state (pending, delayed, leased or dead).

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, delayed, leased,
             dead, items, wake
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV         the ids

A holder of a removed item's lease can no longer complete, extend or fail it.

Returns one integer per id: 1 removed, 0 unknown.
]]
-- @include "queue_keys"
-- @include "calls"
-- @include "clock"
-- @include "record"
-- @include "wake"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end

local out = {}
local removed = 0
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', Q.items, id) == 1 then
    redis.call('ZREM', Q.pending, id)
    redis.call('ZREM', Q.delayed, id)
    redis.call('ZREM', Q.leased, id)
    redis.call('ZREM', Q.dead, id)
    drop_item(id)
    removed = removed + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
count('removed', removed)
if removed > 0 then
  wake_sync()
end
return call_done(call, out)
