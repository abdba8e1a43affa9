-- Signs in as each seeded user in turn (BENCH_USERS of them, all with BENCH_PASSWORD).
local users = tonumber(os.getenv("BENCH_USERS"))
local password = os.getenv("BENCH_PASSWORD")
local n = 0
local form = {["Content-Type"] = "application/x-www-form-urlencoded"}
function init(args)
  n = id * 7919
end
function request()
  n = n + 1
  local body = "username=user" .. (n % users) .. "%40bench.example&password=" .. password
  return wrk.format("POST", "/api/v1/auth/login", form, body)
end
