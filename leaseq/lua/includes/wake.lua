-- @include "timers"

-- The wake key holds the single member "w" while ready work exists. Idle workers block on
-- BZPOPMIN wake: one member wakes exactly one of them, and a lease that leaves work behind puts
-- the member back, waking the next one (a chain, never a herd).
local function wake_one()
  redis.call('ZADD', Q.wake, '0', 'w')
end

local function wake_sync()
  if redis.call('ZCARD', Q.pending) > 0 then
    redis.call('ZADD', Q.wake, '0', 'w')
  else
    redis.call('DEL', Q.wake)
  end
end

-- Earliest time (ms) at which a delayed item is due or a lease runs out; -1 if none.
local function next_due()
  local best = -1
  local d = redis.call('ZRANGE', Q.delayed, '0', '0', 'WITHSCORES')
  if d[2] then best = tonumber(d[2]) end
  local l = redis.call('ZRANGE', Q.leased, '0', '0', 'WITHSCORES')
  if l[2] and (best < 0 or tonumber(l[2]) < best) then best = tonumber(l[2]) end
  return best
end

-- Put an item in the delayed set (now_ms() must have run in this call); if it is now the earliest one, wake one waiter so that it
-- recomputes how long it may block.
local function delay_item(id, due)
  due_lower(due)
  redis.call('ZADD', Q.delayed, fmt(due), id)
  if redis.call('ZRANGE', Q.delayed, '0', '0')[1] == id then
    wake_one()
  end
end

-- Put an item back: delayed until now + delay_ms, or ready at once (then returns true).
local function put_back(id, r, now, delay_ms)
  if delay_ms > 0 then
    delay_item(id, now + delay_ms)
    return false
  end
  redis.call('ZADD', Q.pending, pending_score(r), id)
  return true
end
