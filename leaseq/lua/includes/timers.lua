-- @include "clock"

-- The meta field due is a lower bound of every time in delayed and leased: nothing is due
-- before it. A lease reads it with the clock (includes/clock.lua) and looks for due delayed
-- items and expired leases only once now has reached it, so a busy queue spends no command on
-- that search in between. Absent means unknown: the next lease searches and sets it.
--   * Every ZADD to delayed or leased lowers it first when needed (due_lower).
--   * A removal may leave it lower than the earliest time left: still a lower bound; the next
--     search after it comes due puts it back up.

-- Lower the bound to t if needed (Q.due must have been read by now_ms() in this call); an
-- unknown bound stays unknown.
local function due_lower(t)
  if Q.due == nil then
    error({ err = 'LEASEQ BUG due not read' })
  end
  if Q.due and t < Q.due then
    redis.call('HSET', Q.meta, 'due', fmt(t))
    Q.due = t
  end
end

-- Store bound t (false: unknown), when it differs from the stored one.
local function due_store(t)
  if t ~= Q.due then
    if t then
      redis.call('HSET', Q.meta, 'due', fmt(t))
    else
      redis.call('HDEL', Q.meta, 'due')
    end
    Q.due = t
  end
end

-- The smaller of two bounds, where false is none.
local function due_min(a, b)
  if not a then return b end
  if not b then return a end
  return math.min(a, b)
end

-- The first up-to-limit members of a time-scored set whose time is <= now, and a lower bound
-- of the times left after them (false: none left).
local function scan_due(set, now, limit)
  local rows = redis.call('ZRANGE', set, '0', fmt(limit - 1), 'WITHSCORES')
  local ids = {}
  for i = 1, #rows, 2 do
    local t = tonumber(rows[i + 1])
    if t > now then
      return ids, t
    end
    ids[#ids + 1] = rows[i]
  end
  if #ids == limit then
    return ids, tonumber(rows[#rows]) -- more may be due: the last time seen bounds them
  end
  return ids, false
end
