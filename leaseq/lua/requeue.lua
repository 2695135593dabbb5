--[[ requeue: give current leases back without counting a failure.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses meta, pending, delayed, leased,
             items, acked, wake
KEYS[last]   optional leaseq:{q}:call:<call id> (includes/calls.lua): a repeat of this call
             answers as its first run did, without running again
ARGV[1]      count of leases, then for each 5 values: id, inc, token, delay_ms (0 = ready now),
             payload (empty = keep the stored one; a stored payload is never empty)

inc/token 0 means "whatever lease the item has now" (it must be leased). The attempt counted by
the lease is taken back; the item goes to the back of its priority (a new sequence number),
after delay_ms if given, with the new payload if one is given.

Returns one integer per lease: 1 requeued, 3 already finished by this same token, 0 refused.
]]
-- @include "queue_keys"
-- @include "calls"
local count_items = tonumber(ARGV[1])
-- @include "clock"
-- @include "record"
-- @include "acked"
-- @include "wake"
bind_queue(KEYS)
local call, seen = call_begin(KEYS)
if seen then return seen end

local now = now_ms()
local lo, hi = math.huge, 0 -- the lowest and highest token acked
local out = {}
local requeued, ready = 0, false
for i = 0, count_items - 1 do
  local base = 2 + i * 5
  local id = ARGV[base]
  local inc, tok = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local r
  if inc == 0 then
    r = rec_get(id)
    if r and not redis.call('ZSCORE', Q.leased, id) then r = nil end
  else
    r = current_lease(id, inc, tok)
  end
  if r then
    redis.call('ZREM', Q.leased, id)
    if tok > 0 then
      ack_record('f', tok, now)
      lo, hi = math.min(lo, tok), math.max(hi, tok)
    end
    if ARGV[base + 4] ~= '' then
      r.p = ARGV[base + 4]
    end
    r.att = math.max(r.att - 1, 0)
    r.seq = next_seq(1)
    rec_put(id, r, true)
    ready = put_back(id, r, now, tonumber(ARGV[base + 3])) or ready
    requeued = requeued + 1
    out[#out + 1] = 1
  elseif ack_seen('f', tok, now) then
    out[#out + 1] = 3
  else
    out[#out + 1] = 0
  end
end
count('requeued', requeued)
if hi > 0 then
  ack_trim(now, lo, hi)
end
if ready then
  wake_one()
end
return call_done(call, out)
