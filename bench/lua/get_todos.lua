function request()
  return wrk.format("GET", "/api/v1/todos?limit=20", bearer(token))
end
