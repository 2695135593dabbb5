-- The dead letters a dead_requeue / dead_purge call names: ARGV "ids" id..., or "all" limit
-- (the oldest first).
local function dead_selection(args)
  if args[1] == 'all' then
    return redis.call('ZRANGE', Q.dead, 0, tonumber(args[2]) - 1)
  end
  local ids = {}
  for i = 2, #args do
    ids[#ids + 1] = args[i]
  end
  return ids
end
