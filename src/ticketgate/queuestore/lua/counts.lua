-- The admission counts the ETA measures the release rate from (eta.py), prepended to status
-- and stats.lua. admissions(admitted, now): admissions (the admitted ZSET, scored by grant
-- time) in the last 1, 5 and 15 minutes (eta.WINDOWS_MS), the oldest one kept (0 when none),
-- and the last ms at which all of these stay exact: the next admission changes them (and the
-- bucket's count of admissions granted, which status callers compare), and otherwise only
-- the oldest admission inside each window dropping out of it does. So a status caller may
-- keep them and have status.lua skip this whole step while they are exact.
local function admissions(admitted, now)
  local exact = now + 900000
  local oldest = redis.call('ZRANGE', admitted, 0, 0, 'WITHSCORES')[2]
  if not oldest then
    return 0, 0, 0, 0, exact
  end
  local counts = {0, 0, 0}
  for i, window in ipairs({60000, 300000, 900000}) do
    local first = redis.call(
      'ZRANGEBYSCORE', admitted, now - window, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]
    if first then
      counts[i] = redis.call('ZCOUNT', admitted, now - window, '+inf')
      exact = math.min(exact, tonumber(first) + window)
    end
  end
  return counts[1], counts[2], counts[3], tonumber(oldest), exact
end
