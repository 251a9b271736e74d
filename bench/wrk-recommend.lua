-- wrk script: GET /v1/subjects/user-NNNN/recommendations?n=10 for random demo subjects
-- (80% of them consent, so most requests read and decrypt a history and are explained).
-- Needs KEY (a service or admin key) and SUBJECTS (default 1000).
local key = os.getenv("KEY")
local subjects = tonumber(os.getenv("SUBJECTS") or "1000")
local counter = 0

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. key
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  local u = math.random(1, subjects)
  return wrk.format("GET", string.format("/v1/subjects/user-%04d/recommendations?n=10", u))
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("requests: %d in %.1f s, %.0f req/s, non-2xx: %d\n",
    summary.requests, secs, summary.requests / secs, summary.errors.status))
  io.write(string.format("latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
