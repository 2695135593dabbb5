-- Tokens of leases that were finished, kept for ACK_WINDOW ms (and at most ACK_MAX of them),
-- so that a call repeated after a lost reply (a client retry on reconnect) answers as the first
-- one did instead of "stale". Members are kind .. token: "c" for complete, "f" for fail and
-- requeue, so a token that failed an item can never pass for one that completed it.
local ACK_WINDOW = 60000
local ACK_WINDOW_S = '60000' -- (as text: a number argument of redis.call is printed with %.17g)
local ACK_MAX = 100000

local function ack_record(kind, tok, now)
  redis.call('ZADD', Q.acked, fmt(now), kind .. fmt(tok))
end

local function ack_seen(kind, tok, now)
  if tok <= 0 then
    return false
  end
  local at = redis.call('ZSCORE', Q.acked, kind .. fmt(tok))
  return at ~= false and tonumber(at) >= now - ACK_WINDOW
end

-- After a call recorded finishing tokens lo..hi: keep the key a window past this write, and on
-- about one call in ACK_TRIM_EVERY (those whose tokens reach a multiple of it; tokens never
-- repeat) drop what is older than the window and what exceeds ACK_MAX. ack_seen checks the age
-- itself, so an entry left past the window until the next trim never counts.
local ACK_TRIM_EVERY = 16

local function ack_trim(now, lo, hi)
  redis.call('PEXPIRE', Q.acked, ACK_WINDOW_S)
  if math.floor(hi / ACK_TRIM_EVERY) == math.floor((lo - 1) / ACK_TRIM_EVERY) then
    return
  end
  redis.call('ZREMRANGEBYSCORE', Q.acked, '-inf', fmt(now - ACK_WINDOW))
  local excess = redis.call('ZCARD', Q.acked) - ACK_MAX
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', Q.acked, '0', fmt(excess - 1))
  end
end

-- The record of id if (inc, tok) names its current lease, else nil.
local function current_lease(id, inc, tok)
  local r = rec_get(id)
  if r and r.inc == inc and r.tok == tok and redis.call('ZSCORE', Q.leased, id) then
    return r
  end
  return nil
end
