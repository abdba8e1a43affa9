// The shell: navigation bar, routes, and what happens when the session changes.

import { ApiError, currentUser, onAuthChange, resume, signOut } from "./api.js";
import { button, h, replace, toast } from "./dom.js";
import { clear as clearOutbox, onChange as onOutboxChange, recount, replay } from "./outbox.js";
import { match, navigate, replaceLocation, route, start } from "./router.js";
import * as account from "./pages/account.js";
import * as admin from "./pages/admin.js";
import * as auth from "./pages/auth.js";
import * as emailCode from "./pages/email-code.js";
import * as post from "./pages/post.js";
import * as postEditor from "./pages/post-editor.js";
import * as posts from "./pages/posts.js";
import * as providers from "./pages/providers.js";
import * as todos from "./pages/todos.js";

route("/", posts.feed, { reads: posts.feedReads });
route("/tags/:tag", posts.feed, { params: { tag: "[A-Za-z0-9-]{1,30}" }, reads: posts.feedReads });
route("/posts/new", postEditor.editor, { signedIn: true });
route("/posts/:id", post.show);
route("/posts/:id/edit", postEditor.editor, { signedIn: true });
route("/my-posts", posts.mine, { signedIn: true });
route("/todos", todos.list, { signedIn: true, reads: todos.firstReads });
route("/account", account.page, { signedIn: true });
route("/admin/users", admin.users, { signedIn: true, admin: true });
route("/signin", auth.signIn, { guestOnly: true });
route("/signin/code", emailCode.fromLink, { guestOnly: true });
route("/signin/mfa", providers.mfaFromProvider, { guestOnly: true });
route("/signup", auth.signUp, { guestOnly: true });
route("/forgot-password", auth.forgotPassword);
route("/reset-password", auth.resetPassword);
route("/verify-email", auth.verifyEmail);
route("/link-identity", providers.confirmLink);

const view = document.getElementById("view");
const nav = document.getElementById("nav");

function navLink(href, text) {
  const here = location.pathname === href || (href !== "/" && location.pathname.startsWith(`${href}/`));
  return h("a", { href, "aria-current": here ? "page" : false }, text);
}

function drawNav() {
  const user = currentUser();
  const links = [navLink("/", "Feed")];
  if (user) {
    links.push(navLink("/todos", "Todos"), navLink("/my-posts", "My posts"));
    if (user.role === "admin") links.push(navLink("/admin/users", "Users"));
  }
  const end = user
    ? [
        navLink("/account", user.username),
        button("Sign out", {
          class: "link",
          onclick: async () => {
            try {
              await signOut();
              navigate("/signin", { state: { notice: "You are signed out." } });
            } catch (error) {
              toast(error.detail || "Signing out failed. Please try again.");
            }
          },
        }),
      ]
    : [navLink("/signin", "Sign in"), h("a", { href: "/signup", class: "button primary small" }, "Sign up")];
  replace(nav, h("div", { class: "nav-main" }, links), h("div", { class: "nav-end" }, end));
}

/**
 * Context handed to every page. A page's requests may finish after the reader has moved on;
 * everything here that changes the screen or the address does nothing once the page is gone.
 */
function context(found, slot) {
  return {
    params: found.params,
    query: new URLSearchParams(location.search),
    state: history.state || {},
    get active() {
      return slot.active;
    },
    title(text) {
      if (slot.active) document.title = text ? `${text} · Keel` : "Keel";
    },
    navigate(path, options) {
      if (slot.active) navigate(path, options);
    },
    replaceLocation(path) {
      if (slot.active) replaceLocation(path);
    },
    onLeave(cleanup) {
      const before = slot.cleanup;
      slot.cleanup = before
        ? () => {
            before();
            cleanup();
          }
        : cleanup;
    },
  };
}

