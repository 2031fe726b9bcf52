-- Enter: the admission rule (admission.AdmissionPolicy.decide), the grant from the serving
-- frontier, the removal and the reservation arming as one step, so two concurrent enters on
-- one token can never both win and no grant exceeds the released capacity.
-- KEYS: 1 wait, 2 seen, 3 users, 4 admitted, 5 bucket (HASH: tokens, ts, used, lapsed, held,
--       epoch), 6 reservation slot of this seq,
--       7 operator overrides (HASH: window, capacity, refill per second, paused, soldout),
--       8 owners (seq -> user), 9 admitted users (user -> seq: one admission per person
--       and event, whatever token they come with)
-- ARGV: 1 seq, 2 joined_ms, 3 user id, 4 heartbeat TTL ms, 5 reservation TTL ms,
--       6.. AdmissionPolicy.script_args(): 6 admission window, 7 bucket capacity,
--       8 refill per ms, 9.. pairs of (max position, min wait ms), ascending. ARGV 6-8 are
--       the process settings; an operator's override in KEYS[7] wins over them.
-- Returns {outcome, position, now_ms, wait_ms}: 1 granted, 2 not ready, 3 throttled (in the
-- window, not yet within the frontier), 4 already admitted, 5 expired, 6 admissions paused,
-- 7 this user was admitted already (with another token), 8 sold out;
-- wait_ms: until the waiter's turn at the configured rate.
local now = now_ms()
local seq = ARGV[1]

if tonumber(ARGV[2]) < tonumber(redis.call('HGET', KEYS[5], 'epoch') or '0') then
  return {5, 0, now, 0}  -- a token of an earlier life of this event (see join.lua)
end
if redis.call('ZSCORE', KEYS[4], seq) then
  return {4, 0, now, 0}
end
local user = ARGV[3]
if user ~= '' and redis.call('HEXISTS', KEYS[9], user) == 1 then
  return {7, 0, now, 0}
end
local rank = redis.call('ZRANK', KEYS[1], seq)
if not rank then
  return {5, 0, now, 0}
end
local seen = tonumber(redis.call('ZSCORE', KEYS[2], seq) or '0')
if now - seen > tonumber(ARGV[4]) then
  forget(KEYS[1], KEYS[2], KEYS[3], KEYS[8], KEYS[5], seq)
  return {5, 0, now, 0}
end

local position = rank + 1
local cfg = redis.call('HMGET', KEYS[7], 'window', 'capacity', 'refill', 'paused', 'soldout')
-- admission.stopped
if cfg[5] == '1' then
  return {8, position, now, 0}
end
if cfg[4] == '1' then
  return {6, position, now, 0}
end
local window = tonumber(cfg[1]) or tonumber(ARGV[6])
local _, refill, tokens, used, held = frontier(
  KEYS[5], KEYS[1], now, cfg[2], cfg[3], ARGV[7], ARGV[8])

-- AdmissionPolicy.decide
local distance = position - math.min(tokens + held, window)
if distance < 0 then
  distance = 0
end
local frontier_ms = math.ceil(distance / refill)
local need = nil
for i = 9, #ARGV, 2 do
  if position <= tonumber(ARGV[i]) then
    need = tonumber(ARGV[i + 1])
    break
  end
end
if need == nil then
  return {2, position, now, math.max(frontier_ms, 1)}
end
local waited = now - tonumber(ARGV[2])
if position > window or waited < need then
  return {2, position, now, math.max(frontier_ms, need - waited, 1)}
end
if frontier_ms > 0 then
  return {3, position, now, frontier_ms}
end
-- AdmissionPolicy.grant
local holding = rank < held  -- held waiters rank first
if not holding then
  tokens = tokens - 1  -- a held waiter brings the earmark it holds
end
-- 'held' as counted now; forget() takes this waiter's earmark out of it
redis.call('HSET', KEYS[5], 'tokens', string.format('%.17g', tokens), 'ts', now,
  'used', used + 1, 'held', held)
event_changed(KEYS[5])

forget(KEYS[1], KEYS[2], KEYS[3], KEYS[8], KEYS[5], seq, holding)
if user ~= '' then
  redis.call('HSET', KEYS[9], user, seq)
end
redis.call('ZADD', KEYS[4], now, seq)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - 900000))
redis.call('SET', KEYS[6], user, 'PX', ARGV[5])
return {1, position, now, 0}
