-- The retry / dead-letter policy, sent by the client as ARGV[1..3] of the scripts that can
-- dead-letter an item: max_attempts (0 = unlimited), dead_max (count cap, 0 = none),
-- dead_ttl_ms (age cap, 0 = none). bind_policy(ARGV) fills P at the start of a call.
local P = {}

local function bind_policy(args)
  P.max_att = tonumber(args[1])
  P.dead_max = tonumber(args[2])
  P.dead_ttl = tonumber(args[3])
end
local TRIM_STEP = 100 -- dead letters dropped per call at most when a cap is exceeded

local function drop_dead(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', Q.dead, id)
    drop_item(id)
  end
end

-- Move an item (already out of every other set) to the dead-letter set, then apply the caps.
local function dead_letter(id, now, err)
  redis.call('ZADD', Q.dead, fmt(now), id)
  redis.call('HSET', Q.errors, id, err)
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
local function promote_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', Q.delayed, '-inf', fmt(now), 'LIMIT', '0', limit)
  if #due == 0 then
    return 0
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
  return #due
end

-- Take back leases whose deadline passed (at most limit). The attempt was counted when the
-- item was leased, so an item that keeps killing its worker reaches max_attempts and is
-- dead-lettered instead of looping forever. A reclaimed item keeps its place (its seq).
-- A fixed number of commands for the whole batch, plus one dead_letter per poison item.
local function reclaim_expired(now, limit)
  local gone = redis.call('ZRANGEBYSCORE', Q.leased, '-inf', fmt(now), 'LIMIT', '0', limit)
  if #gone == 0 then
    return 0
  end
  redis.call('ZREM', Q.leased, unpack(gone))
  local recs = redis.call('HMGET', Q.items, unpack(gone))
  local ready, errors = {}, {}
  for i, id in ipairs(gone) do
    local r = rec_parse(id, recs[i])
    if r then
      local err = 'lease expired (attempt ' .. r.att .. ')'
      if P.max_att > 0 and r.att >= P.max_att then
        dead_letter(id, now, err)
      else
        errors[#errors + 1] = id
        errors[#errors + 1] = err
        ready[#ready + 1] = pending_score(r)
        ready[#ready + 1] = id
      end
    end
  end
  if #ready > 0 then
    redis.call('HSET', Q.errors, unpack(errors))
    redis.call('ZADD', Q.pending, unpack(ready))
  end
  count('expired', #gone)
  return #gone
end
