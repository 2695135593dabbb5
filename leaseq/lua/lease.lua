--[[ lease: atomically take up to n ready items (highest priority first, FIFO within one).

KEYS[1..8]   the queue's fixed keys (includes/queue_keys.lua), all leaseq:{q}:*; uses
             meta, pending, delayed, leased, dead, items, wake
ARGV[1..3]   policy: max_attempts, dead_max, dead_ttl_ms (includes/policy.lua)
ARGV[4]      n: how many items at most (0 only maintains and resyncs the wake key)
ARGV[5]      lease_ms: lease duration in milliseconds (> 0)
ARGV[6]      optional holder: who takes the leases (kept in each item's record; '' = none)

Before taking, promotes due delayed items and reclaims expired leases (bounded per call),
when the meta field due says some may be due (includes/timers.lua).
Each leased item's attempt count goes up by one and it gets a fresh token.

Returns {now_ms, next_due_ms, deadline_ms, (id, value, attempts, token)*} where value is the
stored "inc:prio:seq:" .. payload (the client splits it); next_due_ms is -1 or the earliest
delayed due time / lease deadline when nothing was taken, else 0.
]]
-- @include "queue_keys"
local n = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])
local holder = ARGV[6] or ''
-- @include "clock"
-- @include "record"
-- @include "take"
bind_queue(KEYS)
bind_policy(ARGV)

return lease_reply(n, lease_ms, now_ms(), {}, holder, true)
