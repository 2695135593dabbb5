--[[ peek: look at items of one set without changing anything.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses one set (pending, delayed, leased or
             dead), items
ARGV[1]      which set: pending | delayed | leased | dead
ARGV[2]      start (0-based rank), ARGV[3] count

Returns {total, (id, payload, attempts, priority, score, last_error, inc, token, holder)*} in the
set's order
(pending: the order lease takes them; delayed: by due time; leased: by deadline; dead: oldest
first).
]]
-- @include "queue_keys"
local which = ARGV[1]
local start, n = tonumber(ARGV[2]), tonumber(ARGV[3])
-- @include "clock"
-- @include "record"
bind_queue(KEYS)

local set = Q[which]
local out = { redis.call('ZCARD', set) }
if n <= 0 then
  return out
end
local rows = redis.call('ZRANGE', set, start, start + n - 1, 'WITHSCORES')
for i = 1, #rows, 2 do
  local id = rows[i]
  local r = rec_get(id)
  out[#out + 1] = id
  out[#out + 1] = r and rec_payload(r) or ''
  out[#out + 1] = r and r.att or 0
  out[#out + 1] = r and r.prio or 0
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = r and r.e ~= '' and r.e or false
  out[#out + 1] = r and fmt(r.inc) or '0'
  out[#out + 1] = r and fmt(r.tok) or '0'
  out[#out + 1] = r and r.h or ''
end
return out
