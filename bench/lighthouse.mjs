// Lighthouse's Node API driven for bench/lighthouse.py, which installs Lighthouse, serves Keel,
// seeds it, copies this file next to its node_modules and runs it with one JSON argument:
// {base, chromium, out, email, password, pages: [{name, path, signedIn}]}.
//
// Each page gets a fresh Chromium (a new temporary profile from chrome-launcher), so no audit
// starts from another's HTTP cache or service worker. For a signed-in page the driver signs in
// first as the web UI does, without loading the app, so nothing of it is cached or registered
// before Lighthouse loads it: the HttpOnly refresh cookie the login sets goes into the browser,
// and the "signed in" hint the app reads from localStorage is set from /health. Lighthouse's storage reset
// would clear that hint, so it is off for those runs (the profile is new anyway).
//
// After each audit the same browser opens the page again, waits for its service worker, and asks
// Chromium whether it could install the app (CDP Page.getInstallabilityErrors): Lighthouse 12
// dropped its PWA category and the installable-manifest audit with it.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";

import * as chromeLauncher from "chrome-launcher";
import lighthouse from "lighthouse";
import puppeteer from "puppeteer-core";

const options = JSON.parse(process.argv[2]);
const FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"];

async function signIn(page) {
  // The API's own pages forbid scripts to fetch (their CSP), so the login is Node's, in cookie
  // mode like the web UI's, and its refresh cookie is handed to the browser as the server set it.
  const body = new URLSearchParams({ username: options.email, password: options.password });
  const headers = { "X-Keel-Client": "web", Origin: options.base };
  const answer = await fetch(`${options.base}/api/v1/auth/login`, { method: "POST", headers, body });
  if (!answer.ok) throw new Error(`sign-in failed: ${answer.status}`);
  const [pair] = answer.headers.getSetCookie().filter((cookie) => cookie.startsWith("keel_refresh="));
  const value = pair.split(";")[0].slice("keel_refresh=".length);
  await page.setCookie({ name: "keel_refresh", value, url: `${options.base}/api/v1/auth`, path: "/api/v1/auth", httpOnly: true, sameSite: "Strict" });
  await page.goto(`${options.base}/health`);
  await page.evaluate(() => localStorage.setItem("keel.signed-in", "1"));
}

async function installability(browser, url) {
  const page = await browser.newPage();
  try {
    await page.goto(url, { waitUntil: "load" });
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    const cdp = await page.createCDPSession();
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    const { errors: manifestErrors } = await cdp.send("Page.getAppManifest");
    return {
      installable: installabilityErrors.length === 0,
      errors: installabilityErrors.map((e) => e.errorId),
      manifestErrors: manifestErrors.map((e) => e.message),
      serviceWorker: await page.evaluate(() => Boolean(navigator.serviceWorker.controller) || "registered, not yet controlling"),
    };
  } catch (error) {
    return { installable: null, errors: [String(error)] };
  } finally {
    await page.close();
  }
}

// Lighthouse now and then fails to record a trace on this loaded machine (NO_NAVSTART): once more.
async function audit(page) {
  try {
    return await auditOnce(page);
  } catch (error) {
    process.stderr.write(`${page.name}: ${error.message}; trying again\n`);
    return await auditOnce(page);
  }
}

async function auditOnce({ name, path, signedIn }) {
  const chrome = await chromeLauncher.launch({ chromePath: options.chromium, chromeFlags: FLAGS, logLevel: "silent" });
  const browser = await puppeteer.connect({ browserURL: `http://127.0.0.1:${chrome.port}`, defaultViewport: null });
  try {
    const page = await browser.newPage();
    if (signedIn) await signIn(page);
    const url = options.base + path;
    const flags = { logLevel: "error", output: "json", disableStorageReset: Boolean(signedIn) };
    const result = await lighthouse(url, flags, undefined, page);
    await writeFile(join(options.out, `${name}.json`), result.report);
    const lhr = result.lhr;
    if (lhr.runtimeError) throw new Error(`${name}: ${lhr.runtimeError.code} ${lhr.runtimeError.message}`);
    return { name, path, signedIn, lhr: compact(lhr), install: await installability(browser, url) };
  } finally {
    await browser.disconnect();
    chrome.kill();
  }
}

// What the report needs from a Lighthouse result: scores, and for each category the audits that
// cost points (a weighted audit scored under 1, or any failing audit for performance's diagnostics).
function compact(lhr) {
  const categories = {};
  for (const [id, category] of Object.entries(lhr.categories)) {
    const losing = [];
    for (const ref of category.auditRefs) {
      const audit = lhr.audits[ref.id];
      if (audit.score === null || audit.score >= 0.9 || audit.scoreDisplayMode === "notApplicable") continue;
      if (audit.scoreDisplayMode === "informative" || audit.scoreDisplayMode === "manual") continue;
      losing.push({ id: ref.id, weight: ref.weight, score: audit.score, title: audit.title, display: audit.displayValue ?? "" });
    }
    categories[id] = { score: category.score, losing };
  }
  const metrics = {};
  for (const id of ["first-contentful-paint", "largest-contentful-paint", "total-blocking-time", "cumulative-layout-shift", "speed-index"]) {
    metrics[id] = { score: lhr.audits[id]?.score, display: lhr.audits[id]?.displayValue };
  }
  return {
    lighthouseVersion: lhr.lighthouseVersion,
    benchmarkIndex: lhr.environment.benchmarkIndex,
    userAgent: lhr.environment.hostUserAgent,
    formFactor: lhr.configSettings.formFactor,
    throttling: lhr.configSettings.throttlingMethod,
    finalUrl: lhr.finalDisplayedUrl,
    categories,
    metrics,
  };
}

const results = [];
for (const page of options.pages) results.push(await audit(page));
process.stdout.write(JSON.stringify(results));
