function request()
  return wrk.format("POST", "/api/v1/todos", bearer(writer_token), todo_body)
end
