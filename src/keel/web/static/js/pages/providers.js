// Signing in with another provider (Google, GitHub, any OpenID Connect provider): the buttons on
// the sign-in and sign-up pages, what the provider's way back says (/signin?error=…, /signin/mfa),
// the mailed link that confirms a link (/link-identity), and the account page's connected accounts.

import { ApiError, expectSession, request } from "../api.js";
import { button, h, replace, time, toast } from "../dom.js";
import { inlineError } from "../forms.js";
import { CANCELLED, withReauth } from "../reauth.js";
import { secondStep } from "./second-step.js";

const TRY_AGAIN = "Please try again, or sign in another way.";

/** What each `error` code of the provider's way back means to the person. */
const ERRORS = {
  access_denied: "You cancelled at the provider, so you are not signed in.",
  state_mismatch: `That sign-in expired or was started in another browser. ${TRY_AGAIN}`,
  provider_error: `The provider could not be reached or did not answer as expected. ${TRY_AGAIN}`,
  provider_unavailable: `The provider could not be reached just now. ${TRY_AGAIN}`,
  rate_limited: "Too many sign-ins were started from your network just now. Wait a minute, then try again.",
  invalid_id_token: `The provider's answer could not be verified. ${TRY_AGAIN}`,
  email_missing: "The provider did not share an email address, so no account could be opened. Allow it to share your email, or sign up with a password.",
  email_not_verified: "The provider has not verified your email address. Verify it there first, or sign in another way.",
  email_taken: "An account with this email address already exists. Sign in to it with your password or an emailed code, then connect the provider from your account page.",
  account_inactive: "This account is deactivated. Contact an administrator.",
  link_confirmation_sent: "An account with this email address already exists. We emailed it a link: open it to let this provider sign in to that account, then sign in again.",
  identity_in_use: "That provider account already signs in to another Keel account. Disconnect it there first.",
  reauthentication_required: "Connecting took too long for a recent sign-in. Please connect again and confirm it's you.",
};

export function providerError(code) {
  return ERRORS[code] || `Signing in with the provider did not work. ${TRY_AGAIN}`;
}

/** The providers configured here; none if they cannot be read (the page works without them). */
export async function listProviders() {
  try {
    return await request("GET", "/auth/providers");
  } catch {
    return [];
  }
}

/** "Continue with …" links for the sign-in and sign-up pages, to land on `next`; none when no provider is configured. */
export async function providerLinks(next) {
  const providers = await listProviders();
  return providers.map((provider) => {
    const href = `/api/v1/auth/oidc/${encodeURIComponent(provider.id)}/authorize?next=${encodeURIComponent(next)}`;
    // The server sets the refresh cookie on the way back; the app looks for it on load.
    return h("a", { href, class: "button wide provider", dataset: { provider: provider.id }, onclick: expectSession }, `Continue with ${provider.name}`);
  });
}

/** The links in a card of their own, after the password form; null without any. */
export function providerCard(links) {
  return links.length ? h("div", { class: "card narrow providers" }, h("p", { class: "or" }, "or"), links) : null;
}

/** The provider's way back for an account with a second factor: `/signin/mfa#mfa_token=…&methods=…`. */
export async function mfaFromProvider(container, ctx) {
  ctx.title("Confirm it's you");
  const fragment = new URLSearchParams(location.hash.slice(1));
  // The token is a secret: off the address bar and out of the history at once.
  if (location.hash) ctx.replaceLocation(location.pathname);
  const token = fragment.get("mfa_token");
  if (!token) {
    replace(
      container,
      h("h1", {}, "Confirm it's you"),
      h("p", { class: "notice error narrow", role: "alert" }, "This sign-in has expired or was already used. Please sign in again."),
      h("p", {}, h("a", { href: "/signin", class: "button primary" }, "Sign in")),
    );
    return;
  }
  const methods = (fragment.get("methods") || "").split(",").filter(Boolean);
  const restart = (notice) => ctx.navigate("/signin", { replace: true, state: { notice } });
  const challenge = { mfa_token: token, methods: methods.length ? methods : undefined };
  const stop = secondStep(container, challenge, {
    finish: () => ctx.navigate("/todos", { replace: true }),
    restart,
    intro: "The provider signed you in.",
  });
  ctx.onLeave(stop);
}

