// The web console in a real Chromium (Debian's package, driven by playwright-core).
// Started by e2e/run.sh, which provides the server, users and agencies through the environment.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { BASE, SHOTS, env, foreign, login, newPage, submit } from "./common.mjs";

const RULE_TITLE = "SSH password failure for root";

function sendSyslog(text) {
  execFileSync("logger", [
    "--server", "127.0.0.1", "--port", env("CANH_SYSLOG_PORT"), "--tcp", "--rfc5424",
    "-t", "sshd", text,
  ]);
}

const state = {};

test("a wrong password is refused, the right one opens the wall", async () => {
  const page = await newPage();
  await page.goto(`${BASE}/console/wall`);
  assert.match(page.url(), /\/console\/login$/);
  await page.fill("#name", env("E2E_ANALYST"));
  await page.fill("#password", "not-the-password");
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/console/login") && r.request().method() === "POST"),
    page.click("button[type=submit]"),
  ]);
  assert.equal(resp.status(), 401);
  assert.equal(await page.textContent("#login-error"), "Sai tên đăng nhập hoặc mật khẩu");
  await page.screenshot({ path: join(SHOTS, "login.png") });
  const cookies = await page.context().cookies();
  assert.ok(!cookies.some((c) => c.name === "canh_session"));
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  assert.equal(await page.textContent("nav a[aria-current=page]"), "Màn hình trực");
  await page.context().close();
});

test("the wall shows an alert within 2 s of a matching syslog line, with a flash", async () => {
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  await page.waitForSelector("body[data-stream=ready]", { timeout: 10_000 });
  const nonce = `e2e-${Date.now()}`;
  state.nonce = nonce;
  const sent = Date.now();
  sendSyslog(`Failed password for root from 198.51.100.7 port 50022 ssh2 ${nonce}`);
  const row = page.locator("#wall-alerts li.wall-alert", { hasText: RULE_TITLE }).first();
  await row.waitFor({ timeout: 2_000 });
  const took = Date.now() - sent;
  assert.ok(took <= 2_000, `alert shown after ${took} ms`);
  assert.equal(await row.getAttribute("data-sev"), "emergency");
  assert.equal((await row.locator(".badge").textContent()).trim(), "Khẩn cấp");
  // Emergency: the screen flashes.
  await page.waitForSelector("#flash.on", { timeout: 2_000 });
  state.wallLatencyMs = took;
  console.log(`# wall latency ${took} ms`);
  // The panels refresh by themselves: the syslog source appears as alive.
  await page.waitForSelector("#wall-panels .sources li.alive", { timeout: 8_000 });
  await page.screenshot({ path: join(SHOTS, "wall.png") });
  await page.context().close();
});

test("acknowledge and escalate with the keyboard", async () => {
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  await page.goto(`${BASE}/console/alerts?state=new`);
  const row = page.locator("#queue-body tr.alert-row", { hasText: RULE_TITLE }).first();
  await row.waitFor();
  const id = await row.getAttribute("data-id");
  state.alertId = id;
  await page.keyboard.press("?");
  await page.waitForSelector("#help-dialog[open]");
  await page.keyboard.press("Escape");
  await page.keyboard.press("j");
  assert.equal(await page.getAttribute("#queue-body tr.current", "data-id"), id);
  await page.waitForSelector("#detail pre.raw");
  assert.match(await page.textContent("#detail"), /Failed password for root/);
  await page.keyboard.press("a");
  await page.waitForSelector(`#alert-${id} td.state[data-state=acknowledged]`);
  assert.match(await page.textContent(`#alert-${id} td.state`), /Đã xác nhận/);
  await page.keyboard.press("e");
  await page.waitForSelector("#escalate-dialog[open]");
  // Keyboard only: the title has focus; Tab twice reaches the agency list.
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "esc-agency");
  await page.selectOption("#esc-agency", env("E2E_AGENCY_A"));
  await page.focus("#esc-title");
  await page.keyboard.type(" (e2e)");
  await page.keyboard.press("Enter");
  await page.waitForSelector(`#alert-${id} td.state[data-state=escalated]`);
  const link = page.locator(`#alert-${id} td.state a`);
  const href = await link.getAttribute("href");
  assert.match(href, /^\/console\/incidents\/\d+$/);
  state.incident = href;
  await page.screenshot({ path: join(SHOTS, "triage.png") });
  await page.context().close();
});

