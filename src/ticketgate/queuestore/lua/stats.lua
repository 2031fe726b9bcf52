-- Stats: one event as the operator sees it, read-only, in one step.
-- KEYS: 1 wait, 2 admitted, 3 operator overrides (HASH), 4 marks (join times of every 32nd
--       seq, see join.lua), 5 bucket (HASH: tokens, ts, used)
-- ARGV: 1 the process's bucket capacity, 2 its refill per ms (overrides win, as in enter.lua)
-- Returns {waiting, now_ms, admitted 1m, 5m, 15m, covered_ms, head_joined_ms (0 when empty),
-- admissions granted so far, unused released capacity (string),
-- window, capacity, refill, paused, closed, soldout, registered} (fields '' when unset).
local now = now_ms()
local waiting = redis.call('ZCARD', KEYS[1])
local head_ms = 0
if waiting > 0 then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  local mark = redis.call('ZREVRANGEBYSCORE', KEYS[4], head, '-inf', 'LIMIT', 0, 1)[1]
  if mark then
    head_ms = tonumber(string.sub(mark, string.find(mark, ':', 1, true) + 1))
  end
end
local c1, c5, c15, oldest = admissions(KEYS[2], now)
local cfg = redis.call(
  'HMGET', KEYS[3], 'window', 'capacity', 'refill', 'paused', 'closed', 'soldout', 'registered')
local _, _, tokens, used, held, lapsed = frontier(
  KEYS[5], KEYS[1], now, cfg[2], cfg[3], ARGV[1], ARGV[2])
return {
  waiting, now,
  c1, c5, c15, oldest > 0 and now - oldest or 0, head_ms,
  used, string.format('%.17g', tokens),
  cfg[1] or '', cfg[2] or '', cfg[3] or '', cfg[4] or '', cfg[5] or '', cfg[6] or '',
  cfg[7] or '', held, lapsed,
}
