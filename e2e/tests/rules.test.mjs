// The detection rules page in a real Chromium: turning a rule off and on, its agency scope,
// testing it against stored events, and a viewer who may only read.
// Started by e2e/run.sh, which provides the server (with one SSH rule), users and agencies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { BASE, SHOTS, env, login, newPage, submit } from "./common.mjs";

const RULE_ID = "2d7f4c0e-1f43-4a8e-9f0b-6b1f6f3c7e21";
const ROW = `#rule-${RULE_ID}`;

// Opens the test result for the rule until at least `want` hits are found (the store makes a
// line searchable shortly after it arrives).
async function testUntil(page, want) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    await page.goto(`${BASE}/console/rules?test=${RULE_ID}&from=now-1h`);
    const n = Number(await page.textContent("#test-count"));
    if (n >= want || Date.now() > deadline) return n;
    await page.waitForTimeout(300);
  }
}

test("an administrator turns a rule off and on, scopes it and tests it on stored data", async () => {
  const page = await newPage("en");
  await login(page, env("E2E_ADMIN"), env("E2E_ADMIN_PW"));
  await page.click("nav a[href='/console/rules']");
  await page.waitForURL(/\/console\/rules$/);
  assert.equal(await page.textContent("nav a[aria-current=page]"), "Rules");
  const row = page.locator(ROW);
  assert.equal(await row.getAttribute("data-enabled"), "true");
  assert.match(await row.textContent(), /SSH password failure for root/);

  // Off: the line sent now is stored but raises no alert; the test still finds it.
  await submit(page, `${ROW} .state-form button`);
  assert.equal(await page.textContent("#rules-ok"), "✔ Rule turned off");
  assert.equal(await page.locator(ROW).getAttribute("data-enabled"), "false");
  const nonce = `rules-e2e-${Date.now()}`;
  execFileSync("logger", [
    "--server", "127.0.0.1", "--port", env("CANH_SYSLOG_PORT"), "--tcp", "--rfc5424",
    "-t", "sshd", `Failed password for root from 203.0.113.77 port 40022 ssh2 ${nonce}`,
  ]);
  const deadline = Date.now() + 20_000;
  let found = false;
  while (!found && Date.now() < deadline) {
    await page.goto(`${BASE}/console/rules?test=${RULE_ID}&from=now-1h`);
    found = (await page.locator("#test-hits", { hasText: nonce }).count()) > 0;
    if (!found) await page.waitForTimeout(300);
  }
  assert.ok(found, "the stored line is among the test hits");
  assert.ok(Number(await page.textContent("#test-count")) >= 1);
  await page.screenshot({ path: join(SHOTS, "rules.png"), fullPage: true });

  // Scope: saved and shown, then cleared.
  await page.fill(`${ROW} .scope-form input[name=agencies]`, "so-a");
  await submit(page, `${ROW} .scope-form button`);
  assert.equal(await page.textContent("#rules-ok"), "✔ Agency scope saved");
  assert.equal(await page.inputValue(`${ROW} .scope-form input[name=agencies]`), "so-a");
  await page.fill(`${ROW} .scope-form input[name=agencies]`, "");
  await submit(page, `${ROW} .scope-form button`);
  assert.equal(await page.inputValue(`${ROW} .scope-form input[name=agencies]`), "");

  // On again, as the other tests expect.
  await submit(page, `${ROW} .state-form button`);
  assert.equal(await page.textContent("#rules-ok"), "✔ Rule turned on");
  assert.equal(await page.locator(ROW).getAttribute("data-enabled"), "true");
  await page.context().close();
});

test("an agency viewer reads the rules, cannot change them and tests only its own data", async () => {
  const page = await newPage();
  await login(page, env("E2E_VIEWER"), env("E2E_VIEWER_PW"));
  await page.goto(`${BASE}/console/rules`);
  assert.equal(await page.textContent("h1"), "Quy tắc phát hiện");
  await page.locator(ROW).waitFor();
  assert.equal(await page.locator(".state-form").count(), 0);
  assert.equal(await page.locator(".scope-form").count(), 0);
  // A forged change is refused.
  const resp = await page.request.post(`${BASE}/console/rules/${RULE_ID}/state`, {
    form: { action: "disable" },
  });
  assert.equal(resp.status(), 403);
  // The syslog lines carry no agency: none is in this viewer's scope.
  assert.equal(await testUntil(page, 0), 0);
  assert.equal(await page.locator("#test-hits").count(), 0);
  await page.context().close();
  // The rule is still on.
  const admin = await newPage("en");
  await login(admin, env("E2E_ADMIN"), env("E2E_ADMIN_PW"));
  await admin.goto(`${BASE}/console/rules`);
  assert.equal(await admin.locator(ROW).getAttribute("data-enabled"), "true");
  await admin.context().close();
});
