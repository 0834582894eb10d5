// The duty board in a real headless Chromium (Debian's /usr/bin/chromium),
// driven by playwright-core. Started by tests/board.rs against a running
// gridwatch; env: BOARD_URL, DUTY_TOKEN, DIRECTOR_TOKEN, MQTT_PORT, OUT_DIR
// (screenshots), DOCS_SCREENSHOT (optional: also write the README picture).
//
// Walks an alarm from first sight to closed: a duty officer logs in, a smoke
// reading arrives over MQTT (mosquitto_pub) and the alarm appears without a
// reload, ack marks the fire brigade's role acked, resolve moves it to
// "awaiting verification" — where the duty officer gets no verify button and
// a director does. In the Devices view the officer shelves a device (搁置),
// sees the API's refusal of a blank reason, sees it marked shelved (also on
// the director's open board, live), then lifts it. Prints `RESULT {json}`
// for the Rust side to check via the API.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run through tests/board.rs)`);
  return v;
};
const BASE = env("BOARD_URL");
const OUT = env("OUT_DIR");
const MQTT_PORT = env("MQTT_PORT");
const WAIT = 20_000;

function step(msg) { console.log(`[board] ${msg}`); }
function check(cond, msg) { if (!cond) throw new Error(`check failed: ${msg}`); }

function smoke(device, value) {
  const payload = JSON.stringify({ values: { smoke_db_m: value, battery_pct: 76 }, flags: ["smoke_alarm"] });
  execFileSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", MQTT_PORT, "-q", "1", "-t", `sensors/${device}/reading`, "-m", payload]);
}

// A reading with its own send time (epoch ms), so a trend can be shown in seconds.
function temperature(device, ts, value) {
  const payload = JSON.stringify({ ts, values: { temperature_c: value } });
  execFileSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", MQTT_PORT, "-q", "1", "-t", `sensors/${device}/reading`, "-m", payload]);
}

// playwright's launch already gives --headless and a fresh --user-data-dir (a temp profile per launch).
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
});

async function loggedIn(token, viewport) {
  const ctx = await browser.newContext({ viewport, locale: "zh-CN", timezoneId: "Asia/Shanghai" });
  // Count the shelf notices the board's own SSE listener receives, so the
  // live update is told apart from the Devices view's 10 s redraw.
  await ctx.addInitScript(() => {
    window.__shelfEvents = 0;
    const add = EventSource.prototype.addEventListener;
    EventSource.prototype.addEventListener = function (type, fn, o) {
      return add.call(this, type, type === "shelf" ? (e) => { window.__shelfEvents += 1; fn(e); } : fn, o);
    };
  });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => { console.error(`[page error] ${e.message}`); process.exitCode = 1; });
  await page.goto(BASE + "/");
  await page.locator("#login-form").waitFor({ state: "visible", timeout: WAIT });
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#live[data-live='1']").waitFor({ timeout: WAIT });
  return { ctx, page };
}

// The device shelved and lifted from the Devices view (the residual-current monitor that is silent).
const SHELVED = "rcm-3-2-db";

const card = (page, id) => page.locator(`article[data-alarm-id='${id}']`);

