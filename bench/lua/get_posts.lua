function request()
  return wrk.format("GET", "/api/v1/posts?limit=20", bearer(token))
end
