-- wrk script: POST /v1/events with unique events (so none is refused as a duplicate).
-- BATCH=1 sends single event objects; BATCH=N sends arrays of N events.
-- Needs KEY (a service key), SUBJECTS and ITEMS (as set up by http-bench.sh).
local batch = tonumber(os.getenv("BATCH") or "1")
local subjects = tonumber(os.getenv("SUBJECTS") or "1000")
local items = tonumber(os.getenv("ITEMS") or "20000")
local key = os.getenv("KEY")
-- Every event of a benchmark gets its own timestamp: BASE is fixed for the whole benchmark
-- and RUN numbers each wrk invocation, so no two events collide across runs.
local base = tonumber(os.getenv("BASE") or tostring(os.time() - 86400))
local run = tonumber(os.getenv("RUN") or "0")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local counter = 0

local function event()
  counter = counter + 1
  local n = run * 1000000000 + tid * 100000000 + counter
  local ms = n % 1000
  local secs = base - math.floor(n / 1000)
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", ms)
  return string.format('{"subject":"bench-user-%d","item":"bench-item-%d","type":"view","timestamp":"%s","context":{"device":"mobile"}}',
    n % subjects, (n * 7919) % items, ts)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  local body
  if batch == 1 then
    body = event()
  else
    local parts = {}
    for i = 1, batch do parts[i] = event() end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, "/v1/events", nil, body)
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 and status ~= 202 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("requests: %d in %.1f s, %.0f req/s, %.0f events/s, non-2xx: %d\n",
    summary.requests, secs, summary.requests / secs, summary.requests * batch / secs,
    summary.errors.status))
  io.write(string.format("latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
