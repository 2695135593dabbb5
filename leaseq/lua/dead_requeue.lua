--[[ dead_requeue: move dead letters back to pending, with their attempt count reset.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, dead, items, wake
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV[1]      mode: "ids" (ARGV[2...] are ids) or "all" (ARGV[2] = limit, oldest first)

Returns the number of items requeued (in "all" mode, equal to limit means there may be more).
]]
-- @include "queue_keys"
-- @include "calls"
-- @include "clock"
-- @include "record"
-- @include "dead_select"
-- @include "wake"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end

local ids = dead_selection(ARGV)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', Q.dead, id) == 1 then
    local r = rec_get(id)
    if r then
      r.att = 0
      r.seq = next_seq(1)
      r.e = ''
      rec_put(id, r, true)
      redis.call('ZADD', Q.pending, pending_score(r), id)
      moved = moved + 1
    end
  end
end
count('requeued', moved)
if moved > 0 then
  wake_one()
end
return call_done(call, moved)
