-- Calls that carry no lease token (add, remove, purge, dead-letter calls, complete or requeue
-- by bare id) name a call key as their last key: leaseq:{q}:call:<call id>, a random id the
-- client makes once per call and sends again when it repeats the call after a lost reply. The
-- first run stores its reply there for CALL_TTL ms (20 s: longer than redis-py's retries take
-- with its default backoff; a key costs 100-250 bytes while it lives); a repeat finds it and
-- answers the same without doing anything again (an item completed and added again in between
-- stays untouched).
local CALL_TTL = 20000
local CALL_TTL_S = '20000'
local CALL_MARK = '}:call:'

-- This call's key (the last key, when it is one; else false) and the reply an earlier run of
-- this same call stored there (nil when none): a script returns that reply at once.
local function call_begin(keys)
  local k = keys[#keys]
  if not (k and string.find(k, CALL_MARK, 1, true)) then
    return false, nil
  end
  local prev = redis.call('GET', k)
  if prev then
    return k, cmsgpack.unpack(prev)
  end
  return k, nil
end

-- Store this call's reply (when it names a call key) and return it.
local function call_done(key, reply)
  if key then
    redis.call('SET', key, cmsgpack.pack(reply), 'PX', CALL_TTL_S)
  end
  return reply
end