test("an incident goes through all seven steps with an evidence upload", async () => {
  assert.ok(state.incident, "needs the escalated incident");
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  await page.goto(BASE + state.incident);
  assert.equal(await page.locator("#stepper li.step").count(), 7);
  assert.equal(await page.getAttribute("#stepper li[aria-current=step]", "data-step"), "record");
  // A task for the analysis step, ticked off.
  await page.fill("#task-title", "Xác định máy bị dò mật khẩu");
  await page.selectOption("select[name=step]", "analyse");
  await submit(page, "#task-add");
  assert.match(await page.textContent("#stepper li[data-step=analyse] .tasks"), /Xác định máy/);
  const steps = ["analyse", "contain", "collect_evidence", "remove_cause", "recover", "post_incident"];
  for (const next of steps) {
    if (next === "remove_cause") {
      // Evidence at the collect-evidence step: the browser streams the file, the page shows
      // the SHA-256 the server computed, which must be the file's.
      const content = Buffer.from(`auth.log trích xuất ${state.nonce}\nFailed password for root\n`, "utf8");
      const sha = createHash("sha256").update(content).digest("hex");
      await page.setInputFiles("#evidence-file", { name: "nhat-ky-ssh.txt", mimeType: "text/plain", buffer: content });
      await page.fill("#evidence-desc", "Nhật ký SSH");
      await page.click("#evidence-submit");
      await page.waitForSelector("#evidence-result code.sha");
      assert.equal(await page.textContent("#evidence-result code.sha"), sha);
      await page.waitForSelector(`#evidence code.sha:text-is("${sha}")`, { timeout: 10_000 });
    }
    await page.fill("#step-summary", `Đã hoàn thành bước trước ${next}`);
    await submit(page, "#step-next");
    await page.waitForSelector(`#stepper li[data-step=${next}][aria-current=step]`);
  }
  // The closing-report clock started when recovery ended: a countdown is shown.
  assert.ok(await page.locator(".countdown[data-due]").count() >= 1);
  await page.fill("#close-summary", "Đã rút kinh nghiệm, cập nhật quy trình");
  await page.fill("#close-waiver", "Báo cáo kết thúc gửi bằng văn bản giấy");
  await submit(page, "#close-submit");
  await page.waitForSelector("#closed-badge");
  assert.equal(await page.locator("#stepper li.step.done").count(), 7);
  assert.equal(await page.locator("#stepper .signoff").count(), 7);
  assert.match(await page.textContent("#timeline"), /closed|Đã rút kinh nghiệm/);
  await page.screenshot({ path: join(SHOTS, "incident.png"), fullPage: true });
  await page.context().close();
});

test("a search shows a histogram, top values and exports CSV", async () => {
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  const url = `${BASE}/console/search?q=${encodeURIComponent(state.nonce || "Failed")}&from=now-1h`;
  let total = 0;
  for (let i = 0; i < 40 && total === 0; i++) {
    await page.goto(url);
    total = Number(await page.textContent("#total"));
    if (total === 0) await page.waitForTimeout(500);
  }
  assert.ok(total >= 1, "the syslog line is searchable");
  const bars = await page.$$eval("#histogram rect", (rs) => rs.map((r) => Number(r.getAttribute("height"))));
  assert.ok(bars.length >= 30, `${bars.length} buckets`);
  assert.ok(bars.some((h) => h > 0), "one bucket holds the event");
  assert.match(await page.textContent("#results"), /Failed password for root/);
  // The sidebar lists the host that sent the line among the top values.
  assert.match(await page.textContent(".fields"), new RegExp(`host\\.name\\s*${hostname().split(".")[0]}`));
  const csv = await page.request.get(BASE + (await page.getAttribute("#export-csv", "href")));
  assert.equal(csv.status(), 200);
  const text = await csv.text();
  assert.ok(text.startsWith("\uFEFF@timestamp,host.name,message"), text.slice(0, 80));
  assert.match(text, new RegExp(state.nonce || "Failed"));
  await page.screenshot({ path: join(SHOTS, "search.png") });
  await page.context().close();
});

