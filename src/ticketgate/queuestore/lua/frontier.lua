-- The serving frontier (AdmissionPolicy.frontier), prepended to enter, stats and sweep.lua
-- (status.lua sends the bucket and the gateway refills it: admission.refilled).
-- Returns the event's effective capacity and refill per ms (an operator's override in the
-- cfg HASH values wins over the process settings), the unused released capacity in the
-- bucket at `now` (refilled fractionally, at most `capacity`: admission.refilled), the
-- admissions so far, the held earmarks and the lapsed ones, and the event's epoch (ms of
-- the first join of its current life, 0 if unknown: join.lua). All are fields of the bucket
-- HASH, one read: 'held' counts the waiters ranked first with a negative score (kept exact
-- by forget() in waiter.lua and by the grants and holds); an event from before that field
-- has them counted in the ZSET.
local function frontier(bucket_key, wait_key, now, cfg_capacity, cfg_refill_per_sec,
                        capacity, refill)
  capacity = tonumber(cfg_capacity) or tonumber(capacity)
  refill = tonumber(refill)
  if cfg_refill_per_sec then
    refill = tonumber(cfg_refill_per_sec) / 1000
  end
  local bucket = redis.call('HMGET', bucket_key, 'tokens', 'ts', 'used', 'lapsed', 'held', 'epoch')
  local tokens = tonumber(bucket[1]) or capacity
  local ts = tonumber(bucket[2]) or now
  if now > ts then
    tokens = tokens + (now - ts) * refill
  end
  local held = tonumber(bucket[5]) or redis.call('ZCOUNT', wait_key, '-inf', '(0')
  return capacity, refill, math.min(capacity, tokens), tonumber(bucket[3]) or 0, held,
    tonumber(bucket[4]) or 0, tonumber(bucket[6]) or 0
end
