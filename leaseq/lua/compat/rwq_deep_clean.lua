-- rwq_deep_clean: requeue orphaned items (MeVitae redis-work-queue layout).
--
-- KEYS[1]        <prefix>:queue         LIST of waiting ids
-- KEYS[2]        <prefix>:processing    LIST of leased ids
-- KEYS[2+2i-1]   <prefix>:item:<id_i>   data key of ARGV[i]   (i = 1..n)
-- KEYS[2+2i]     <prefix>:leased_by_session:<id_i>  lease key of ARGV[i]
-- ARGV[i]        id_i: a candidate found by the caller's SCAN of <prefix>:item:* that was in
--                neither list when the caller last looked (keep n small: see cost)
-- Returns        the number of ids pushed on queue
--
-- An id is requeued only if, at this instant, its data key exists (as a STRING: the SCAN pattern
-- also matches keys of a queue whose prefix is "<prefix>:item"), it has no lease, and it is in
-- neither list; the check and the LPUSH are one atomic step, so concurrent deep/light cleans and
-- leases can never make it appear twice. Cost: LPOS on both lists, O(queue + processing) per id.
-- All keys are declared: the ids come from the caller.
local queue = KEYS[1]
local processing = KEYS[2]

local pushed = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local item = KEYS[2 * i + 1]
  local lease = KEYS[2 * i + 2]
  if redis.call('TYPE', item).ok == 'string' and redis.call('EXISTS', lease) == 0
      and not redis.call('LPOS', processing, id)
      and not redis.call('LPOS', queue, id) then
    redis.call('LPUSH', queue, id)
    pushed = pushed + 1
  end
end
return pushed
