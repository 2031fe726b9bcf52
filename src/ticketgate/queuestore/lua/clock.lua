-- The store's clock, prepended (Script.load prelude) to every script that reads the time:
-- now_ms() is Redis TIME in milliseconds, so pods with skewed clocks still agree on order
-- and ages. RedisQueueStore(clock_lua=...) replaces this definition (the contract tests
-- run both stores on one clock they move).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
