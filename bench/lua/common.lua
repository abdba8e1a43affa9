-- Shared by every scenario: counts responses outside 2xx per thread and prints one JSON line
-- (BENCH_JSON ...) that bench/run.py reads. Scenario scripts are appended to this file.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

non2xx = 0

local function count(status)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function response(status, headers, body)
  count(status)
  if on_response then on_response(status, body) end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

token = os.getenv("BENCH_TOKEN")
writer_token = os.getenv("BENCH_WRITER_TOKEN")

function bearer(value)
  return {["Authorization"] = "Bearer " .. value, ["Content-Type"] = "application/json"}
end

todo_body = '{"title": "Benchmark todo", "description": "Written by the benchmark", "priority": "high"}'
