-- POST /api/v1/queue/join as an anonymous user: `wrk ... -s bench/wrk/join.lua URL -- EVENT_ID`.
-- Also drives the ceiling app, so both see the same request bytes. Static on purpose (no
-- `request` function): wrk sends one prebuilt request without calling Lua, as in the
-- foundation's figures; join_clients.lua is the variant with per-client addresses.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")

setup = report.setup

function init(args)
  local event_id = args[1] or "bench-join"
  wrk.method = "POST"
  wrk.path = "/api/v1/queue/join"
  wrk.body = string.format('{"event_id":"%s"}', event_id)
  wrk.headers["Content-Type"] = "application/json"
end

done = report.done
