-- @include "policy"
-- @include "wake"

-- Lease up to n ready items for lease_ms to holder ('' = unnamed), appending 5 values per item
-- to out:
-- id, payload, attempts, inc, token. Due delayed items are promoted and expired leases
-- reclaimed first (a bounded number, so the cost does not grow with the backlog).
local MAINTAIN_EXTRA = 2

local function take(n, lease_ms, now, out, holder)
  promote_due(now, n + MAINTAIN_EXTRA)
  reclaim_expired(now, n + MAINTAIN_EXTRA)
  local got, m = 0, 0
  if n > 0 then
    local popped = redis.call('ZPOPMIN', Q.pending, n)
    m = #popped / 2
    if m > 0 then
      local ids = {}
      for i = 1, m do
        ids[i] = popped[2 * i - 1]
      end
      local recs = redis.call('HMGET', Q.items, unpack(ids))
      local payloads = redis.call('HMGET', Q.data, unpack(ids))
      local deadline = fmt(now + lease_ms)
      local tok = next_seq(m)
      local records, leased = {}, {}
      for i = 1, m do
        local r = rec_parse(ids[i], recs[i])
        if r then -- (an id without a record is a leftover: dropped)
          r.att = r.att + 1
          r.tok = tok
          r.h = holder
          records[#records + 1] = ids[i]
          records[#records + 1] = rec_fmt(r)
          leased[#leased + 1] = deadline
          leased[#leased + 1] = ids[i]
          out[#out + 1] = ids[i]
          out[#out + 1] = payloads[i] or ''
          out[#out + 1] = r.att
          out[#out + 1] = fmt(r.inc)
          out[#out + 1] = fmt(tok)
          got = got + 1
        end
        tok = tok + 1
      end
      if got > 0 then
        redis.call('HSET', Q.items, unpack(records))
        redis.call('ZADD', Q.leased, unpack(leased))
        count('leased', got)
      end
    end
  end
  if m < n then
    redis.call('DEL', Q.wake) -- fewer than n were ready: none is left
  else
    wake_sync()
  end
  return got
end

-- The reply of a lease: {now, next_due, lease deadline, id, payload, attempts, inc, token, ...}.
-- next_due (-1 if none) tells an empty-handed caller how long it may block.
local function lease_reply(n, lease_ms, now, head, holder)
  local out = head
  out[#out + 1] = fmt(now)
  out[#out + 1] = 0
  out[#out + 1] = fmt(now + lease_ms)
  local at = #out - 1
  if take(n, lease_ms, now, out, holder) == 0 then
    out[at] = fmt(next_due())
  end
  return out
end