test("the language switch turns the console into English and back", async () => {
  const page = await newPage();
  await login(page, env("E2E_ADMIN2"), env("E2E_ADMIN2_PW"));
  assert.equal(await page.getAttribute("html", "lang"), "vi");
  await Promise.all([page.waitForURL(/\/console\/wall$/), page.click("#lang-switch")]);
  assert.equal(await page.getAttribute("html", "lang"), "en");
  assert.equal(await page.textContent("nav a[aria-current=page]"), "Watch wall");
  const body = await page.textContent("body");
  assert.ok(!body.includes("Cảnh báo trực tiếp"), "no Vietnamese UI text left");
  assert.match(body, /Live alerts/);
  await page.goto(`${BASE}/console/admin`);
  assert.match(await page.textContent("h1"), /Administration/);
  assert.match(await page.textContent("#rules"), /SSH password failure for root/);
  await page.screenshot({ path: join(SHOTS, "admin-en.png"), fullPage: true });
  await Promise.all([page.waitForURL(/\/console\/admin$/), page.click("#lang-switch")]);
  assert.equal(await page.getAttribute("html", "lang"), "vi");
  assert.match(await page.textContent("h1"), /Quản trị/);
  await page.context().close();
});

test("an agency viewer cannot see another agency's data", async () => {
  const page = await newPage();
  await login(page, env("E2E_VIEWER"), env("E2E_VIEWER_PW"));
  // The tree shows only the viewer's own agency.
  const tree = await page.textContent("#wall-panels .tree");
  assert.match(tree, /Sở Bêta/);
  assert.doesNotMatch(tree, /Sở Alpha/);
  await page.goto(`${BASE}/console/alerts`);
  assert.equal(await page.locator("#queue-body tr", { hasText: RULE_TITLE }).count(), 0);
  await page.goto(`${BASE}/console/incidents?closed=1`);
  assert.doesNotMatch(await page.textContent("main"), /\(e2e\)/);
  const resp = await page.goto(BASE + state.incident);
  assert.equal(resp.status(), 404);
  assert.doesNotMatch(await page.textContent("main"), /SSH password failure/);
  const detail = await page.goto(`${BASE}/console/alerts/${state.alertId}`);
  assert.equal(detail.status(), 403);
  await page.goto(`${BASE}/console/search?q=${encodeURIComponent(state.nonce)}&from=now-1h`);
  assert.equal(Number(await page.textContent("#total")), 0);
  const sql = await page.goto(`${BASE}/console/search?mode=sql&sql=select%201`);
  assert.equal(sql.status(), 403);
  const admin = await page.goto(`${BASE}/console/admin`);
  assert.equal(admin.status(), 403);
  await page.context().close();
});

async function logout(page) {
  await Promise.all([page.waitForURL(/\/console\/login$/), page.click("form[action='/console/logout'] button")]);
}

test("the language is kept on the account across logout and login", async () => {
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  assert.equal(await page.getAttribute("html", "lang"), "vi");
  await Promise.all([page.waitForURL(/\/console\/wall$/), page.click("#lang-switch")]);
  assert.equal(await page.getAttribute("html", "lang"), "en");
  await logout(page);
  await page.context().close();
  // Another browser, no cookie: the login page is Vietnamese, the console after login English.
  const other = await newPage();
  await other.goto(`${BASE}/console/login`);
  assert.equal(await other.getAttribute("html", "lang"), "vi");
  await login(other, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  assert.equal(await other.getAttribute("html", "lang"), "en");
  assert.equal(await other.textContent("nav a[aria-current=page]"), "Watch wall");
  await logout(other);
  // The login page of that browser now speaks the account's language too.
  assert.equal(await other.getAttribute("html", "lang"), "en");
  // Back to Vietnamese for the tests that follow.
  await login(other, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  await Promise.all([other.waitForURL(/\/console\/wall$/), other.click("#lang-switch")]);
  assert.equal(await other.getAttribute("html", "lang"), "vi");
  await other.context().close();
});

test("an administrator adds a user and a public IP range", async () => {
  const page = await newPage();
  await login(page, env("E2E_ADMIN"), env("E2E_ADMIN_PW"));
  await page.goto(`${BASE}/console/admin`);
  const name = `ca-dem-${Date.now() % 100000}`;
  const password = `mat-khau-${Date.now()}`;
  await page.fill("#new-user-name", name);
  await page.fill("#new-user-password", password);
  await page.selectOption("#new-user-role", "analyst");
  await submit(page, "#new-user-submit");
  assert.equal(await page.textContent("#admin-ok"), "✔ Đã thêm người dùng");
  assert.equal(await page.getAttribute(`#user-${name}`, "data-role"), "analyst");
  await page.screenshot({ path: join(SHOTS, "admin.png"), fullPage: true });
  await page.goto(`${BASE}/console/admin/agencies/${env("E2E_AGENCY_A")}`);
  assert.match(await page.textContent("h1"), /Sở Alpha/);
  await page.fill("#range-cidr", "113.160.12.0/24");
  await submit(page, "#range-submit");
  assert.equal(await page.textContent("#admin-ok"), "✔ Đã thêm dải IP");
  assert.match(await page.textContent("#ranges"), /113\.160\.12\.0\/24\s*Dải công khai/);
  // A private range cannot be declared public: refused with the reason.
  await page.fill("#range-cidr", "10.1.0.0/16");
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/ranges") && r.request().method() === "POST"),
    page.click("#range-submit"),
  ]);
  assert.equal(resp.status(), 422);
  await page.goto(`${BASE}/console/admin/agencies/${env("E2E_AGENCY_A")}`);
  assert.doesNotMatch(await page.textContent("#ranges"), /10\.1\.0\.0/);
  await page.screenshot({ path: join(SHOTS, "admin-agency.png"), fullPage: true });
  await logout(page);
  await page.context().close();
  // The new account works.
  const fresh = await newPage();
  await login(fresh, name, password);
  assert.match(await fresh.textContent(".who"), new RegExp(name));
  await fresh.context().close();
});

