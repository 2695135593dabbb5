-- @include "policy"
-- @include "wake"

-- Lease up to n ready items for lease_ms to holder ('' = unnamed), appending 5 values per item
-- to out:
-- id, payload, attempts, inc, token. Due delayed items are promoted and expired leases
-- reclaimed first (a bounded number, so the cost does not grow with the backlog).
--
-- The wake key (includes/wake.lua) holds "w" while ready work exists. Every call that makes
-- work ready sets it, and only a take that empties pending deletes it; so while work is left,
-- "w" is there unless a waiter just popped it, and that waiter's own lease (resync = true: every
-- lease.lua call) puts it back when it leaves work behind. A take chained to a completion
-- (resync = false) that took all it asked for and made nothing ready therefore leaves the key
-- as it is, saving two commands.
local MAINTAIN_EXTRA = 2

local function take(n, lease_ms, now, out, holder, resync)
  local moved = promote_due(now, n + MAINTAIN_EXTRA) + reclaim_expired(now, n + MAINTAIN_EXTRA)
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
      local tail = holder ~= '' and (':' .. holder) or ''
      local records, leased = {}, {}
      for i = 1, m do
        local id, s = ids[i], recs[i]
        if s then -- (an id without a record is a leftover: dropped)
          -- The lease rewrites attempts, token and holder; inc, prio and seq stay as they are.
          local head, inc, att = rec_head(id, s)
          att = att + 1
          local t = fmt(tok)
          records[#records + 1] = id
          records[#records + 1] = head .. fmt(att) .. ':' .. t .. tail
          leased[#leased + 1] = deadline
          leased[#leased + 1] = id
          out[#out + 1] = id
          out[#out + 1] = payloads[i] or ''
          out[#out + 1] = att
          out[#out + 1] = inc
          out[#out + 1] = t
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
  elseif resync or moved > 0 then
    wake_sync()
  end
  return got
end

-- The reply of a lease: {now, next_due, lease deadline, id, payload, attempts, inc, token, ...}.
-- next_due (-1 if none) tells an empty-handed caller how long it may block.
local function lease_reply(n, lease_ms, now, head, holder, resync)
  local out = head
  out[#out + 1] = fmt(now)
  out[#out + 1] = 0
  out[#out + 1] = fmt(now + lease_ms)
  local at = #out - 1
  if take(n, lease_ms, now, out, holder, resync) == 0 then
    out[at] = fmt(next_due())
  end
  return out
end
