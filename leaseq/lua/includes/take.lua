-- @include "policy"
-- @include "wake"

-- Lease up to n ready items for lease_ms, appending 5 values per item to out:
-- id, payload, attempts, inc, token. Due delayed items are promoted and expired leases
-- reclaimed first (a bounded number, so the cost does not grow with the backlog).
local MAINTAIN_EXTRA = 8

local function take(n, lease_ms, now, out)
  promote_due(now, n + MAINTAIN_EXTRA)
  reclaim_expired(now, n + MAINTAIN_EXTRA)
  local got = 0
  if n > 0 then
    local popped = redis.call('ZPOPMIN', Q.pending, n)
    if #popped > 0 then
      local deadline = fmt(now + lease_ms)
      local tok = next_seq(#popped / 2)
      for i = 1, #popped, 2 do
        local id = popped[i]
        local r = rec_get(id)
        if r then
          r.att = r.att + 1
          r.tok = tok
          rec_put(id, r)
          redis.call('ZADD', Q.leased, deadline, id)
          out[#out + 1] = id
          out[#out + 1] = redis.call('HGET', Q.data, id) or ''
          out[#out + 1] = r.att
          out[#out + 1] = fmt(r.inc)
          out[#out + 1] = fmt(tok)
          got = got + 1
        end
        tok = tok + 1
      end
      count('leased', got)
    end
  end
  wake_sync()
  return got
end

-- The reply of a lease: {now, next_due, lease deadline, id, payload, attempts, inc, token, ...}.
-- next_due (-1 if none) tells an empty-handed caller how long it may block.
local function lease_reply(n, lease_ms, now, head)
  local out = head
  out[#out + 1] = fmt(now)
  out[#out + 1] = 0
  out[#out + 1] = fmt(now + lease_ms)
  local at = #out - 1
  if take(n, lease_ms, now, out) == 0 then
    out[at] = fmt(next_due())
  end
  return out
end
