-- Items: HASH items, two fields per item:
--   id          "inc:prio:seq:" .. payload
--   "\1" .. id  "inc:attempts:token:hlen:" .. holder .. error: its lease state, from the first
--               lease on (an item never leased has none: attempts 0, token 0, no error)
--   inc      incarnation, fixed when the id is added (a re-added id gets a new one)
--   prio     priority, -1000..1000 (higher is leased first)
--   seq      position within the priority (FIFO); a requeue takes a new one
--   payload  the item's data as the client encoded it
--   attempts leases taken so far (counted when leased)
--   token    the current (or last) lease token
--   holder   who took the current (or last) lease, if it named one (any text, e.g. "host:pid")
--   error    the last error ('' = none)
-- A lease reads both fields with one HMGET and rewrites only the small lease state, never the
-- payload; a completion drops both with one HDEL. Ids hold no control characters, so "\1" .. id
-- is never an id. inc, seq and token all come from one counter (meta field seq), so none ever
-- repeats.
local BAND = 4398046511104 -- 2^42: (2000 bands) * 2^42 + seq stays below 2^53

-- The field of an item's lease state.
local function ls(id)
  return '\1' .. id
end

-- Both fields of each of ids, interleaved (id1, "\1" .. id1, id2, ...): one HMGET or HDEL
-- reads or drops whole items.
local function item_fields(ids)
  local fields = {}
  for i, id in ipairs(ids) do
    fields[2 * i - 1], fields[2 * i] = id, ls(id)
  end
  return fields
end

-- Parse an item from its value v and lease state st (false/nil when absent); nil without v.
-- The payload is cut out only when asked for (rec_payload) or written back; a new one may be
-- set as r.p.
local function rec_parse(id, v, st)
  if not v then
    return nil
  end
  local inc, prio, seq, at = string.match(v, '^(%d+):(%-?%d+):(%d+):()')
  if not inc then
    error({ err = 'LEASEQ CORRUPT bad record for item ' .. id })
  end
  local r = { inc = tonumber(inc), prio = tonumber(prio), seq = tonumber(seq), v = v, at = at,
              att = 0, tok = 0, h = '', e = '' }
  if st then
    local att, tok, hl, sat = string.match(st, '^%d+:(%d+):(%d+):(%d+):()')
    if not att then
      error({ err = 'LEASEQ CORRUPT bad lease state for item ' .. id })
    end
    hl = tonumber(hl)
    r.att, r.tok = tonumber(att), tonumber(tok)
    r.h, r.e = string.sub(st, sat, sat + hl - 1), string.sub(st, sat + hl)
  end
  return r
end

local function rec_payload(r)
  return r.p or string.sub(r.v, r.at)
end

-- True if value or lease state s (false/nil: none) belongs to incarnation inc (a decimal
-- string; '0' = any).
local function rec_is(s, inc)
  return s and (inc == '0' or string.sub(s, 1, #inc + 1) == inc .. ':') or false
end

local function state_fmt(r)
  return string.format('%d:%d:%d:%d:', r.inc, r.att, r.tok, #r.h) .. r.h .. r.e
end

local function rec_get(id)
  local got = redis.call('HMGET', Q.items, id, ls(id))
  return rec_parse(id, got[1], got[2])
end

-- Write an item's lease state, and its value too when whole (its seq or payload changed).
local function rec_put(id, r, whole)
  if whole then
    redis.call('HSET', Q.items, id,
      string.format('%d:%d:%d:', r.inc, r.prio, r.seq) .. rec_payload(r), ls(id), state_fmt(r))
  else
    redis.call('HSET', Q.items, ls(id), state_fmt(r))
  end
end

local function pending_score(r)
  return string.format('%d', (1000 - r.prio) * BAND + r.seq)
end

-- Reserve n numbers from the queue's counter; returns the first.
local function next_seq(n)
  return redis.call('HINCRBY', Q.meta, 'seq', n) - n + 1
end

-- Forget an item: its value and lease state (not a kept result, which has its own TTL).
local function drop_item(id)
  redis.call('HDEL', Q.items, id, ls(id))
end

local function count(field, n)
  if n ~= 0 then
    redis.call('HINCRBY', Q.meta, field, n)
  end
end

-- State of a recorded item: 1 pending, 2 delayed, 3 leased, 4 dead (0: record without a set).
local function state_of(id)
  if redis.call('ZSCORE', Q.pending, id) then return 1, nil end
  local s = redis.call('ZSCORE', Q.leased, id)
  if s then return 3, s end
  s = redis.call('ZSCORE', Q.delayed, id)
  if s then return 2, s end
  s = redis.call('ZSCORE', Q.dead, id)
  if s then return 4, s end
  return 0, nil
end
