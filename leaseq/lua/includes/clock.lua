-- Server time in milliseconds, plus the queue's clock offset (meta field clock_offset, used by
-- tests to move time without sleeping; absent in production). Client clocks are never used.
local function now_ms()
  local t = redis.call('TIME')
  local off = tonumber(redis.call('HGET', Q.meta, 'clock_offset') or 0) or 0
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + off
end

-- Integers as exact decimal strings (Lua's default number format keeps only 14 digits).
local function fmt(x)
  return string.format('%d', x)
end
