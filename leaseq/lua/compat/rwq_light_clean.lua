-- rwq_light_clean: judge a chunk of ids read from processing (MeVitae redis-work-queue layout).
--
-- KEYS[1]        <prefix>:queue         LIST of waiting ids
-- KEYS[2]        <prefix>:processing    LIST of leased ids
-- KEYS[2+2i-1]   <prefix>:item:<id_i>   data key of ARGV[1+i]   (i = 1..n)
-- KEYS[2+2i]     <prefix>:leased_by_session:<id_i>  lease key of ARGV[1+i]
-- ARGV[1]        "1" = reclaim (second look), "0" = only report (first look)
-- ARGV[1+i]      id_i, as read from processing by the caller (LRANGE window, at most ~hundreds)
-- Returns        one code per id:
--                0  holds a lease: untouched
--                1  requeued: every occurrence removed from processing, pushed once on queue
--                2  ghost (no data, no lease): every occurrence removed from processing
--                3  report mode: no lease, has data (a candidate; the caller looks again later)
--                4  no longer in processing (someone else moved or completed it): untouched
--
-- Exactly once: the requeue happens only when LREM removed at least one occurrence, in the same
-- atomic step, so two cleaners racing (or an id held twice in processing) give one queue entry.
-- All keys are declared: the ids come from the caller.
local queue = KEYS[1]
local processing = KEYS[2]
local reclaim = ARGV[1] == '1'

local codes = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local item = KEYS[2 * i - 1]
  local lease = KEYS[2 * i]
  local code
  if redis.call('EXISTS', lease) == 1 then
    code = 0
  elseif redis.call('EXISTS', item) == 0 then
    if redis.call('LREM', processing, 0, id) > 0 then
      code = 2
    else
      code = 4
    end
  elseif not reclaim then
    code = 3
  elseif redis.call('LREM', processing, 0, id) > 0 then
    redis.call('LPUSH', queue, id)
    code = 1
  else
    code = 4
  end
  codes[#codes + 1] = code
end
return codes
