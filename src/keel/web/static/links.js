// The pages that email links open: verify an address, reset a password, ask for a reset link.
// They call the public API like any client; the token comes from the link and goes only to the API.

const API = "/api/v1/auth";

function show(message) {
  document.getElementById("status").textContent = message;
}

async function post(path, body) {
  const response = await fetch(`${API}/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  return { ok: response.ok, data };
}

function problemText(data, fallback) {
  if (data && Array.isArray(data.errors) && data.errors.length) return data.errors.map((e) => e.msg).join(" ");
  return (data && data.detail) || fallback;
}

// Read the token once and drop it from the address bar and history.
const token = new URLSearchParams(window.location.search).get("token");
if (token) window.history.replaceState(null, "", window.location.pathname);

const page = document.querySelector("main")?.dataset.page;

if (page === "verify-email") {
  if (!token) {
    show("This link has no token. Open the link from your email again.");
  } else {
    const { ok, data } = await post("verify-email/confirm", { token });
    show(ok ? `Thank you, ${data.username}: your email address is verified.` : problemText(data, "This link did not work."));
  }
}

if (page === "reset-password") {
  const form = document.getElementById("form");
  if (!token) show("This link has no token. Open the link from your email again.");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(form));
    const { ok, data } = await post("password-reset/confirm", { token, ...fields });
    if (ok) {
      form.hidden = true;
      show("Your password is changed. Every session was signed out; sign in with the new password.");
    } else {
      show(problemText(data, "The password could not be changed."));
    }
  });
}

if (page === "forgot-password") {
  const form = document.getElementById("form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { ok, data } = await post("password-reset/request", Object.fromEntries(new FormData(form)));
    show(ok ? data.detail : problemText(data, "The request could not be sent."));
  });
}
