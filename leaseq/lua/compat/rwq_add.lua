-- rwq_add: add one item to a MeVitae redis-work-queue layout, atomically (SET NX + LPUSH).
--
-- KEYS[1]  <prefix>:queue        LIST of waiting ids
-- KEYS[2]  <prefix>:item:<id>    STRING, the item's raw data
-- ARGV[1]  id
-- ARGV[2]  data (raw bytes)
-- Returns  1 if the item was added, 0 if an item with this id already exists (nothing changed).
--
-- The original sends SETNX and LPUSH as two commands; a reader could see the data key with the id
-- in no list (deep_clean would requeue it, then the LPUSH would make a duplicate). Here both
-- happen in one step or not at all.
local queue = KEYS[1]
local item = KEYS[2]
local id = ARGV[1]
local data = ARGV[2]

if not redis.call('SET', item, data, 'NX') then
  return 0
end
redis.call('LPUSH', queue, id)
return 1
