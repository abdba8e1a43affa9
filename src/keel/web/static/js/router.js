// A small history-API router: paths map to page modules; links inside the app navigate
// without a reload. The server answers every one of these paths with the same shell page.

const routes = [];
let current = { cleanup: null, active: false };
let renderView = null;
let rendered = null; // path and query of the page on screen

/** Register `pattern` ("/posts/:id") with the page that renders it; a `:name` is a number. */
export function route(pattern, page, options = {}) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([1-9]\\d{0,9})";
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
  else history.pushState(state, "", path);
  return render();
}

/** Change the address of the page on screen (a list's filters, say) without drawing it again. */
export function replaceLocation(path) {
  history.replaceState(history.state, "", path);
  rendered = location.pathname + location.search;
}

export async function render() {
  current.active = false;
  if (current.cleanup) current.cleanup();
  current = { cleanup: null, active: true };
  rendered = location.pathname + location.search;
  await renderView(current);
}

/** Start routing: `onRender(slot)` draws the page for location.pathname. */
export function start(onRender) {
  renderView = onRender;
  window.addEventListener("popstate", () => {
    // Following an in-page link ("#view") changes only the fragment: nothing to draw.
    if (location.pathname + location.search !== rendered) render();
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
    navigate(url.pathname + url.search);
  });
  return render();
}
