// Drives weir's live dashboard in Debian's headless Chromium, for tests/dashboard.rs.
//
//   node drive.mjs ADMIN_URL EVENTS SCREENSHOT
//
// Prints one JSON line per step on stdout, and after the "paused" step waits for a line
// on stdin (the test has compared the page with the sink) before resuming the pipeline.
// Every wait is for something the page or the host shows, never for a fixed time.
import { launch } from "./browser.mjs";
import { createInterface } from "node:readline";

const [url, events, screenshot] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (step, data) => console.log(JSON.stringify({ step, ...data }));
const api = async (path, method = "GET") => {
  const response = await fetch(url + path, { method });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return method === "GET" ? response.json() : response.text();
};

// What the page shows: the state, the commit count, the results table and the tiles.
const read = (page) => page.evaluate(() => ({
  state: document.getElementById("state").textContent,
  commits: Number(document.getElementById("commits").textContent),
  throughput: document.getElementById("throughput").textContent,
  latency: document.getElementById("latency").textContent,
  plugins: [...document.querySelectorAll("#plugins tbody tr")].map((tr) => tr.children[1].textContent),
  charts: document.querySelectorAll(".charts canvas").length,
  rows: [...document.querySelectorAll("#results tbody tr")].map((tr) => ({
    start: Number(tr.dataset.start),
    key: JSON.parse(tr.dataset.key),
    values: Object.fromEntries([...tr.querySelectorAll("td[data-column]")]
      .map((td) => [td.dataset.column, JSON.parse(td.dataset.value)])),
    text: [...tr.children].map((td) => td.textContent),
  })),
}));

// Waits until the host has committed everything it checkpointed and the page shows that commit.
async function settled(page) {
  for (;;) {
    const [status, results] = await Promise.all([api("api/status"), api("api/results")]);
    if (results.commits === status.checkpoints) {
      await page.waitForFunction((n) => Number(document.getElementById("commits").textContent) >= n, results.commits);
      return status;
    }
    await page.waitForTimeout(50); // polling the host's API, not standing in for a result
  }
}

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url);

  await page.waitForFunction(() => document.querySelectorAll("#results tbody tr").length > 0
    && document.getElementById("state").textContent === "running");
  const first = await read(page);
  say("first", first);

  // The numbers change while events flow.
  await page.waitForFunction((before) => {
    const now = [...document.querySelectorAll("#results tbody td[data-value]")].map((td) => td.dataset.value).join();
    return Number(document.getElementById("commits").textContent) > before.commits && now !== before.values;
  }, { commits: first.commits, values: first.rows.flatMap((r) => Object.values(r.values).map(JSON.stringify)).join() });
  say("changed", await read(page));

  // Paused, the sink stands still: the page must then show exactly what it holds.
  await api("api/pipeline/pause", "POST");
  await page.waitForFunction(() => document.getElementById("state").textContent === "paused");
  await settled(page);
  say("paused", await read(page));
  await lines.next();

  await api("api/pipeline/resume", "POST");
  await page.waitForFunction(() => document.getElementById("state").textContent === "running");
  // The screenshot, once the charts span a few minutes.
  for (;;) {
    const results = await api("api/results");
    if (new Set(results.rows.map((r) => r.start)).size >= 20) break;
    await page.waitForTimeout(50);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  // Drained: every event read, and a checkpoint taken after the last one has landed.
  for (;;) {
    const status = await api("api/status");
    if (status.records >= Number(events)) {
      const after = status.checkpoints + 1;
      for (;;) {
        const results = await api("api/results");
        if (results.commits >= after) break;
        await page.waitForTimeout(50);
      }
      break;
    }
    await page.waitForTimeout(50);
  }
  await settled(page);
  say("drained", { ...(await read(page)), errors });
} finally {
  await browser.close();
}
