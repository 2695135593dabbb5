-- The fixed keys of one queue, in the order every leaseq script receives them
-- (leaseq.keys.QueueKeys.all_fixed). KEYS[11...] are per-item result keys where a script says so.
local Q = {
  meta = KEYS[1],     -- leaseq:{q}:meta     HASH  seq, counters, clock_offset
  pending = KEYS[2],  -- leaseq:{q}:pending  ZSET  id -> priority band + seq
  delayed = KEYS[3],  -- leaseq:{q}:delayed  ZSET  id -> due (ms)
  leased = KEYS[4],   -- leaseq:{q}:leased   ZSET  id -> lease deadline (ms)
  dead = KEYS[5],     -- leaseq:{q}:dead     ZSET  id -> time of death (ms)
  items = KEYS[6],    -- leaseq:{q}:items    HASH  id -> "inc:prio:seq:attempts:token"
  data = KEYS[7],     -- leaseq:{q}:data     HASH  id -> payload
  errors = KEYS[8],   -- leaseq:{q}:errors   HASH  id -> last error
  acked = KEYS[9],    -- leaseq:{q}:acked    ZSET  finishing token -> time (ms)
  wake = KEYS[10],    -- leaseq:{q}:wake     ZSET  member "w" while ready work exists
}
