-- Status: the waiter's place, a heartbeat refresh and the event's serving frontier (read, not
-- written: refilling is path-independent, see enter.lua), and the admission counts for the
-- ETA unless the caller's copy of them is still exact (counts.lua): every fan polling one
-- event would otherwise count the same admissions again.
-- KEYS: 1 wait, 2 seen, 3 admitted, 4 operator overrides (HASH), 5 bucket (HASH, with the
--       held count and the epoch: frontier.lua), 6 users, 7 owners (seq -> user)
-- ARGV: 1 seq, 2 the token's joined_ms ('' to skip the epoch check); the caller's admission
--       counts: 3 the admissions granted so far when they were read (-1: it has none), 4 the
--       ms they were read at, 5 the last ms they stay exact at (a clock set back also counts
--       again)
-- The process's constants are not arguments (packed and parsed on every call) but Lua
-- locals RedisQueueStore puts before this source (status_constants): HEARTBEAT_TTL_MS and
-- AdmissionPolicy.script_args() without the min-wait pairs: WINDOW, CAPACITY, REFILL_PER_MS.
-- Returns {state, position, now_ms, window, the operator's refill per second ('' when not
-- overridden: the caller's policy has it; a string: Lua numbers would be truncated),
-- capacity, unused released capacity (string), admissions granted so far, held and lapsed
-- earmarks, event flags (1 paused + 2 closed + 4 sold out)}, followed, when the caller's
-- counts are not exact now, by admissions() of counts.lua (admitted 1m, 5m, 15m, oldest
-- admission ms or 0, the last ms they stay exact at);
-- state 1 waiting, 2 admitted, 3 expired.
local now = now_ms()
local seq = ARGV[1]
local state, position = 3, 0

local cfg = redis.call(
  'HMGET', KEYS[4], 'window', 'refill', 'paused', 'capacity', 'closed', 'soldout')
local capacity, _, tokens, used, held, lapsed, epoch = frontier(
  KEYS[5], KEYS[1], now, cfg[4], cfg[2], CAPACITY, REFILL_PER_MS)

-- A token older than the event's epoch names a place of an earlier life: expired.
local current = ARGV[2] == '' or tonumber(ARGV[2]) >= epoch
local rank = current and redis.call('ZRANK', KEYS[1], seq)
if rank then
  local seen = tonumber(redis.call('ZSCORE', KEYS[2], seq) or '0')
  if now - seen > HEARTBEAT_TTL_MS then
    -- held waiters rank first: this one holds an earmark when it ranks among them
    forget(KEYS[1], KEYS[2], KEYS[6], KEYS[7], KEYS[5], seq, rank < held)
    if rank < held then
      held = held - 1
    end
  else
    redis.call('ZADD', KEYS[2], now, seq)
    state, position = 1, rank + 1
  end
elseif current and redis.call('ZSCORE', KEYS[3], seq) then
  state = 2
end

local reply = {
  state, position, now,
  tonumber(cfg[1]) or WINDOW,
  cfg[2] or '',
  capacity,
  string.format('%.17g', tokens),
  used, held, lapsed,
  (cfg[3] == '1' and 1 or 0) + (cfg[5] == '1' and 2 or 0) + (cfg[6] == '1' and 4 or 0),
}
if used ~= tonumber(ARGV[3]) or now < tonumber(ARGV[4]) or now > tonumber(ARGV[5]) then
  reply[12], reply[13], reply[14], reply[15], reply[16] = admissions(KEYS[3], now)
end
return reply
