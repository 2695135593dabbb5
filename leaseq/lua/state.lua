--[[ state: everything known about one item, read atomically.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, delayed, leased,
             dead, items
KEYS[9]      leaseq:{q}:result:<id>
ARGV[1]      id

Returns {now_ms, state, attempts, score, inc, priority, token, last_error, has_result, result,
payload, holder}:
state 1 pending, 2 delayed (score = due), 3 leased (score = deadline), 4 dead (score = time of
death), 5 recorded in no set (should not happen), 6 completed with a kept result, 0 unknown.
]]
-- @include "queue_keys"
local result_key = KEYS[9]
local id = ARGV[1]
-- @include "clock"
-- @include "record"
bind_queue(KEYS)

local now = fmt(now_ms())
local r = rec_get(id)
if not r then
  local result = redis.call('GET', result_key)
  if result then
    return { now, 6, 0, 0, 0, 0, 0, false, 1, result, false }
  end
  return { now, 0, 0, 0, 0, 0, 0, false, 0, false, false }
end
local st, score = state_of(id)
if st == 0 then st = 5 end
-- A result key next to a live record belongs to an earlier incarnation of the id: not reported.
return { now, st, r.att, score or 0, fmt(r.inc), r.prio, fmt(r.tok),
         r.e ~= '' and r.e or false, 0, false, rec_payload(r), r.h }
