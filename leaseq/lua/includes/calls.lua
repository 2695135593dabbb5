-- Calls that carry no lease token (add, remove, purge, dead-letter calls, complete or requeue
-- by bare id) name a call key as their last key: leaseq:{q}:call:<call id>, a random id the
-- client makes once per call and sends again when it repeats the call after a lost reply. The
-- first run stores its reply there for CALL_TTL ms (20 s: longer than redis-py's retries take
-- with its default backoff; a key costs 100-250 bytes while it lives); a repeat finds it and
-- answers the same without doing anything again (an item completed and added again in between
-- stays untouched).
local CALL_TTL = 20000
local CALL_MARK = '}:call:'

-- The call key of this call (the last key, when it is one), else false.
local function call_key(keys)
  local k = keys[#keys]
  if k and string.find(k, CALL_MARK, 1, true) then
    return k
  end
  return false
end

-- The reply stored by an earlier run of this same call, else nil.
local function call_seen(key)
  if not key then
    return nil
  end
  local prev = redis.call('GET', key)
  if prev then
    return cmsgpack.unpack(prev)
  end
  return nil
end

-- Store this call's reply (when it names a call key) and return it.
local function call_done(key, reply)
  if key then
    redis.call('SET', key, cmsgpack.pack(reply), 'PX', CALL_TTL)
  end
  return reply
end
