-- GET one path (BENCH_PATH) with the bearer token (BENCH_TOKEN): bench/scale_wrk.py's read scenarios.
local path = os.getenv("BENCH_PATH")
function request()
  return wrk.format("GET", path, bearer(token))
end
