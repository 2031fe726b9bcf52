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
  local counts, windows = {0, 0, 0}, {60000, 300000, 900000}
  local first, count = nil, 0
  for i = 3, 1, -1 do
    local window = windows[i]
    -- Widest window first: when a narrower one still holds the wider one's first admission,
    -- it holds all of them, and nothing is asked again (a sale's first minute).
    if first == nil or first < now - window then
      first = redis.call(
        'ZRANGEBYSCORE', admitted, now - window, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]
      if not first then
        break  -- nothing in this window: nothing in the narrower ones either
      end
      first = tonumber(first)
      count = redis.call('ZCOUNT', admitted, now - window, '+inf')
    end
    counts[i] = count
    exact = math.min(exact, first + window)
  end
  return counts[1], counts[2], counts[3], tonumber(oldest), exact
end
