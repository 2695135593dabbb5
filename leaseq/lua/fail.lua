--[[ fail: record a failed attempt of current leases; retry later or dead-letter.

KEYS[1..8]   the queue's fixed keys, all leaseq:{q}:*; uses every one of them
ARGV[1..3]   policy: max_attempts (0 = unlimited), dead_max, dead_ttl_ms
ARGV[4]      count of leases, then for each 5 values: id, inc, token, error, retry_ms

The attempt was counted when the item was leased. Below max_attempts the item is retried after
retry_ms (0 = ready at once, at its old place); at max_attempts it moves to the dead-letter set.
The error text is kept as the item's last error.

Returns one integer per lease: 1 retry scheduled, 2 dead-lettered, 3 already finished by this
same token (a repeated call), 0 refused (stale lease).
]]
-- @include "queue_keys"
local count_items = tonumber(ARGV[4])
-- @include "clock"
-- @include "record"
-- @include "acked"
-- @include "policy"
-- @include "wake"
bind_queue(KEYS)
bind_policy(ARGV)

local now = now_ms()
local lo, hi = math.huge, 0 -- the lowest and highest token acked
local out = {}
local failed, retried, ready = 0, 0, false
for i = 0, count_items - 1 do
  local base = 5 + i * 5
  local id = ARGV[base]
  local tok = tonumber(ARGV[base + 2])
  local r = current_lease(id, tonumber(ARGV[base + 1]), tok)
  if r then
    redis.call('ZREM', Q.leased, id)
    ack_record('f', tok, now)
    lo, hi = math.min(lo, tok), math.max(hi, tok)
    failed = failed + 1
    local err, retry_ms = ARGV[base + 3], tonumber(ARGV[base + 4])
    if P.max_att > 0 and r.att >= P.max_att then
      dead_letter(id, r, now, err)
      out[#out + 1] = 2
    else
      r.e = err
      rec_put(id, r, false)
      ready = put_back(id, r, now, retry_ms) or ready
      retried = retried + 1
      out[#out + 1] = 1
    end
  elseif ack_seen('f', tok, now) then
    out[#out + 1] = 3
  else
    out[#out + 1] = 0
  end
end
count('failed', failed)
count('retried', retried)
if hi > 0 then
  ack_trim(now, lo, hi)
end
if ready then
  wake_one()
end
return out
