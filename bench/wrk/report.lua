-- Shared by the scenario scripts: one machine-readable line at the end of a run, so the
-- harness reads exact counts and percentiles instead of wrk's rounded human summary.
--
-- With TGBENCH_STATUS_COUNTS=1 in wrk's environment every response's status is counted
-- as well (the harness does that in the unmeasured warm-up only: a `response` hook makes
-- wrk parse every header into Lua, which would cost the measured run client CPU). Scripts
-- use `setup = report.setup` (or call it from their own setup) so `done` can read the
-- per-thread counts; it also hands each thread its `thread_index`.
local M = {}
local threads = {}
local counting = os.getenv("TGBENCH_STATUS_COUNTS") == "1"

function M.setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

if counting then
  tg_status_counts = {}
  -- Defined at load time: wrk decides from the main script state whether to parse responses.
  function response(status)
    tg_status_counts[status] = (tg_status_counts[status] or 0) + 1
  end
end

local function status_counts()
  if not counting then
    return ""
  end
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("tg_status_counts")
    if type(counts) == "table" then
      for status, n in pairs(counts) do
        total[status] = (total[status] or 0) + n
      end
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  return ',"status_counts":{' .. table.concat(parts, ",") .. "}"
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'TGBENCH {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), status_counts()))
end

return M