async function draw(slot) {
  drawNav();
  const found = match(location.pathname);
  if (!found) {
    document.title = "Not found · Keel";
    replace(view, h("h1", { tabindex: -1 }, "Page not found"), h("p", {}, h("a", { href: "/" }, "Back to the feed")));
    return focusHeading();
  }
  const user = currentUser();
  if (found.options.signedIn && !user) {
    const next = location.pathname + location.search;
    return navigate(`/signin?next=${encodeURIComponent(next)}`, { replace: true });
  }
  if (found.options.guestOnly && user) {
    return navigate("/todos", { replace: true });
  }
  if (found.options.admin && user.role !== "admin") {
    document.title = "Not allowed · Keel";
    replace(view, h("h1", { tabindex: -1 }, "Admins only"), h("p", {}, "This page is for administrators."));
    return focusHeading();
  }
  // The page draws into a detached container that replaces the view once it is ready, so a
  // page that finishes after the reader has moved on draws nowhere.
  const container = h("div", { class: "page" });
  view.setAttribute("aria-busy", "true");
  try {
    await found.page(container, context(found, slot));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // sent to sign-in already
    drawFailure(container, error);
  } finally {
    view.removeAttribute("aria-busy");
  }
  if (!slot.active) return;
  replace(view, container);
  focusHeading();
}

function drawFailure(container, error) {
  // A path id the API refuses (422: out of range) is as missing as one it cannot find.
  const notFound = error instanceof ApiError && (error.status === 404 || error.status === 422);
  document.title = `${notFound ? "Not found" : "Something went wrong"} · Keel`;
  if (!(error instanceof ApiError)) console.error(error);
  replace(
    container,
    h("h1", {}, notFound ? "Not found" : "Something went wrong"),
    h("p", { class: "notice error" }, error.detail || "The page could not be loaded."),
    h("p", {}, h("a", { href: "/" }, "Back to the feed")),
  );
}

let firstRender = true;

// Move focus to the new page's heading so keyboard and screen-reader users start there.
function focusHeading() {
  if (firstRender) {
    firstRender = false;
    return;
  }
  const heading = view.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
  // Back to a page puts it where it was read (router.navigate kept the place); else the top.
  window.scrollTo(0, history.state?.scrollY || 0);
}

// Why a signed-in person was signed out without asking, in their words.
const SIGNED_OUT = {
  expired: "Your session ended. Please sign in again.",
  deactivated: "Your account was deactivated. Contact an administrator if you think this is a mistake.",
  "signed-out-elsewhere": "You signed out in another tab.",
};

let signedInId = null;
onAuthChange((user, reason) => {
  drawNav();
  // Changes waiting to be sent are the signed-in person's: they go when that person signs out
  // (like the last data seen), and are counted for whoever is signed in now.
  if (reason === "signed-out" && signedInId !== null) clearOutbox(signedInId).catch(() => {});
  signedInId = user?.id ?? null;
  recount();
  // Signed in again after a session ended: what they changed meanwhile can go now.
  if (reason === "signed-in" && navigator.onLine !== false) replay().catch(() => {});
  if (reason in SIGNED_OUT) {
    const next = location.pathname + location.search;
    // Back where they were after signing in again; not for a deactivated account, which cannot.
    const back = reason !== "deactivated" && match(location.pathname)?.options.signedIn;
    const target = back ? `/signin?next=${encodeURIComponent(next)}` : "/signin";
    navigate(target, { state: { notice: SIGNED_OUT[reason] } });
  }
});

// The offline banner follows the browser's own idea of the network; the service worker keeps
// the shell and the last data seen, so an offline reload still shows them.
const offline = document.getElementById("offline");
// How many changes wait to be sent, in the banner while offline (the rows say which).
const waitingNote = h("span", { class: "offline-waiting" });
offline.append(waitingNote);
onOutboxChange(({ waiting }) => {
  waitingNote.textContent = waiting ? ` ${waiting} ${waiting === 1 ? "change waits" : "changes wait"} to be sent.` : "";
});
const showNetwork = () => {
  offline.hidden = navigator.onLine !== false;
};
window.addEventListener("online", showNetwork);
window.addEventListener("offline", showNetwork);
showNetwork();
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch((error) => console.warn("offline support unavailable", error));
}

// What the page in the address will read first, asked for as soon as the session is resumed.
function firstReads() {
  const found = match(location.pathname);
  return found?.options.reads?.(found.params, new URLSearchParams(location.search)) ?? [];
}

try {
  await resume({ reads: firstReads });
} catch (error) {
  console.error(error); // the app still starts, signed out
}
await start(draw);
if (currentUser() && navigator.onLine !== false) replay().catch((error) => console.error(error));
