-- The event's version (prepended to join, enter, sweep and configure.lua): the bucket HASH's
-- field 'v' changes with every write of what status.lua lets a caller keep (the operator
-- overrides and the bucket's tokens, ts and lapsed), so a status caller holding the version
-- it last read knows its copy is still exact and status skips reading it again (every fan
-- polling one event would otherwise read the same event state). held, used and the epoch
-- are read on every status call and need no bump. A new counter (the HASH was lost or never
-- had one) starts from Redis TIME in µs, so a caller's version from an earlier life of the
-- HASH is never met again.
local function event_changed(bucket)
  if redis.call('HINCRBY', bucket, 'v', 1) == 1 then
    local t = redis.call('TIME')
    redis.call('HSET', bucket, 'v', t[1] .. string.format('%06d', tonumber(t[2])))
  end
end