test("a long search shows its progress and is cancelled on the server too", async () => {
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  await page.goto(`${BASE}/console/search?mode=sql`);
  await page.fill("#sql", "SELECT count(*) FROM range(1000000000000)");
  await page.click("#search-form button[type=submit]");
  await page.waitForSelector("body[data-search=running]");
  assert.equal(await page.isVisible("#progress"), true);
  assert.equal(await page.textContent("#progress-text"), "Đang tìm…");
  const qid = await page.getAttribute("body", "data-qid");
  const running = async () => (await (await page.request.get(`${BASE}/console/search/running`)).text()).split("\n");
  for (let i = 0; i < 100 && !(await running()).includes(qid); i++) await page.waitForTimeout(100);
  assert.ok((await running()).includes(qid), "the query runs on the server");
  await page.screenshot({ path: join(SHOTS, "search-running.png") });
  await page.click("#search-cancel");
  await page.waitForSelector("body[data-search=cancelled]");
  assert.equal(await page.textContent("#progress-text"), "Đã huỷ tìm kiếm");
  // The server stopped the query.
  for (let i = 0; i < 100 && (await running()).includes(qid); i++) await page.waitForTimeout(100);
  assert.ok(!(await running()).includes(qid), "the query stopped on the server");
  // The page still works: a quick query answers.
  await page.fill("#sql", "SELECT 41 + 1 AS x");
  await page.click("#search-form button[type=submit]");
  await page.waitForSelector("body[data-search=done]");
  assert.equal(await page.textContent("#sql-results tbody td"), "42");
  await page.context().close();
});

test("a saved search is kept on the account and runs again", async () => {
  const page = await newPage();
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  const q = state.nonce || "Failed";
  await page.goto(`${BASE}/console/search?q=${encodeURIComponent(q)}&from=now-1h`);
  await page.evaluate(() => { document.getElementById("saved-searches").open = true; });
  await page.fill("#save-name", "Dò mật khẩu SSH (e2e)");
  await submit(page, "#save-submit");
  assert.equal(await page.textContent("#saved-ok"), "✔ Đã lưu truy vấn");
  assert.equal(await page.inputValue("#q"), q);
  await logout(page);
  await login(page, env("E2E_ANALYST"), env("E2E_ANALYST_PW"));
  await page.goto(`${BASE}/console/search`);
  const link = page.locator("#saved-list a.saved-link", { hasText: "Dò mật khẩu SSH (e2e)" });
  assert.equal(await link.count(), 1);
  await page.screenshot({ path: join(SHOTS, "search-saved.png") });
  await submit(page, "#saved-list a.saved-link >> nth=0");
  assert.equal(await page.inputValue("#q"), q);
  assert.ok(Number(await page.textContent("#total")) >= 1, "the saved search finds the event");
  await page.context().close();
});

test("no request left the loopback", () => {
  assert.deepEqual(foreign, []);
});
