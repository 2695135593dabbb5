-- @include "policy"
-- @include "wake"

-- Lease up to n ready items for lease_ms to holder ('' = unnamed), appending 4 values per item
-- to out: id, its value ("inc:prio:seq:" .. payload), attempts, token. Due delayed items are promoted and expired leases
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
  local moved, due = maintain(now, n + MAINTAIN_EXTRA)
  local got, m = 0, 0
  if n > 0 then
    local popped = redis.call('ZPOPMIN', Q.pending, n)
    m = #popped / 2
    if m > 0 then
      local ids = {}
      for i = 1, m do
        ids[i] = popped[2 * i - 1]
      end
      local fields = item_fields(ids)
      local vals = redis.call('HMGET', Q.items, unpack(fields))
      local deadline = now + lease_ms
      local deadline_s = fmt(deadline)
      local tok = next_seq(m)
      local tail = ':' .. fmt(#holder) .. ':' .. holder
      local states, leased = {}, {}
      for i = 1, m do
        local id, v, st = ids[i], vals[2 * i - 1], vals[2 * i]
        if v then -- (an id without a value is a leftover: dropped)
          -- Only the lease state changes: attempts, token and holder; the error stays.
          local inc, att, e, hl, at
          if st then
            inc, att, hl, at = string.match(st, '^(%d+):(%d+):%d+:(%d+):()')
            e = inc and string.sub(st, at + tonumber(hl))
          else
            inc, att, e = string.match(v, '^(%d+):%-?%d+:%d+:'), 0, ''
          end
          if not inc then
            error({ err = 'LEASEQ CORRUPT bad record for item ' .. id })
          end
          att = att + 1
          local t = fmt(tok)
          states[#states + 1] = fields[2 * i]
          states[#states + 1] = inc .. ':' .. fmt(att) .. ':' .. t .. tail .. e
          leased[#leased + 1] = deadline_s
          leased[#leased + 1] = id
          out[#out + 1] = id
          out[#out + 1] = v
          out[#out + 1] = att
          out[#out + 1] = t
          got = got + 1
        end
        tok = tok + 1
      end
      if got > 0 then
        redis.call('HSET', Q.items, unpack(states))
        redis.call('ZADD', Q.leased, unpack(leased))
        count('leased', got)
        due = due_min(due, deadline)
      end
    end
  end
  due_store(due)
  if m < n then
    redis.call('DEL', Q.wake) -- fewer than n were ready: none is left
  elseif resync or moved > 0 then
    wake_sync()
  end
  return got
end

-- The reply of a lease: {now, next_due, lease deadline, (id, value, attempts, token)*}.
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