try {
  // --- duty officer: login; the token is asked for once, then a cookie
  const duty = await loggedIn(env("DUTY_TOKEN"), { width: 1440, height: 1000 });
  const { page } = duty;
  const cookies = await duty.ctx.cookies();
  const session = cookies.find((c) => c.name === "gw_session");
  check(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(cookies)}`);
  check(await page.evaluate(() => document.cookie) === "", "the session cookie is invisible to scripts");
  // The list is drawn after the first fetch, which follows the stream's "ready".
  await page.locator("#alarms .empty").waitFor({ state: "visible", timeout: WAIT });
  await page.evaluate(() => {
    window.__noReload = "still here";
    // Count the tones the board plays (Web Audio oscillators).
    window.__tones = 0;
    const make = AudioContext.prototype.createOscillator;
    AudioContext.prototype.createOscillator = function () { window.__tones += 1; return make.call(this); };
  });
  step("logged in as duty officer");
  // What the page's own files weigh on the wire (measured, never asserted; docs/benchmarks.md).
  const weights = await page.evaluate(() => [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
    .map((e) => ({ path: new URL(e.name).pathname, transfer: e.transferSize, body: e.encodedBodySize }))
    .filter((e, i, all) => ["/", "/board/app.js", "/board/app.css", "/board/gb26875.js", "/board/labels.json"].includes(e.path)
      && all.findIndex((x) => x.path === e.path) === i));
  const sum = (k) => weights.reduce((n, e) => n + e[k], 0);
  console.log(`[board] page bytes: ${sum("transfer")} transferred, ${sum("body")} body (${weights.map((e) => `${e.path} ${e.transfer}/${e.body}`).join(", ")})`);

  // --- a smoke reading arrives: the alarm appears live
  smoke("smk-3-2-501-k", 0.21);
  const first = page.locator("#alarms article[data-severity='critical']", { hasText: "3幢2单元501室" });
  await first.waitFor({ timeout: WAIT });
  check(await page.evaluate(() => window.__noReload) === "still here", "the page was not reloaded");
  const firstId = await first.getAttribute("data-alarm-id");
  const text = await first.innerText();
  for (const want of ["紧急", "烟感报警", "厨房", "张奶奶", "82岁", "独居", "0.21 dB/m", "0.15 dB/m", "未确认"]) {
    check(text.includes(want), `card shows ${want}: ${text}`);
  }
  await page.waitForFunction(() => document.title.includes("■ 紧急"), null, { timeout: WAIT });
  check(await page.locator("#urgent", { hasText: "3幢2单元501室" }).isVisible(), "the unacked critical alarm is in the flashing strip");
  check(await page.locator("[data-action=verify]").count() === 0, "a duty officer gets no verify button");
  check(await page.evaluate(() => window.__tones) > 0, "a new critical alarm beeps");
  step(`alarm ${firstId} appeared without reload; title flashes; it beeped`);

  // --- the compound plan: building 3 lights up in the critical colour, its home is listed
  await page.locator("#plan-box #building-3.hot[data-severity='critical']").waitFor({ timeout: WAIT });
  check(await page.locator("#plan-box #building-5.hot").count() === 0, "building 5 has no alarm and is not highlighted");
  const planItem = await page.locator("#plan-list li[data-building='3']").innerText();
  check(planItem.includes("3幢2单元501室") && planItem.includes("厨房"), `the plan list names the home: ${planItem}`);
  step("plan: building 3 highlighted, 3幢2单元501室 listed");

  // --- ack: the fire brigade's role is marked acked
  await card(page, firstId).locator("[data-action=ack]").click();
  await card(page, firstId).locator("tr[data-role='fire_brigade'][data-acked='yes']").waitFor({ timeout: WAIT });
  check(await card(page, firstId).locator("[data-action=ack]").count() === 0, "no second ack button");
  step("acked: fire brigade row shows ✓");

  // --- mute, then a second alarm elsewhere: it shows, silently
  await page.click("#mute");
  check(await page.getAttribute("#mute", "aria-pressed") === "true", "mute pressed");
  await page.evaluate(() => { window.__tones = 0; });
  smoke("smk-5-1-201-k", 0.32);
  const second = page.locator("#alarms article", { hasText: "5幢1单元201室" });
  await second.waitFor({ timeout: WAIT });
  check(await page.evaluate(() => window.__tones) === 0, "muted: no beep");
  await card(page, firstId).locator(".st-sent").first().waitFor({ timeout: WAIT });
  await card(page, firstId).locator(".st-failed").first().waitFor({ timeout: 30_000 });
  const order = await page.locator("#alarms article").evaluateAll((els) => els.map((e) => e.dataset.alarmId));
  check(order[0] === firstId, `oldest critical first: ${order}`);
  step("deliveries shown (sent and failed)");

  // --- category tabs with counts: two fire alarms, nothing electrical
  const catCount = async (c) => (await page.locator(`#cats [data-cat='${c}'] .n`).innerText()).trim();
  check(await catCount("fire") === "2" && await catCount("electrical") === "0" && await catCount("all") === "2",
    `category counts: fire ${await catCount("fire")}, electrical ${await catCount("electrical")}`);
  await page.click("#cats [data-cat='health']");
  check(await page.locator("#alarms article").count() === 0, "the device-health tab shows no fire alarm");
  await page.click("#cats [data-cat='all']");
  await page.locator("#alarms article").nth(1).waitFor({ timeout: WAIT });
  check(await card(page, firstId).locator("tr[data-role='director'] .ch", { hasText: "联动" }).count() === 0, "no linked-sounder command under the director");
  step("category tabs count 2 fire, 0 electrical");

  mkdirSync(OUT, { recursive: true });
  await page.click("#mute"); // sound back on for the picture
  await page.mouse.move(0, 0);
  await page.locator("#toast").waitFor({ state: "hidden", timeout: WAIT });
  await page.screenshot({ path: join(OUT, "board.png"), fullPage: true, animations: "disabled" });
  if (process.env.DOCS_SCREENSHOT) {
    mkdirSync(dirname(process.env.DOCS_SCREENSHOT), { recursive: true });
    copyFileSync(join(OUT, "board.png"), process.env.DOCS_SCREENSHOT);
  }

  // --- the same board on a phone, in English
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  await phone.addCookies(cookies);
  const pp = await phone.newPage();
  await pp.goto(BASE + "/");
  await pp.locator("#alarms article").first().waitFor({ timeout: WAIT });
  await pp.locator("#app .lang-toggle").click();
  await pp.locator("#alarms article", { hasText: "Smoke alarm" }).first().waitFor({ timeout: WAIT });
  const overflow = await pp.evaluate(() => document.documentElement.scrollWidth - 390);
  check(overflow <= 1, `no sideways scrolling on a phone (overflow ${overflow}px)`);
  await pp.screenshot({ path: join(OUT, "board-phone.png"), fullPage: true });
  await pp.click(".tab[data-view=devices]");
  await pp.locator("tr[data-device-id] [data-action=shelve-device]").first().click();
  await pp.locator("#devices form.shelve-form").waitFor({ timeout: WAIT });
  const devOverflow = await pp.evaluate(() => document.documentElement.scrollWidth - 390);
  await pp.screenshot({ path: join(OUT, "board-phone-devices.png"), fullPage: true });
  check(devOverflow <= 1, `the Devices view with a shelve form open fits a phone (overflow ${devOverflow}px)`);
  await phone.close();
  step("phone layout in English fits the screen");

  // --- mute the 5幢 alarm alone; speech and desktop notifications on (the tab "hidden")
  const secondId = await second.getAttribute("data-alarm-id");
  await card(page, secondId).locator("[data-action=mute-alarm]").click();
  await card(page, secondId).locator("[data-action=mute-alarm][aria-pressed='true']").waitFor({ timeout: WAIT });
  await page.evaluate(() => {
    window.__spoken = [];
    window.__notified = [];
    Object.defineProperty(window, "speechSynthesis", { configurable: true, value: { speak: (u) => window.__spoken.push(u.text) } });
    if (typeof window.SpeechSynthesisUtterance === "undefined") window.SpeechSynthesisUtterance = class { constructor(t) { this.text = t; } };
    window.Notification = class { constructor(title, o) { window.__notified.push(`${title} ${o.body}`); } static get permission() { return "granted"; } };
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    window.__tones = 0;
  });
  await page.click("#speak");
  check(await page.getAttribute("#speak", "aria-pressed") === "true", "speech on");

  // --- a trend alarm says what the trend saw, where a threshold alarm shows its level
  const now = Date.now();
  temperature("tmp-3-2-501-k", now - 60_000, 30);
  temperature("tmp-3-2-501-k", now, 39.5);
  const trend = page.locator("#alarms article", { hasText: "温升过快" });
  await trend.waitFor({ timeout: WAIT });
  const trendCard = await trend.innerText();
  check(trendCard.includes("1分钟内上升 9.5 °C（温升过快）"), `trend card names what it saw: ${trendCard}`);
  step("a rate-of-rise alarm shows 1分钟内上升 9.5 °C（温升过快）");
  check(await page.evaluate(() => window.__tones) > 0, "muting one alarm keeps the beep of a new one");
  check(await page.evaluate(() => document.body.dataset.lastTone) === "fire", "a temperature alarm plays the fire tone");
  const spoken = await page.evaluate(() => window.__spoken);
  check(spoken.some((t) => t.includes("3幢2单元501室") && t.includes("厨房")), `spoken: ${JSON.stringify(spoken)}`);
  const notified = await page.evaluate(() => window.__notified);
  check(notified.some((t) => t.includes("3幢2单元501室")), `desktop notification while hidden: ${JSON.stringify(notified)}`);
  await page.evaluate(() => Object.defineProperty(document, "hidden", { configurable: true, get: () => false }));
  step("per-alarm mute keeps the new alarm's tone; spoken and notified");

  // --- the detail drawer: timeline and the readings that rose before the trend alarm
  await trend.locator("[data-action=detail]").click();
  const chart = page.locator("#drawer #chart");
  await chart.waitFor({ timeout: WAIT });
  const values = (await chart.getAttribute("data-values")).split(",").map(Number);
  check(values.length >= 2 && values[0] === 30 && values[values.length - 1] === 39.5, `chart values: ${values}`);
  await page.locator("#drawer #timeline li[data-what='opened']").waitFor({ timeout: WAIT });
  await page.locator("#drawer #timeline li[data-what='delivery']").first().waitFor({ timeout: WAIT });
  await page.screenshot({ path: join(OUT, "board-drawer.png"), animations: "disabled" });
  await page.click("#drawer-close");
  step(`drawer: chart ${values.join(" → ")} °C and the timeline`);

  // --- silence the linked sounders of the first (cooking) alarm; the timeline says who
  await card(page, firstId).locator("[data-action=silence]").click();
  await page.locator("#toast", { hasText: "消音" }).waitFor({ timeout: WAIT });
  await card(page, firstId).locator("[data-action=detail]").click();
  const silenced = page.locator("#drawer #timeline li[data-what='silenced']");
  await silenced.waitFor({ timeout: WAIT });
  check((await silenced.innerText()).includes("e2e-duty"), `who silenced: ${await silenced.innerText()}`);
  await page.click("#drawer-close");
  step("silenced the linked sounders; the timeline records e2e-duty");

  // --- mute persists across a reload
  await page.click("#mute");
  await page.reload();
  await page.locator("#live[data-live='1']").waitFor({ timeout: WAIT });
  check(await page.getAttribute("#mute", "aria-pressed") === "true", "mute survives a reload");

  // --- resolve with a cause and a note
  await card(page, firstId).locator("[data-action=resolve]").click();
  await card(page, firstId).locator("select[name=cause]").selectOption("cooking");
  await card(page, firstId).locator("input[name=note]").fill("厨房油烟，已开窗通风，老人安全");
  await card(page, firstId).locator("form button[type=submit]").click();
  await page.locator(`#resolved article[data-alarm-id='${firstId}']`).waitFor({ timeout: WAIT });
  check(await page.locator("[data-action=verify]").count() === 0, "still no verify button for the duty officer");
  step("resolved; awaiting verification; duty officer cannot verify");

  // --- devices and households views
  // A director's board is open on the Devices view too: it must follow the shelf live.
  const director = await loggedIn(env("DIRECTOR_TOKEN"), { width: 1280, height: 900 });
  await director.page.click(".tab[data-view=devices]");
  const dirRow = (s) => director.page.locator(`tr[data-device-id='${SHELVED}'][data-shelved='${s}']`);
  await dirRow("no").waitFor({ timeout: WAIT });
  await page.click(".tab[data-view=devices]");
  await page.locator("tr[data-device-id='smk-3-2-501-k'] td.on").waitFor({ timeout: WAIT });
  check((await page.locator("tr[data-device-id='smk-3-2-501-k']").innerText()).includes("76%"), "battery shown");
  check(await page.locator("tr[data-device-id='rcm-3-2-db'] td.off").count() === 1, "a silent device shows offline");

  // --- 搁置 from the Devices view: the form says a shelf holds back device-health notices only
  const devRow = page.locator(`tr[data-device-id='${SHELVED}']`);
  const shelvesNow = () => page.evaluate(async () => (await (await fetch("/api/v1/shelves")).json()).shelves);
  await devRow.locator("[data-action=shelve-device]").click();
  const form = devRow.locator("form.shelve-form");
  await form.waitFor({ timeout: WAIT });
  const note = await form.locator(".shelf-note").innerText();
  for (const want of ["故障", "防拆", "低电量", "离线", "烟感", "电气", "永不搁置"]) check(note.includes(want), `the shelf note names ${want}: ${note}`);
  await form.locator("select[name=for]").selectOption("8h");
  // A blank reason: the API refuses and the row shows its words; nothing is shelved.
  await form.locator("input[name=reason]").fill("   ");
  await form.locator("button[type=submit]").click();
  await devRow.locator(".shelf-error", { hasText: "reason is required" }).waitFor({ timeout: WAIT });
  check((await shelvesNow()).length === 0, "a refused shelve stores nothing");
  // What is typed survives a redraw (live change or the 10 s tick), and the cursor stays in it.
  await form.locator("input[name=reason]").fill("漏保离线");
  await page.evaluate(() => renderView());
  await page.waitForFunction(() => document.activeElement?.name === "reason" && document.activeElement.value === "漏保离线",
    null, { timeout: WAIT });
  check(await form.locator("select[name=for]").inputValue() === "8h", "the chosen duration survives a redraw");
  const reasonText = "漏保离线反复报警，待电工更换";
  await form.locator("input[name=reason]").fill(reasonText);
  await form.locator("button[type=submit]").click();
  await page.locator(`tr[data-device-id='${SHELVED}'][data-shelved='yes']`).waitFor({ timeout: WAIT });
  const shelvedText = await devRow.innerText();
  check(shelvedText.includes("已搁置至") && shelvedText.includes(reasonText) && shelvedText.includes("e2e-duty"),
    `the row says until when, by whom and why: ${shelvedText}`);
  check(await devRow.locator(".shelf-error").count() === 0, "the refusal is gone after a good shelve");
  const listed = (await shelvesNow()).find((x) => x.device_id === SHELVED);
  check(listed && listed.reason === reasonText && listed.until - listed.at === 8 * 3600e3, `GET /api/v1/shelves: ${JSON.stringify(listed)}`);
  await dirRow("yes").waitFor({ timeout: WAIT });
  check(await director.page.evaluate(() => window.__shelfEvents) > 0, "the director's board heard the shelf over SSE");
  await page.screenshot({ path: join(OUT, "board-devices-shelved.png"), fullPage: true });
  step(`shelved ${SHELVED} for 8h from the Devices view; the director's board followed live`);

  // --- the same row in English
  await page.locator("#app .lang-toggle").click();
  await devRow.locator("[data-action=unshelve]", { hasText: "Lift shelf" }).waitFor({ timeout: WAIT });
  check((await devRow.innerText()).includes("Shelved until"), `English row: ${await devRow.innerText()}`);
  await page.locator("#app .lang-toggle").click();

  // --- 解除搁置 from the same view: the API no longer lists it, the director sees it lifted
  await devRow.locator("[data-action=unshelve]", { hasText: "解除搁置" }).click();
  await page.locator(`tr[data-device-id='${SHELVED}'][data-shelved='no'] [data-action=shelve-device]`).waitFor({ timeout: WAIT });
  check(!(await shelvesNow()).some((x) => x.device_id === SHELVED), "lifted: GET /api/v1/shelves no longer lists it");
  await dirRow("no").waitFor({ timeout: WAIT });
  step(`lifted the shelf of ${SHELVED}`);
  await page.click(".tab[data-view=households]");
  await page.locator("[data-household-id='h-3-2-501']", { hasText: "张伟" }).waitFor({ timeout: WAIT });
  await page.screenshot({ path: join(OUT, "board-households.png"), fullPage: true });
  check(await page.locator("[data-action=send-test]").count() === 0, "no 发送测试 for the duty officer");
  step("devices and households views");

  // --- a director closes the loop
  await director.page.click(".tab[data-view=alarms]");
  const verify = director.page.locator(`#resolved article[data-alarm-id='${firstId}'] [data-action=verify]`);
  await verify.click();
  await director.page.locator(`article[data-alarm-id='${firstId}']`).waitFor({ state: "detached", timeout: WAIT });
  step("director verified; alarm closed");

  // --- 发送测试: the director tests the son's channels from the households view;
  // e-mail reaches the SMTP receiver (confirmed), the SMS gateway is down (refused).
  await director.page.click(".tab[data-view=households]");
  const son = director.page.locator("[data-household-id='h-3-2-501'] .test-send[data-contact-id='c-zhang-son']");
  await son.locator("[data-action=send-test]").click();
  await son.locator(".test-result[data-channel=email][data-outcome=confirmed]").waitFor({ timeout: WAIT });
  await son.locator(".test-result[data-channel=sms][data-outcome=refused]").waitFor({ timeout: WAIT });
  const answers = await son.innerText();
  check(answers.includes("已确认收到") && answers.includes("被拒绝"), `send test answers: ${answers}`);
  await director.page.screenshot({ path: join(OUT, "board-send-test.png"), fullPage: true });
  step(`send test from the board: ${answers}`);
  await director.page.click(".tab[data-view=alarms]");

  // The duty officer's board drops it too, live.
  await page.click(".tab[data-view=alarms]");
  await page.locator(`article[data-alarm-id='${firstId}']`).waitFor({ state: "detached", timeout: WAIT });

  // --- history: the verified alarm, filtered by kind and date, and in the CSV export
  await page.click(".tab[data-view=history]");
  const row = page.locator(`#history tr[data-alarm-id='${firstId}']`);
  await row.waitFor({ timeout: WAIT });
  const today = await page.evaluate(() => new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10));
  await page.selectOption("#history-form select[name=kind]", "fire");
  await page.fill("#history-form input[name=since]", today);
  await page.fill("#history-form input[name=until]", today);
  await page.click("#history-form button[type=submit]");
  await row.waitFor({ timeout: WAIT });
  check((await row.innerText()).includes("烹饪油烟"), `the cause is shown: ${await row.innerText()}`);
  const csv = await page.evaluate(async () => (await fetch(document.querySelector("#csv").href)).text());
  check(csv.includes(firstId) && csv.includes("cooking") && csv.includes("3幢2单元501室"), `CSV export: ${csv}`);
  await page.selectOption("#history-form select[name=kind]", "electrical");
  await page.click("#history-form button[type=submit]");
  await row.waitFor({ state: "detached", timeout: WAIT });
  await page.screenshot({ path: join(OUT, "board-history.png"), fullPage: true });
  await page.selectOption("#history-form select[name=kind]", "smoke");
  await page.click("#history-form button[type=submit]");
  await row.click();
  await page.locator("#drawer #timeline li[data-what='verified']").waitFor({ timeout: WAIT });
  await page.click("#drawer-close");
  await page.click(".tab[data-view=alarms]");
  step("history: filtered by kind and date, CSV export, drawer from a row");

  // --- logout asks for the token again
  await page.click("#logout");
  await page.locator("#login-form").waitFor({ state: "visible", timeout: WAIT });
  step("logout");

  console.log(`RESULT ${JSON.stringify({ first: firstId, second: secondId, shelved: SHELVED })}`);
} finally {
  await browser.close();
}
