-- Status: the waiter's place, a heartbeat refresh, and what the caller needs of the event to
-- compute its frontier and ETA (admission.refilled, in the gateway: refilling is
-- path-independent, see enter.lua). The event's state is the same for every fan polling it,
-- so it is sent only when the caller's copy is out of date: the operator overrides and the
-- bucket's tokens, ts and lapsed unless the caller's version is the current one
-- (version.lua), the admission counts for the ETA unless the caller's are still exact
-- (counts.lua). The held count, the admissions granted and the epoch are read every time.
-- KEYS: 1 wait, 2 seen, 3 admitted, 4 operator overrides (HASH), 5 bucket (HASH, with the
--       held count, the epoch: join.lua, and the version), 6 users, 7 owners (seq -> user)
-- ARGV: the caller's admission counts: 1 the admissions granted so far when they were read
--       (-1: it has none), 2 the ms they were read at, 3 the last ms they stay exact at (a
--       clock set back also counts again); 4 the version of the caller's copy of the event
--       ('' when it has none); then 5 seq, 6 the token's joined_ms ('' to skip the epoch
--       check). The first four are the same for every fan of the event until the counts or
--       the copy change, so the caller packs them once with the keys (Script.head).
-- HEARTBEAT_TTL_MS is not an argument (packed and parsed on every call) but a Lua local
-- RedisQueueStore puts before this source (status_constants).
-- Returns {state, position, now_ms, held earmarks, admissions granted so far}, then, when the
-- caller's copy of the event is out of date, the event: the six operator overrides in
-- OVERRIDE_FIELDS order (model.py: window, capacity, refill, paused, closed, soldout; ''
-- when unset: the caller applies them to its policy, AdmissionPolicy.of), the bucket's
-- unused capacity as of its ts (the stored string, '' while the bucket was never written:
-- full), ts, lapsed earmarks and the version ('' when the copy may not be kept: no version
-- yet, or an event from before the held count); then, when the caller's counts are not
-- exact now, admissions() of counts.lua (admitted 1m, 5m, 15m, oldest admission ms or 0,
-- the last ms they stay exact at). State 1 waiting, 2 admitted, 3 expired.
local now = now_ms()
local seq = ARGV[5]
local state, position = 3, 0

local mark = redis.call('HMGET', KEYS[5], 'v', 'held', 'used', 'epoch')
local version, held = mark[1], tonumber(mark[2])
local used, epoch = tonumber(mark[3]) or 0, tonumber(mark[4]) or 0
local event = nil
if not (version and held and version == ARGV[4]) then
  local cfg = redis.call(
    'HMGET', KEYS[4], 'window', 'capacity', 'refill', 'paused', 'closed', 'soldout')
  local bucket = redis.call('HMGET', KEYS[5], 'tokens', 'ts', 'lapsed')
  event = {
    cfg[1] or '', cfg[2] or '', cfg[3] or '', cfg[4] or '', cfg[5] or '', cfg[6] or '',
    bucket[1] or '',
    tonumber(bucket[2]) or 0,
    tonumber(bucket[3]) or 0,
    -- without the count the held waiters are counted in the ZSET, which has no version
    held and version or '',
  }
  held = held or redis.call('ZCOUNT', KEYS[1], '-inf', '(0')
end

-- A token older than the event's epoch names a place of an earlier life: expired.
local current = ARGV[6] == '' or tonumber(ARGV[6]) >= epoch
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

local reply = {state, position, now, held, used}
if event then
  for i = 1, #event do
    reply[5 + i] = event[i]
  end
end
if used ~= tonumber(ARGV[1]) or now < tonumber(ARGV[2]) or now > tonumber(ARGV[3]) then
  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5] = admissions(KEYS[3], now)
end
return reply
