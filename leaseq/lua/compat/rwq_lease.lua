-- rwq_lease: lease one item (MeVitae redis-work-queue layout) in one atomic step.
--
-- KEYS[1]  <prefix>:queue        LIST of waiting ids (taken from the right, the oldest end)
-- KEYS[2]  <prefix>:processing   LIST of leased ids (pushed on the left)
-- KEYS[3]  <prefix>:item:<id>    claim mode only: the data key of ARGV[6]
-- KEYS[4]  <prefix>:leased_by_session:<id>   claim mode only: the lease key of ARGV[6]
-- ARGV[1]  item key prefix       "<prefix>:item:"
-- ARGV[2]  lease key prefix      "<prefix>:leased_by_session:"
-- ARGV[3]  lease length, ms (> 0)
-- ARGV[4]  session id (the lease key's value; only its existence matters to any client)
-- ARGV[5]  most ids to pop in this call (bounds the work spent on ghost ids)
-- ARGV[6]  claim id, or "" (pop mode). Claim mode: the caller has just moved this id to
--          processing with BLMOVE (blocking commands cannot run in a script); lease it if it is
--          still there, otherwise go on as in pop mode.
-- ARGV[7]  claim window: how far from the head of processing the claim id is looked for
-- Returns  {1, id, data}  leased: the lease key is set (PX ARGV[3]), the id is in processing
--          {0}             queue is empty
--          {2}             ARGV[5] ids were popped without finding a leasable one: call again
--
-- UNDECLARED KEYS: in pop mode the id is only known after RPOPLPUSH inside the script, so the keys
-- <prefix>:item:<id> and <prefix>:leased_by_session:<id> of popped ids are not in KEYS. The original layout
-- has no hash tag, so this only works on a single node (which the layout needs anyway).
--
-- An id is handed out only if its data key exists (else it is a ghost: its processing entry is
-- dropped) and it holds no live lease (else it is a duplicate of an item some worker holds: its
-- entry is dropped too, unless it is the only entry of that id left in processing, which then
-- keeps the item recoverable by light_clean once the other lease ends).
local queue = KEYS[1]
local processing = KEYS[2]
local item_prefix = ARGV[1]
local lease_prefix = ARGV[2]
local lease_ms = ARGV[3]
local session = ARGV[4]
local max_pops = tonumber(ARGV[5])
local claim = ARGV[6]
local claim_window = tonumber(ARGV[7])

-- `id` sits in processing (at or near its head); lease it and return its data, or tidy up and
-- return nil.
local function try_lease(id)
  local data = redis.call('GET', item_prefix .. id)
  if not data then
    redis.call('LREM', processing, 1, id)
    return nil
  end
  local lease = lease_prefix .. id
  if redis.call('EXISTS', lease) == 1 then
    if redis.call('LPOS', processing, id, 'RANK', 2) then
      redis.call('LREM', processing, 1, id)
    end
    return nil
  end
  redis.call('SET', lease, session, 'PX', lease_ms)
  return data
end

if claim ~= '' then
  -- Not found near the head: a cleaner put it back in queue between our BLMOVE and now (or it
  -- was completed). Do not lease it; pop as usual.
  if redis.call('LPOS', processing, claim, 'MAXLEN', claim_window) then
    local data = try_lease(claim)
    if data then
      return {1, claim, data}
    end
  end
end

for _ = 1, max_pops do
  local id = redis.call('RPOPLPUSH', queue, processing)
  if not id then
    return {0}
  end
  local data = try_lease(id)
  if data then
    return {1, id, data}
  end
end
return {2}
