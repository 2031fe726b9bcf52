-- The serving frontier (admission.py), prepended to enter, status and stats.lua.
-- Returns the event's effective capacity and refill per ms (an operator's override in the
-- cfg HASH values wins over the process settings), the unused released capacity at `now`
-- (refilled fractionally, at most `capacity`: admission.refilled) and the admissions so far.
local function frontier(bucket_key, now, cfg_capacity, cfg_refill_per_sec, capacity, refill)
  capacity = tonumber(cfg_capacity) or tonumber(capacity)
  refill = tonumber(refill)
  if cfg_refill_per_sec then
    refill = tonumber(cfg_refill_per_sec) / 1000
  end
  local bucket = redis.call('HMGET', bucket_key, 'tokens', 'ts', 'used')
  local tokens = tonumber(bucket[1]) or capacity
  local ts = tonumber(bucket[2]) or now
  if now > ts then
    tokens = tokens + (now - ts) * refill
  end
  return capacity, refill, math.min(capacity, tokens), tonumber(bucket[3]) or 0
end
