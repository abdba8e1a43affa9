// Starts ReDoc on /redoc. A file rather than an inline script, so that the page's policy can be
// `script-src 'self'`.
//
// With KEEL_DOCS=admin the schema is served only to an administrator's access token: the page
// asks for an email and password, signs in like any API client, fetches the schema with the
// token, then signs that session out again (ReDoc only reads the schema).
//
// ReDoc writes its styles into <style> elements; the page's policy admits only those carrying the
// nonce the server put on this script's tag for this one response.
"use strict";

(() => {
  const SCHEMA = "/openapi.json";
  const { nonce } = document.currentScript;
  const form = document.getElementById("sign-in");
  const reason = document.getElementById("sign-in-reason");
  const error = document.getElementById("sign-in-error");

  async function problemDetail(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || `The server answered ${response.status}.`;
    } catch {
      return `The server answered ${response.status}.`;
    }
  }

  async function load(token) {
    const headers = { Accept: "application/json" };
    if (token) {
      headers.Authorization = `Bearer ${token}`;
    }
    const response = await fetch(SCHEMA, { headers });
    if (response.ok) {
      form.hidden = true;
      Redoc.init(await response.json(), { nonce }, document.getElementById("redoc"));
      return true;
    }
    form.hidden = false;
    if (response.status === 403) {
      reason.textContent = "This account is not an administrator: sign in as one to read the API reference.";
    } else if (response.status !== 401) {
      error.textContent = await problemDetail(response);
    }
    return false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const fields = new FormData(form);
    const body = new URLSearchParams({ username: fields.get("username"), password: fields.get("password") });
    try {
      const response = await fetch("/api/v1/auth/login", { method: "POST", body });
      if (!response.ok) {
        error.textContent = await problemDetail(response);
        return;
      }
      const tokens = await response.json();
      await load(tokens.access_token);
      await fetch("/api/v1/auth/logout", {
        method: "POST",
        headers: { Authorization: `Bearer ${tokens.access_token}` },
      });
    } catch (failure) {
      error.textContent = String(failure);
    }
  });

  load(null).catch((failure) => {
    form.hidden = false;
    error.textContent = String(failure);
  });
})();
