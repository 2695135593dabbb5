-- Server time in milliseconds, plus the queue's clock offset; or, when the meta field
-- clock_fixed is set, that time exactly. Both fields let tests move time without sleeping
-- (clock_fixed also stops it); production queues have neither. Client clocks are never used.
-- The same read fetches the meta field due (includes/timers.lua) into Q.due.
local function now_ms()
  local c = redis.call('HMGET', Q.meta, 'clock_offset', 'clock_fixed', 'due')
  Q.due = tonumber(c[3]) or false
  if c[2] then
    return tonumber(c[2])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + (tonumber(c[1]) or 0)
end

-- Integers as exact decimal strings (Lua's default number format keeps only 14 digits).
local function fmt(x)
  return string.format('%d', x)
end
