// Drives the quality part of weir's dashboard in Debian's headless Chromium, for
// tests/quality.rs.
//
//   node quality.mjs ADMIN_URL
//
// Prints a JSON line once the page shows two anomalies, marked on the charts; then waits
// for a line on stdin (the test has deployed a bad version) and prints another once the
// page shows its automatic rollback (the screenshot lands in $WEIR_SCREENSHOT when set).
// Every wait is for something the page shows.
import { launch } from "./browser.mjs";
import { createInterface } from "node:readline";

const [url] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (step, data) => console.log(JSON.stringify({ step, ...data }));

const read = (page) => page.evaluate(() => ({
  shown: !document.getElementById("quality").hidden,
  tiles: Object.fromEntries([...document.querySelectorAll("#quality-tiles .tile")]
    .map((t) => [t.dataset.score, { text: t.querySelector("p").textContent, bad: t.querySelector("p").className === "bad" }])),
  rules: [...document.querySelectorAll("#rules tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent)),
  anomalies: [...document.querySelectorAll("#anomalies tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent)),
  events: [...document.querySelectorAll("#alerts tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent)),
  marks: window.weirMarks,
}));

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelectorAll("#anomalies tbody tr").length >= 2
    && window.weirMarks[0] + window.weirMarks[1] >= 2, null, { timeout: 120000 });
  say("anomalies", { ...(await read(page)), errors });
  await lines.next();
  await page.waitForFunction(() => [...document.querySelectorAll("#alerts tbody tr")]
    .some((tr) => tr.dataset.state === "rollback"), null, { timeout: 120000 });
  if (process.env.WEIR_SCREENSHOT) await page.screenshot({ path: process.env.WEIR_SCREENSHOT, fullPage: true });
  say("rollback", { ...(await read(page)), errors });
} finally {
  await browser.close();
}
