-- POST /api/v1/queue/join as anonymous fans from many addresses:
-- `wrk ... -s bench/wrk/join_clients.lua URL -- EVENT_ID CLIENTS THREADS`.
-- The same request as join.lua plus `X-Forwarded-For: <address>`, as a trusted load balancer
-- adds it. Thread t sends for addresses t, t + THREADS, t + 2 * THREADS, ... (clients.lua), so
-- every address belongs to one thread and each fan's rate is the total rate / CLIENTS.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")
local clients = dofile(here .. "clients.lua")

local requests = {}
local count = 0
local cursor = 0

setup = report.setup

function init(args)
  local event_id = assert(args[1], "join_clients.lua needs -- EVENT_ID CLIENTS THREADS")
  local pool = assert(tonumber(args[2]), "join_clients.lua needs the number of CLIENTS")
  local threads = assert(tonumber(args[3]), "join_clients.lua needs the number of THREADS")
  local body = string.format('{"event_id":"%s"}', event_id)
  for i = thread_index or 0, pool - 1, threads do
    local headers = { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = clients.ip(i) }
    count = count + 1
    requests[count] = wrk.format("POST", "/api/v1/queue/join", headers, body)
  end
  assert(count > 0, "fewer CLIENTS than THREADS")
end

function request()
  cursor = cursor % count + 1
  return requests[cursor]
end

done = report.done
