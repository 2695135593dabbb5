--[[ dead_purge: delete dead letters.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, dead, items
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV[1]      mode: "ids" (ARGV[2...] are ids) or "all" (ARGV[2] = limit, oldest first)

Returns the number of dead letters deleted.
]]
-- @include "queue_keys"
-- @include "calls"
-- @include "clock"
-- @include "record"
-- @include "dead_select"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end

local ids = dead_selection(ARGV)
local gone = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', Q.dead, id) == 1 then
    drop_item(id)
    gone = gone + 1
  end
end
count('dead_purged', gone)
return call_done(call, gone)
