-- The retry / dead-letter policy, sent by the client as ARGV[1..3] of the scripts that can
-- dead-letter an item: max_attempts (0 = unlimited), dead_max (count cap, 0 = none),
-- dead_ttl_ms (age cap, 0 = none). bind_policy(ARGV) fills P at the start of a call.
local P = {}

local function bind_policy(args)
  P.max_att = tonumber(args[1])
  P.dead_max = tonumber(args[2])
  P.dead_ttl = tonumber(args[3])
end
-- @include "timers"

local TRIM_STEP = 100 -- dead letters dropped per call at most when a cap is exceeded

local function drop_dead(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', Q.dead, id)
    drop_item(id)
  end
end

-- Move an item (already out of every other set; r its parsed record) to the dead-letter set
-- with err as its last error, then apply the caps.
local function dead_letter(id, r, now, err)
  r.e = err
  rec_put(id, r, false)
  redis.call('ZADD', Q.dead, fmt(now), id)
  count('dead', 1)
  if P.dead_ttl > 0 then
    drop_dead(redis.call('ZRANGEBYSCORE', Q.dead, '-inf', fmt(now - P.dead_ttl),
      'LIMIT', 0, TRIM_STEP))
  end
  if P.dead_max > 0 then
    local excess = redis.call('ZCARD', Q.dead) - P.dead_max
    if excess > 0 then
      drop_dead(redis.call('ZRANGE', Q.dead, '0', fmt(math.min(excess, TRIM_STEP) - 1)))
    end
  end
end

-- Move due delayed items to pending (at most limit), a fixed number of commands for all.
-- Returns how many moved and a lower bound of the due times left (false: none left).
local function promote_due(now, limit)
  local due, left = scan_due(Q.delayed, now, limit)
  if #due == 0 then
    return 0, left
  end
  redis.call('ZREM', Q.delayed, unpack(due))
  local recs = redis.call('HMGET', Q.items, unpack(due))
  local ready = {}
  for i, id in ipairs(due) do
    local r = rec_parse(id, recs[i])
    if r then
      ready[#ready + 1] = pending_score(r)
      ready[#ready + 1] = id
    end
  end
  if #ready > 0 then
    redis.call('ZADD', Q.pending, unpack(ready))
  end
  return #due, left
end

-- Take back leases whose deadline passed (at most limit). The attempt was counted when the
-- item was leased, so an item that keeps killing its worker reaches max_attempts and is
-- dead-lettered instead of looping forever. A reclaimed item keeps its place (its seq).
-- A fixed number of commands for the whole batch, plus one dead_letter per poison item.
-- Returns how many were reclaimed and a lower bound of the deadlines left (false: none left).
local function reclaim_expired(now, limit)
  local gone, left = scan_due(Q.leased, now, limit)
  if #gone == 0 then
    return 0, left
  end
  redis.call('ZREM', Q.leased, unpack(gone))
  local got = redis.call('HMGET', Q.items, unpack(item_fields(gone)))
  local ready, states = {}, {}
  for i, id in ipairs(gone) do
    local r = rec_parse(id, got[2 * i - 1], got[2 * i])
    if r then
      local err = 'lease expired (attempt ' .. r.att .. ')'
      if P.max_att > 0 and r.att >= P.max_att then
        dead_letter(id, r, now, err)
      else
        r.e = err
        states[#states + 1] = ls(id)
        states[#states + 1] = state_fmt(r)
        ready[#ready + 1] = pending_score(r)
        ready[#ready + 1] = id
      end
    end
  end
  if #ready > 0 then
    redis.call('HSET', Q.items, unpack(states))
    redis.call('ZADD', Q.pending, unpack(ready))
  end
  count('expired', #gone)
  return #gone, left
end

-- Promote due delayed items and reclaim expired leases, at most limit of each, when the meta
-- field due says something may be due (includes/timers.lua). Returns how many items moved and
-- the new bound for due (false: no time left in either set), or Q.due when nothing was due.
local function maintain(now, limit)
  if Q.due and Q.due > now then
    return 0, Q.due
  end
  local promoted, left_d = promote_due(now, limit)
  local reclaimed, left_l = reclaim_expired(now, limit)
  return promoted + reclaimed, due_min(left_d, left_l)
end
