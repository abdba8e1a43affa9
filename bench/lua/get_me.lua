-- GET the caller's own account, which every page of the web app asks for first.
function request()
  return wrk.format("GET", "/api/v1/users/me", bearer(token))
end
