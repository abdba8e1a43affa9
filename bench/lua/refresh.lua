-- Every refresh token is good once, so each connection must use the token its last answer
-- carried. A thread holds a queue of tokens (one per connection, from BENCH_TOKEN_FILE): a
-- request takes one, its answer puts the new one back. wrk reads a connection's answer before
-- writing its next request, so the queue never runs dry while every answer is a 200.
local queue = {}
function init(args)
  local index = 0
  for line in io.lines(os.getenv("BENCH_TOKEN_FILE")) do
    if index % tonumber(os.getenv("BENCH_THREADS")) == id then table.insert(queue, line) end
    index = index + 1
  end
end
function request()
  local refresh_token = table.remove(queue, 1) or "exhausted"
  return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token": "' .. refresh_token .. '"}')
end
function on_response(status, body)
  local refresh_token = body:match('"refresh_token":%s*"([^"]+)"')
  if refresh_token then table.insert(queue, refresh_token) end
end
