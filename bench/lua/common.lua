-- Shared by every scenario: counts responses outside 2xx, and completions in each second, per
-- thread, and prints one JSON line (BENCH_JSON ...) that bench/run.py reads. Scenario scripts are
-- appended to this file.
local threads = {}
local started

function setup(thread)
  started = started or os.time()
  thread:set("id", #threads)
  table.insert(threads, thread)
end

non2xx = 0
per_second = {}

local function count(status)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function response(status, headers, body)
  count(status)
  local second = os.time()
  per_second[second] = (per_second[second] or 0) + 1
  if on_response then on_response(status, body) end
end

function done(summary, latency, requests)
  local bad, completed = 0, {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    for second, n in pairs(thread:get("per_second")) do completed[second] = (completed[second] or 0) + n end
  end
  -- Whole seconds of the run (its first and last are partial): how many saw no answer at all,
  -- and the fewest answers any of them saw (-1 for a run too short to have a whole second).
  local stalled, fewest = 0, -1
  for second = started + 1, os.time() - 1 do
    local n = completed[second] or 0
    if n == 0 then stalled = stalled + 1 end
    if fewest < 0 or n < fewest then fewest = n end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "stalled_seconds": %d, "fewest_per_second": %d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, stalled, fewest))
end

token = os.getenv("BENCH_TOKEN")
writer_token = os.getenv("BENCH_WRITER_TOKEN")

function bearer(value)
  return {["Authorization"] = "Bearer " .. value, ["Content-Type"] = "application/json"}
end

todo_body = '{"title": "Benchmark todo", "description": "Written by the benchmark", "priority": "high"}'
