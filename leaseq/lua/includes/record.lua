-- Item records: HASH items, id -> "inc:prio:seq:attempts:token" or "...:token:holder".
--   inc      incarnation, fixed when the id is added (a re-added id gets a new one)
--   prio     priority, -1000..1000 (higher is leased first)
--   seq      position within the priority (FIFO); a requeue takes a new one
--   attempts leases taken so far (counted when leased)
--   token    the current (or last) lease token; 0 before the first lease
--   holder   who took the current (or last) lease, if the lease named one (any text, e.g.
--            "host:pid"); set with the token, so it costs no call of its own
-- inc, seq and token all come from one counter (meta field seq), so none ever repeats.
local BAND = 4398046511104 -- 2^42: (2000 bands) * 2^42 + seq stays below 2^53

-- Parse a record (s is false/nil when the id has none).
local function rec_parse(id, s)
  if not s then
    return nil
  end
  local inc, prio, seq, att, tok, holder =
    string.match(s, '^(%d+):(%-?%d+):(%d+):(%d+):(%d+):?(.*)$')
  if not inc then
    error({ err = 'LEASEQ CORRUPT bad record for item ' .. id })
  end
  return { inc = tonumber(inc), prio = tonumber(prio), seq = tonumber(seq),
           att = tonumber(att), tok = tonumber(tok), h = holder }
end

-- The part of a record a lease keeps ("inc:prio:seq:"), the incarnation (a decimal string) and
-- the attempts (a string): what take needs, without parsing the whole record.
local function rec_head(id, s)
  local head, inc, att = string.match(s, '^((%d+):%-?%d+:%d+:)(%d+):')
  if not head then
    error({ err = 'LEASEQ CORRUPT bad record for item ' .. id })
  end
  return head, inc, att
end

-- True if record s (false/nil: none) belongs to incarnation inc (a decimal string; '0' = any).
local function rec_is(s, inc)
  return s and (inc == '0' or string.sub(s, 1, #inc + 1) == inc .. ':') or false
end

local function rec_fmt(r)
  local s = string.format('%d:%d:%d:%d:%d', r.inc, r.prio, r.seq, r.att, r.tok)
  if r.h ~= nil and r.h ~= '' then
    return s .. ':' .. r.h
  end
  return s
end

local function rec_get(id)
  return rec_parse(id, redis.call('HGET', Q.items, id))
end

local function rec_put(id, r)
  redis.call('HSET', Q.items, id, rec_fmt(r))
end

local function pending_score(r)
  return string.format('%d', (1000 - r.prio) * BAND + r.seq)
end

-- Reserve n numbers from the queue's counter; returns the first.
local function next_seq(n)
  return redis.call('HINCRBY', Q.meta, 'seq', n) - n + 1
end

-- Forget an item's record, payload and error (not a kept result, which has its own TTL).
local function drop_item(id)
  redis.call('HDEL', Q.items, id)
  redis.call('HDEL', Q.data, id)
  redis.call('HDEL', Q.errors, id)
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
