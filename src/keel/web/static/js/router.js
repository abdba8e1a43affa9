// A small history-API router: paths map to page modules; links inside the app navigate
// without a reload. The server answers every one of these paths with the same shell page.

const routes = [];
let current = { cleanup: null, active: false };
let renderView = null;
let rendered = null; // path and query of the page on screen
let leaveGuard = null;

// What a `:name` in a pattern matches: a number unless `options.params` says otherwise.
const NUMBER = "[1-9]\\d{0,9}";

/**
 * Register `pattern` ("/posts/:id") with the page that renders it; a `:name` is a number, or
 * what `options.params[name]` (a regular expression's source) allows.
 */
export function route(pattern, page, options = {}) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return `(${options.params?.[name] || NUMBER})`;
  });
  routes.push({ regex: new RegExp(`^${source}/?$`), names, page, options });
}

export function match(pathname) {
  for (const entry of routes) {
    const found = entry.regex.exec(pathname);
    if (found) {
      const params = Object.fromEntries(entry.names.map((name, i) => [name, decodeURIComponent(found[i + 1])]));
      return { ...entry, params };
    }
  }
  return null;
}

/** Go to `path` (which may carry a query). `replace` swaps the history entry instead of adding one. */
export function navigate(path, { replace = false, state = null } = {}) {
  if (replace) history.replaceState(state, "", path);
  else {
    // The page being left remembers how far down it was read, for Back to return there.
    history.replaceState({ ...(history.state || {}), scrollY: window.scrollY }, "");
    history.pushState(state, "", path);
  }
  return render();
}

/**
 * While `check()` is set, leaving the page through a link or Back first asks it: it resolves
 * true to leave, false to stay (an editor with unsaved text asks the reader). Returns what
 * removes it; a page's guard also goes when the page does.
 */
export function guardLeaving(check) {
  leaveGuard = check;
  return () => {
    if (leaveGuard === check) leaveGuard = null;
  };
}

async function mayLeave() {
  if (!leaveGuard) return true;
  const leave = await leaveGuard();
  if (leave) leaveGuard = null;
  return leave;
}

/** Change the address of the page on screen (a list's filters, say) without drawing it again. */
export function replaceLocation(path) {
  history.replaceState(history.state, "", path);
  rendered = location.pathname + location.search;
}

export async function render() {
  current.active = false;
  leaveGuard = null;
  if (current.cleanup) current.cleanup();
  current = { cleanup: null, active: true };
  rendered = location.pathname + location.search;
  await renderView(current);
}

/** Start routing: `onRender(slot)` draws the page for location.pathname. */
export function start(onRender) {
  renderView = onRender;
  // The app puts the scroll back itself (the browser would try before the page is drawn).
  if ("scrollRestoration" in history) history.scrollRestoration = "manual";
  window.addEventListener("popstate", async () => {
    // Following an in-page link ("#view") changes only the fragment: nothing to draw.
    const target = location.pathname + location.search;
    if (target === rendered) return;
    if (leaveGuard) {
      // Back cannot be cancelled: the address goes back to the page on screen while it asks.
      const state = history.state;
      history.pushState(null, "", rendered);
      if (!(await mayLeave())) return;
      history.pushState(state, "", target);
    }
    render();
  });
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("a[href]");
    if (!link || link.target || link.hasAttribute("download")) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !match(url.pathname)) return;
    if (url.hash && url.pathname === location.pathname && url.search === location.search) return; // in-page jump
    event.preventDefault();
    mayLeave().then((leave) => leave && navigate(url.pathname + url.search));
  });
  return render();
}