/** The page of the mailed link that confirms a provider may sign in to the account; never automatic. */
export async function confirmLink(container, ctx) {
  ctx.title("Link a sign-in");
  const token = ctx.query.get("token");
  if (token) ctx.replaceLocation(location.pathname);
  const heading = h("h1", {}, "Link a sign-in");
  if (!token) {
    replace(container, heading, h("p", { class: "notice error narrow", role: "alert" }, "This link has no token. Open the link from your email again."));
    return;
  }
  const providers = await listProviders();
  const error = inlineError();
  const confirm = button("Link it to my account", { class: "primary wide" });
  const card = h(
    "div",
    { class: "card narrow link-confirm" },
    h("p", {}, "Someone signed in with another provider using your email address. If that was you, link it: it will then sign you in to your Keel account."),
    h("p", { class: "muted" }, "If it was not you, ignore this: nothing changes."),
    confirm,
    error.element,
  );
  confirm.addEventListener("click", async () => {
    if (confirm.getAttribute("aria-disabled") === "true") return;
    confirm.setAttribute("aria-disabled", "true");
    error.hide();
    try {
      const identity = await request("POST", "/auth/identities/confirm", { body: { token } });
      const name = providerName(providers, identity.provider);
      replace(card, h("p", { class: "notice success", role: "status" }, `Done: ${name} now signs you in to your account.`), h("p", {}, h("a", { href: "/account", class: "button primary" }, "Go to your account")));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      error.show(err);
    } finally {
      confirm.removeAttribute("aria-disabled");
    }
  });
  replace(container, h("h1", {}, "Link this sign-in to your account?"), card);
}

function providerName(providers, id) {
  return providers.find((provider) => provider.id === id)?.name || id;
}

/**
 * The account page's "Connected accounts": what signs in to it, a way to connect each other
 * provider, and to disconnect one. Null when no provider is configured and none is linked.
 */
export async function connectedAccounts() {
  const [providers, identities] = await Promise.all([listProviders(), request("GET", "/auth/identities")]);
  if (!providers.length && !identities.length) return null;
  const list = h("ul", { class: "identity-list" });
  const connect = h("div", { class: "actions start" });
  const draw = async () => {
    const rows = await request("GET", "/auth/identities");
    fill(rows);
  };
  const fill = (rows) => {
    replace(list, rows.length ? rows.map((row) => identityItem(row, providers, draw)) : h("li", { class: "muted" }, "None yet."));
    const linked = new Set(rows.map((row) => row.provider));
    const unlinked = providers.filter((provider) => !linked.has(provider.id));
    replace(connect, unlinked.map(connectButton));
    connect.hidden = !unlinked.length;
  };
  fill(identities);
  return h("div", {}, h("p", { class: "muted" }, "Other providers that sign you in to this account."), list, connect);
}

function identityItem(row, providers, redraw) {
  const name = providerName(providers, row.provider);
  const error = inlineError();
  const disconnect = button("Disconnect", { class: "small", "aria-label": `Disconnect ${name}` });
  disconnect.addEventListener("click", async () => {
    error.hide();
    try {
      if ((await withReauth(() => request("DELETE", `/auth/identities/${row.id}`))) === CANCELLED) return;
      toast(`${name} disconnected.`);
      await redraw();
    } catch (err) {
      if (err instanceof ApiError && err.code === "last_sign_in_method") {
        return error.show(new ApiError(409, { detail: "This is your only way to sign in: set a password or add a passkey first." }));
      }
      error.show(err);
    }
  });
  return h(
    "li",
    { dataset: { identity: row.id } },
    h("div", {}, h("p", { class: "device" }, name), h("p", { class: "muted" }, row.email ? `${row.email} · ` : "", "linked ", time(row.created_at)), error.element),
    disconnect,
  );
}

function connectButton(provider) {
  const error = inlineError();
  const connect = button(`Connect ${provider.name}`);
  connect.addEventListener("click", async () => {
    error.hide();
    try {
      const started = await withReauth(() => request("POST", `/auth/identities/${encodeURIComponent(provider.id)}/link`, { query: { next: "/account" } }));
      if (started === CANCELLED) return;
      location.assign(started.authorize_url);
    } catch (err) {
      error.show(err);
    }
  });
  return h("div", { class: "connect" }, connect, error.element);
}
