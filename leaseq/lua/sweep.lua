--[[ sweep: promote due delayed items and reclaim expired leases, a bounded number per call.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses every one except acked
ARGV[1..3]   policy: max_attempts, dead_max, dead_ttl_ms
ARGV[4]      limit per kind of work

No deployment needs this (every lease does a bounded share of it); it exists to tidy a queue
that nobody leases from, e.g. before reading stats.

Returns {promoted, reclaimed}; either equal to limit means there may be more.
]]
-- @include "queue_keys"
local limit = tonumber(ARGV[4])
-- @include "clock"
-- @include "record"
-- @include "policy"
-- @include "wake"
bind_queue(KEYS)
bind_policy(ARGV)

local now = now_ms()
local promoted, left_d = promote_due(now, limit)
local reclaimed, left_l = reclaim_expired(now, limit)
due_store(due_min(left_d, left_l))
wake_sync()
return { promoted, reclaimed }
