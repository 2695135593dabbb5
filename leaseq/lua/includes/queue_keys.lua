-- The fixed keys of one queue, in the order every leaseq script receives them
-- (leaseq.keys.QueueKeys.all_fixed). KEYS[9...] are per-item result keys where a script says so.
-- bind_queue(KEYS) fills Q at the start of every call.
local Q = {}

local function bind_queue(keys)
  Q.meta = keys[1]     -- leaseq:{q}:meta     HASH  seq, counters, due, clock_offset
  Q.pending = keys[2]  -- leaseq:{q}:pending  ZSET  id -> priority band + seq
  Q.delayed = keys[3]  -- leaseq:{q}:delayed  ZSET  id -> due (ms)
  Q.leased = keys[4]   -- leaseq:{q}:leased   ZSET  id -> lease deadline (ms)
  Q.dead = keys[5]     -- leaseq:{q}:dead     ZSET  id -> time of death (ms)
  Q.items = keys[6]    -- leaseq:{q}:items    HASH  id -> record, error and payload
  Q.acked = keys[7]    -- leaseq:{q}:acked    ZSET  finishing token -> time (ms)
  Q.wake = keys[8]     -- leaseq:{q}:wake     ZSET  member "w" while ready work exists
  Q.due = nil          -- the meta field due, once now_ms() has read it (includes/clock.lua)
end
