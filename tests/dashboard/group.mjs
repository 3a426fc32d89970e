// Loads a host's dashboard in Debian's headless Chromium, for tests/scale_out.rs:
//
//   node group.mjs ADMIN_URL HOSTS
//
// waits until the page shows HOSTS hosts in its group table and the latest windows in its
// results table, then prints what it shows as one JSON line: the hosts (name, partitions)
// and the result rows (window start, key, values).
import { launch } from "./browser.mjs";

const [url, hosts] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction((n) => document.querySelectorAll("#hosts tbody tr").length === n
    && document.querySelectorAll("#results tbody tr").length > 0, Number(hosts));
  const shown = await page.evaluate(() => ({
    summary: document.getElementById("group-summary").textContent,
    hosts: [...document.querySelectorAll("#hosts tbody tr")].map((tr) => ({
      host: tr.dataset.host,
      partitions: tr.children[3].textContent,
    })),
    rows: [...document.querySelectorAll("#results tbody tr")].map((tr) => ({
      start: Number(tr.dataset.start),
      key: JSON.parse(tr.dataset.key),
      values: Object.fromEntries([...tr.querySelectorAll("td[data-column]")]
        .map((td) => [td.dataset.column, JSON.parse(td.dataset.value)])),
    })),
  }));
  console.log(JSON.stringify(shown));
} finally {
  await browser.close();
}
