// The duty board in a real headless Chromium (Debian's /usr/bin/chromium),
// driven by playwright-core. Started by tests/board.rs against a running
// gridwatch; env: BOARD_URL, DUTY_TOKEN, DIRECTOR_TOKEN, MQTT_PORT, OUT_DIR
// (screenshots), DOCS_SCREENSHOT (optional: also write the README picture).
//
// Walks an alarm from first sight to closed: a duty officer logs in, a smoke
// reading arrives over MQTT (mosquitto_pub) and the alarm appears without a
// reload, ack marks the fire brigade's role acked, resolve moves it to
// "awaiting verification" — where the duty officer gets no verify button and
// a director does. Prints `RESULT {json}` for the Rust side to check via the API.

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
  const page = await ctx.newPage();
  page.on("pageerror", (e) => { console.error(`[page error] ${e.message}`); process.exitCode = 1; });
  await page.goto(BASE + "/");
  await page.locator("#login-form").waitFor({ state: "visible", timeout: WAIT });
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#live[data-live='1']").waitFor({ timeout: WAIT });
  return { ctx, page };
}

const card = (page, id) => page.locator(`article[data-alarm-id='${id}']`);

try {
  // --- duty officer: login; the token is asked for once, then a cookie
  const duty = await loggedIn(env("DUTY_TOKEN"), { width: 1440, height: 1000 });
  const { page } = duty;
  const cookies = await duty.ctx.cookies();
  const session = cookies.find((c) => c.name === "gw_session");
  check(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(cookies)}`);
  check(await page.evaluate(() => document.cookie) === "", "the session cookie is invisible to scripts");
  check(await page.locator(".empty").isVisible(), "no alarms yet");
  await page.evaluate(() => {
    window.__noReload = "still here";
    // Count the tones the board plays (Web Audio oscillators).
    window.__tones = 0;
    const make = AudioContext.prototype.createOscillator;
    AudioContext.prototype.createOscillator = function () { window.__tones += 1; return make.call(this); };
  });
  step("logged in as duty officer");

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
  await phone.close();
  step("phone layout in English fits the screen");

  // --- a trend alarm says what the trend saw, where a threshold alarm shows its level
  const now = Date.now();
  temperature("tmp-3-2-501-k", now - 60_000, 30);
  temperature("tmp-3-2-501-k", now, 39.5);
  const trend = page.locator("#alarms article", { hasText: "温升过快" });
  await trend.waitFor({ timeout: WAIT });
  const trendCard = await trend.innerText();
  check(trendCard.includes("1分钟内上升 9.5 °C（温升过快）"), `trend card names what it saw: ${trendCard}`);
  step("a rate-of-rise alarm shows 1分钟内上升 9.5 °C（温升过快）");

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
  await page.click(".tab[data-view=devices]");
  await page.locator("tr[data-device-id='smk-3-2-501-k'] td.on").waitFor({ timeout: WAIT });
  check((await page.locator("tr[data-device-id='smk-3-2-501-k']").innerText()).includes("76%"), "battery shown");
  check(await page.locator("tr[data-device-id='rcm-3-2-db'] td.off").count() === 1, "a silent device shows offline");
  await page.click(".tab[data-view=households]");
  await page.locator("[data-household-id='h-3-2-501']", { hasText: "张伟" }).waitFor({ timeout: WAIT });
  await page.screenshot({ path: join(OUT, "board-households.png"), fullPage: true });
  step("devices and households views");

  // --- a director closes the loop
  const director = await loggedIn(env("DIRECTOR_TOKEN"), { width: 1280, height: 900 });
  const verify = director.page.locator(`#resolved article[data-alarm-id='${firstId}'] [data-action=verify]`);
  await verify.click();
  await director.page.locator(`article[data-alarm-id='${firstId}']`).waitFor({ state: "detached", timeout: WAIT });
  step("director verified; alarm closed");

  // The duty officer's board drops it too, live.
  await page.click(".tab[data-view=alarms]");
  await page.locator(`article[data-alarm-id='${firstId}']`).waitFor({ state: "detached", timeout: WAIT });

  // --- logout asks for the token again
  await page.click("#logout");
  await page.locator("#login-form").waitFor({ state: "visible", timeout: WAIT });
  step("logout");

  console.log(`RESULT ${JSON.stringify({ first: firstId })}`);
} finally {
  await browser.close();
}
