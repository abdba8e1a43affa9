// What every paged list shares: the page size, the pager under the list, loading in place
// where only the latest answer is drawn, and an address that keeps the list's filters and page.

import { button, h, replace, toast } from "./dom.js";

/** Items on one page of every list. */
export const PAGE_SIZE = 20;

/** How many pages `total` items fill; an empty list still has its one page. */
export function pageCount(total) {
  return Math.max(1, Math.ceil(total / PAGE_SIZE));
}

/** The API's `limit` and `offset` for page `page` (counted from 1). */
export function pageQuery(page) {
  return { limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE };
}

/** An empty pager, for a list to draw with `drawPager`. */
export function pager() {
  return h("nav", { class: "pager", "aria-label": "Pages" });
}

/**
 * Draw `nav` as "Previous · Page 2 of 5 · Next"; `go(page)` goes to the page a button asks
 * for. The pager is hidden while one page holds everything.
 */
export function drawPager(nav, { page, pages, go, labels = ["Previous", "Next"] }) {
  replace(
    nav,
    button(labels[0], { disabled: page <= 1, onclick: () => go(page - 1) }),
    h("span", {}, `Page ${page} of ${pages}`),
    button(labels[1], { disabled: page >= pages, onclick: () => go(page + 1) }),
  );
  nav.hidden = pages <= 1;
  return nav;
}

/** The page the address asks for (`?page=`), 1 when it asks for none or nonsense. */
export function pageFrom(query) {
  return Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);
}

/** The address's `name` if it is one of `choices` ([value, label] pairs), else the first choice. */
export function choiceFrom(query, name, choices) {
  const value = query.get(name);
  return choices.some(([choice]) => choice === value) ? value : choices[0][0];
}

/**
 * `path` with `params` as its query, leaving out what is empty or as in `defaults`, so a
 * list's address names only the settings that differ from the list as it first opens.
 */
export function withQuery(path, params, defaults = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "" || value === defaults[name]) continue;
    query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * A list that loads in place as its `view` (filters and `page`) changes.
 * `fetch(view)` asks the API for a page; `draw(answer, options)` shows it, but only for the
 * latest load and only while the list's page is on screen: a slow answer to an older search
 * never overwrites a newer one. `load(options)` rejects with the request's error, for the
 * caller to show where it fits; `show(changes)` changes the view (back to page 1 unless
 * `changes` names a page), loads it, and says in a toast when that fails.
 */
export function liveList(ctx, view, { fetch, draw }) {
  let latest = 0;
  const load = async (options = {}) => {
    const mine = ++latest;
    const answer = await fetch(view);
    if (mine === latest && ctx.active) await draw(answer, options);
  };
  const show = (changes) => {
    Object.assign(view, { page: 1 }, changes);
    load().catch((error) => {
      if (error.status !== 401) toast(error.detail || "The list could not be loaded.");
    });
  };
  return { view, load, show };
}
