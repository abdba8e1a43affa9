-- Half list reads, three in ten feed reads, one in five todo writes (by another user, so the
-- list being read keeps its size).
local n = 0
function request()
  n = n + 1
  local slot = n % 10
  if slot < 5 then
    return wrk.format("GET", "/api/v1/todos?limit=20", bearer(token))
  elseif slot < 8 then
    return wrk.format("GET", "/api/v1/posts?limit=20", bearer(token))
  end
  return wrk.format("POST", "/api/v1/todos", bearer(writer_token), todo_body)
end
