-- GET /api/v1/queue/status cycling through pre-minted waiting tokens, one per line:
-- `wrk ... -s bench/wrk/status.lua URL -- TOKEN_FILE`. Each thread starts at its own offset.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")

local next_thread = 0
local requests = {}
local count = 0
local cursor = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  local path = assert(args[1], "status.lua needs the token file: -- TOKEN_FILE")
  for line in io.lines(path) do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("GET", "/api/v1/queue/status?token=" .. line)
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
