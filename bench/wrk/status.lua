-- GET /api/v1/queue/status cycling through pre-minted waiting tokens, one per line:
-- `wrk ... -s bench/wrk/status.lua URL -- TOKEN_FILE [CLIENTS]`. Each thread starts at its own
-- offset. With CLIENTS, token n is always polled from address n mod CLIENTS (clients.lua) in
-- `X-Forwarded-For`, as one fan polls their own place from their own address behind a trusted
-- load balancer; without it the requests are the foundation's exact bytes.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")
local clients = dofile(here .. "clients.lua")

local requests = {}
local count = 0
local cursor = 0

setup = report.setup

function init(args)
  local path = assert(args[1], "status.lua needs the token file: -- TOKEN_FILE")
  local pool = tonumber(args[2] or "0") or 0
  for line in io.lines(path) do
    if #line > 0 then
      local headers = nil
      if pool > 0 then
        headers = { ["X-Forwarded-For"] = clients.ip(count % pool) }
      end
      count = count + 1
      requests[count] = wrk.format("GET", "/api/v1/queue/status?token=" .. line, headers)
    end
  end
  assert(count > 0, "no tokens in " .. path)
  cursor = ((thread_index or 0) * 7919) % count
end

function request()
  cursor = cursor % count + 1
  return requests[cursor]
end

done = report.done
