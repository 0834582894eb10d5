// The 查岗 banner of the duty board in a real headless Chromium (Debian's
// /usr/bin/chromium), driven by playwright-core. Started by tests/gb26875.rs
// after its centre simulator sent a 查岗; env: BOARD_URL, DUTY_TOKEN, OUT_DIR.
// A duty officer logs in, sees the banner with its countdown, presses
// 查岗应答; the Rust side then checks the centre received the type-24 frame.

import { chromium } from "playwright-core";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run through tests/gb26875.rs)`);
  return v;
};
const BASE = env("BOARD_URL");
const OUT = env("OUT_DIR");
const WAIT = 20_000;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "zh-CN" });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => { console.error(`[page error] ${e.message}`); process.exitCode = 1; });
  await page.goto(BASE + "/");
  await page.locator("#login-form").waitFor({ state: "visible", timeout: WAIT });
  await page.fill("#token", env("DUTY_TOKEN"));
  await page.click("#login-form button[type=submit]");
  const banner = page.locator("#gb-inspection");
  await banner.waitFor({ state: "visible", timeout: WAIT });
  const text = await page.locator("#gb-inspection-text").innerText();
  if (!/查岗/.test(text) || !/\d+:\d\d/.test(text)) throw new Error(`banner text: ${text}`);
  console.log(`[gb26875] banner: ${text}`);
  await page.screenshot({ path: join(OUT, "inspection.png") });
  const by = await page.locator("#acting-as").inputValue();
  await page.click("#gb-answer");
  await page.locator("#gb-inspection[data-answered='1']").waitFor({ timeout: WAIT });
  console.log(`[gb26875] answered: ${await page.locator("#gb-inspection-text").innerText()}`);
  console.log(`RESULT ${JSON.stringify({ by })}`);
} finally {
  await browser.close();
}
