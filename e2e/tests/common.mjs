// What the browser tests share: the environment from e2e/run.sh, one Chromium, pages that
// record requests leaving the loopback, and the console's login and form steps.
import { before, after } from "node:test";
import { chromium } from "playwright-core";

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set; run the tests through e2e/run.sh`);
  return v;
};
export const BASE = env("CANH_URL");
export const SHOTS = env("E2E_SCREENSHOTS");

let browser;
/** Requests that left the loopback, from every page opened with `newPage`. */
export const foreign = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    // `launch` gives every run a fresh, temporary user-data-dir of its own.
  });
});

after(async () => {
  await browser?.close();
});

export async function newPage(lang) {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 860 }, locale: "vi-VN" });
  if (lang) {
    await ctx.addCookies([{ name: "canh_lang", value: lang, url: BASE }]);
  }
  const page = await ctx.newPage();
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (!["127.0.0.1", "localhost", "[::1]"].includes(u.hostname) && u.protocol !== "data:") {
      foreign.push(r.url());
    }
  });
  return page;
}

// Clicks a button that submits a classic form and waits for the page it leads to.
export async function submit(page, selector) {
  await Promise.all([page.waitForEvent("framenavigated"), page.click(selector)]);
  await page.waitForLoadState("load");
}

export async function login(page, name, password) {
  await page.goto(`${BASE}/console/login`);
  await page.fill("#name", name);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(/\/console\/wall$/), page.click("button[type=submit]")]);
}
