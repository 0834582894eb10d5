// The district board (gridwatch district) in a real headless Chromium, driven
// by playwright-core. Started by tests/district.rs against a running district
// daemon; env: DISTRICT_URL, DISTRICT_TOKEN, SITE (the box with a fire),
// SITE_NAME (its compound's name), OFFICER (the name typed at login), OUT_DIR.
//
// A duty officer logs in, sees the compound's fire in the alarm table under
// its compound, and acks it; the row then names the officer (the ack went to
// the box as a signed command and came back up with the box's event).
// Prints `RESULT {json}` for the Rust side to check on the box itself.

import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run through tests/district.rs)`);
  return v;
};
const BASE = env("DISTRICT_URL");
const SITE = env("SITE");
const SITE_NAME = env("SITE_NAME");
const OFFICER = env("OFFICER");
const OUT = env("OUT_DIR");
const WAIT = 30_000;

function step(msg) { console.log(`[district] ${msg}`); }
function check(cond, msg) { if (!cond) throw new Error(`check failed: ${msg}`); }

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});

try {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: "zh-CN", timezoneId: "Asia/Shanghai" });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => { console.error(`[page error] ${e.message}`); process.exitCode = 1; });
  await page.goto(BASE + "/");
  await page.locator("#loginform").waitFor({ state: "visible", timeout: WAIT });
  await page.fill("#tok", env("DISTRICT_TOKEN"));
  await page.fill("#who", OFFICER);
  await page.click("#loginform button[type=submit]");
  await page.locator("#app").waitFor({ state: "visible", timeout: WAIT });
  step("logged in");

  // The fire shows under its compound (the table lists every compound's open alarms).
  const row = page.locator(`#alarms tr[data-site='${SITE}']`, { hasText: "烟感火警" });
  await row.waitFor({ timeout: WAIT });
  const text = await row.innerText();
  check(text.includes(SITE_NAME), `the row names the compound ${SITE_NAME}: ${text}`);
  check(text.includes("未确认"), `unacked at first: ${text}`);
  const alarmId = await row.getAttribute("data-alarm");
  // The compound's box is shown online with its open alarm counted.
  const box = page.locator(`#boxes tr[data-site='${SITE}']`);
  check((await box.innerText()).includes("在线"), `box online: ${await box.innerText()}`);
  await page.screenshot({ path: join(OUT, "district-fire.png"), fullPage: true });
  step(`fire ${alarmId} shown under ${SITE_NAME}`);

  // Ack from the district: the row comes back acked, naming the officer.
  await row.locator("button.ack").click();
  const acked = page.locator(`#alarms tr[data-alarm='${alarmId}']`, { hasText: "已确认" });
  await acked.waitFor({ timeout: WAIT });
  check((await acked.innerText()).includes(OFFICER), `the ack names ${OFFICER}: ${await acked.innerText()}`);
  check(await acked.locator("button.ack").count() === 0, "no second ack button once the fire brigade acked");
  // Most urgent first: the fire is above the dead boxes' rows.
  const first = page.locator("#alarms tbody tr").first();
  check(await first.getAttribute("data-alarm") === alarmId, `the fire is the first row: ${await first.innerText()}`);
  // Dead boxes are named by their compound, times are local wall-clock.
  const dead = page.locator("#alarms tbody tr", { hasText: "box_offline" }).first();
  if (await dead.count()) check(/龙井苑小区/.test(await dead.innerText()), `a dead box named by its compound: ${await dead.innerText()}`);
  check(!/\d{4}-\d\d-\d\dT/.test(await page.locator("#alarms").innerText()), "no raw UTC timestamps in the alarm table");
  await page.screenshot({ path: join(OUT, "district-acked.png"), fullPage: true });
  step("acked from the district board; the box's event confirmed it");
  console.log(`RESULT ${JSON.stringify({ alarm: alarmId })}`);
} finally {
  await browser.close();
}
