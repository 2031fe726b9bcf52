-- Sweep: remove up to ARGV[2] waiters unseen for the heartbeat TTL (ARGV[1] ms), oldest
-- first, so abandoned users never hold the head of the queue (a held earmark of one of them
-- lapses); then hold the earmarks of the waiters within the frontier unseen for the entry
-- grace (admission.py): each moves to the front with its score lowered by HELD_OFFSET and
-- takes its earmark out of the bucket, which refills for the next places. Bounded work.
-- KEYS: 1 wait, 2 seen, 3 users, 4 owners (seq -> user), 5 bucket, 6 operator overrides
-- ARGV: 1 heartbeat TTL ms, 2 batch, 3 entry grace ms, 4 HELD_OFFSET,
--       5.. AdmissionPolicy.script_args(): 5 admission window, 6 bucket capacity,
--       7 refill per ms (the min-wait pairs after them are not needed here)
-- Returns how many ghosts were removed.
local now = now_ms()
local ghosts = redis.call(
  'ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[1])), 'LIMIT', 0, ARGV[2])
local lapsing = 0
for i = 1, #ghosts do
  local score = redis.call('ZSCORE', KEYS[1], ghosts[i])
  local holding = score and tonumber(score) < 0
  if holding then
    lapsing = lapsing + 1
  end
  forget(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ghosts[i], holding)
end

local cfg = redis.call('HMGET', KEYS[6], 'window', 'capacity', 'refill', 'paused', 'soldout')
local _, _, tokens, used, held, lapsed = frontier(
  KEYS[5], KEYS[1], now, cfg[2], cfg[3], ARGV[6], ARGV[7])
local moved = 0
-- admission.stopped: while nobody may enter (paused or sold out), nobody is late
if cfg[4] ~= '1' and cfg[5] ~= '1' then
  -- AdmissionPolicy.door
  local door = math.min(math.floor(tokens), (tonumber(cfg[1]) or tonumber(ARGV[5])) - held)
  if door > 0 then
    local offset = tonumber(ARGV[4])
    for _, seq in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], 0, '+inf', 'LIMIT', 0, door)) do
      local seen = tonumber(redis.call('ZSCORE', KEYS[2], seq) or '0')
      if now - seen > tonumber(ARGV[3]) then
        redis.call('ZADD', KEYS[1], string.format('%.17g', tonumber(seq) - offset), seq)
        moved = moved + 1
      end
    end
  end
end
if moved > 0 or lapsing > 0 then  -- AdmissionPolicy.hold
  redis.call('HSET', KEYS[5], 'tokens', string.format('%.17g', tokens - moved), 'ts', now,
    'used', used, 'lapsed', lapsed + lapsing, 'held', held + moved)
  event_changed(KEYS[5])
end
return #ghosts
