-- POST /api/v1/queue/join as distinct signed-in fans:
-- `wrk ... -s bench/wrk/join_jwt.lua URL -- TOKEN_FILE EVENT_PREFIX THREADS CLIENTS`.
--
-- TOKEN_FILE holds one RS256 access token per user (line n is user usr_bench_<n>). A user may
-- join an event once (a second join is 409 DUPLICATE_REQUEST, which wrk counts as an error),
-- so thread t owns the users on lines t, t + THREADS, ... and sends each of them once per pass;
-- every pass goes to a fresh event `<EVENT_PREFIX>-<pass as 6 digits>`. No (user, event) pair
-- repeats within one wrk run; the harness gives the warm-up and the measured run different
-- prefixes. Each user also comes from its own X-Forwarded-For address (line n mod CLIENTS);
-- the rate limiter keys a signed-in caller by user id, so that header is only realism.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")
local clients = dofile(here .. "clients.lua")

local PATH = "/api/v1/queue/join"
local heads = {}
local count = 0
local cursor = 0
local pass = 0
local prefix = ""
local body = ""

setup = report.setup

local function body_for(n)
  -- Fixed width, so every pass has the same Content-Length as the prebuilt heads.
  assert(n < 1000000, "more than a million passes over the users")
  return string.format('{"event_id":"%s-%06d"}', prefix, n)
end

function init(args)
  local path = assert(args[1], "join_jwt.lua needs -- TOKEN_FILE EVENT_PREFIX THREADS CLIENTS")
  prefix = assert(args[2], "join_jwt.lua needs the EVENT_PREFIX")
  local threads = assert(tonumber(args[3]), "join_jwt.lua needs the number of THREADS")
  local pool = tonumber(args[4] or "0") or 0
  local me = thread_index or 0
  body = body_for(0)
  local n = 0
  for line in io.lines(path) do
    if #line > 0 then
      if n % threads == me then
        local headers = {
          ["Content-Type"] = "application/json",
          ["Authorization"] = "Bearer " .. line,
        }
        if pool > 0 then
          headers["X-Forwarded-For"] = clients.ip(n % pool)
        end
        local full = wrk.format("POST", PATH, headers, body)
        count = count + 1
        heads[count] = full:sub(1, #full - #body)
      end
      n = n + 1
    end
  end
  assert(count > 0, "fewer users in " .. path .. " than THREADS")
end

function request()
  cursor = cursor + 1
  if cursor > count then
    cursor = 1
    pass = pass + 1
    body = body_for(pass)
  end
  return heads[cursor] .. body
end

done = report.done
