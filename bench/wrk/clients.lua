-- Distinct client addresses for X-Forwarded-For: what the gateway sees behind a trusted load
-- balancer when many fans (not one wrk host) send the traffic. Address i (0-based) is
-- 10.x.y.z counting up from 10.0.0.1, distinct for every i below 2^24 - 1.
local M = {}

function M.ip(i)
  local n = i + 1
  return string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

return M
