-- rwq_complete: mark one item complete (MeVitae redis-work-queue layout).
--
-- KEYS[1]  <prefix>:queue        LIST of waiting ids
-- KEYS[2]  <prefix>:processing   LIST of leased ids
-- KEYS[3]  <prefix>:item:<id>    STRING, the item's data; the item exists exactly while it exists
-- KEYS[4]  <prefix>:leased_by_session:<id>   STRING with expiry, the lease
-- ARGV[1]  id
-- Returns  1 to the caller whose DEL removed the data key (the first completer), 0 to everyone
--          else (already completed, or never existed); then nothing is changed.
--
-- The id is removed from processing (every occurrence; O(length of processing), which holds about
-- one id per busy worker). The waiting list is only searched (LREM, O(length of queue)) when the
-- id was not in processing: that is the case of completing an item that was still waiting, or
-- whose lease had expired and a cleaner had put it back. When the id was in processing, a second
-- copy in queue is rare (only a foreign client's racy clean makes one); it is left as a ghost,
-- which rwq_lease drops without handing it out, instead of paying O(queue) on every completion.
local queue = KEYS[1]
local processing = KEYS[2]
local item = KEYS[3]
local lease = KEYS[4]
local id = ARGV[1]

if redis.call('DEL', item) == 0 then
  return 0
end
local removed = redis.call('LREM', processing, 0, id)
redis.call('DEL', lease)
if removed == 0 then
  redis.call('LREM', queue, 0, id)
end
return 1
