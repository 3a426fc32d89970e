// The live dashboard: one server-sent event stream carries the host's status (twice a
// second) and the committed results of the latest windows (whenever a commit lands).
"use strict";

const TABLE_WINDOWS = 3;   // window starts listed in the results table
const CHART_WINDOWS = 15;  // window starts charted
const RATE_SPAN_MS = 3000; // rates are taken over about this much history
const STALE_MS = 3000;     // no event for this long: the host is gone
const COLORS = ["#2e90fa", "#f79009", "#12b76a", "#ee46bc", "#7a5af8", "#f04438", "#06aed4", "#667085",
  "#a15c07", "#3b7c0f", "#1d2939", "#c11574"];

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const history = []; // {at, records, dead, late}
const charts = [null, null];
let chartKeys = "";
let lastEvent = 0;

const number = (v, digits = 0) =>
  v == null ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const clock = (ms) => new Date(ms).toISOString().slice(11, 16);
const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
const keyText = (key) => key.map((k) => (k == null ? "∅" : String(k))).join(" / ");

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// The rate of `field` per second over the recent history.
function rate(field) {
  const last = history[history.length - 1];
  const first = history.find((h) => last.at - h.at <= RATE_SPAN_MS) || last;
  const span = (last.at - first.at) / 1000;
  return span > 0 ? (last[field] - first[field]) / span : null;
}

// The whole group as the hosts record themselves in the sink: the same on every host.
function showGroup(group) {
  $("group").hidden = !group;
  if (!group) return;
  const lag = group.lag == null ? "lag unknown" : `lag ${number(group.lag)}`;
  $("group-summary").textContent =
    `${group.hosts.length} host(s), ${number(group.events_per_s)} events/s, ${lag}, ` +
    `${number(group.committed_rows)}${group.committed_rows >= 1e6 ? "+" : ""} rows committed` +
    (group.lost.length ? `; lost: ${group.lost.join(", ")}` : "");
  $("hosts").tBodies[0].replaceChildren(...group.hosts.map((h) => {
    const tr = el("tr");
    tr.append(el("td", h.holder), el("td", h.admin ?? "–"), el("td", h.version), el("td", h.partitions.join(", ")),
      el("td", number(h.records), "num"), el("td", number(h.events_per_s), "num"),
      el("td", h.lag == null ? "–" : number(h.lag), "num"));
    tr.dataset.host = h.holder;
    return tr;
  }));
}

function showStatus(now, s) {
  $("pipeline").textContent = s.pipeline;
  history.push({ at: now, records: s.records, dead: s.dead_letters, late: s.late });
  while (history.length > 2 && now - history[0].at > 2 * RATE_SPAN_MS) history.shift();

  const state = $("state");
  if (s.sink_error) {
    state.textContent = "sink failing";
    state.className = "badge failing";
    state.title = s.sink_error;
  } else if (s.troubles && s.troubles.length) {
    state.textContent = "degraded";
    state.className = "badge held";
    state.title = s.troubles.join("\n");
  } else if (s.held) {
    state.textContent = s.held.startsWith("circuit breaker") ? "breaker open" : "paused";
    state.className = "badge held";
    state.title = s.held;
  } else {
    state.textContent = "running";
    state.className = "badge running";
    state.title = "";
  }

  $("throughput").textContent = number(rate("records"));
  $("lag").textContent = s.lags.length ? number(s.lags.reduce((sum, [, n]) => sum + n, 0)) : "–";
  $("lag").title = s.lags.map(([p, n]) => `${p}: ${n}`).join("\n");
  $("latency").textContent = s.latency_ms ? `${s.latency_ms[0]} / ${s.latency_ms[1]} ms` : "–";
  const share = (n) => (s.records ? ` (${number((100 * n) / s.records, 2)} % of records)` : "");
  $("dead-rate").textContent = number(rate("dead"), 1) + "/s";
  $("dead-total").textContent = `${number(s.dead_letters)} in all${share(s.dead_letters)}`;
  $("late-rate").textContent = number(rate("late"), 1) + "/s";
  $("late-total").textContent = `${number(s.late)} in all${share(s.late)}`;
  const open = !!(s.held && s.held.startsWith("circuit breaker"));
  $("breaker").textContent = open ? "open" : "closed";
  $("breaker").className = open ? "bad" : "";
  $("breaker-trips").textContent = `opened ${s.breaker_trips} time(s)`;
  $("watermark").textContent = s.watermark_ms == null ? "–" : clock(s.watermark_ms);
  $("watermark").title = s.watermark_ms == null ? "" : when(s.watermark_ms);
  $("checkpoint").textContent = s.last_checkpoint_ms == null
    ? "no checkpoint yet"
    : `${s.checkpoints} checkpoints, last ${number((now - s.last_checkpoint_ms) / 1000, 1)} s ago`;

  showGroup(s.group);

  const body = $("plugins").tBodies[0];
  body.replaceChildren(...s.measured.stages.map((stage) => {
    const tr = el("tr");
    const mean = stage.calls.count ? (1e6 * stage.calls.sum) / stage.calls.count : null;
    tr.append(el("td", stage.stage), el("td", stage.version), el("td", number(stage.events_in), "num"),
      el("td", number(stage.events_out), "num"), el("td", mean == null ? "–" : `${number(mean, 1)} µs`, "num"));
    tr.dataset.stage = stage.stage;
    return tr;
  }));
  if (s.shadow) {
    const tr = el("tr", null, "open");
    tr.append(el("td", `${s.shadow[0]} (shadow)`), el("td", s.shadow[1]), el("td", "see weir plugin diff"));
    tr.children[2].colSpan = 3;
    body.append(tr);
  }
}

// The two first numeric columns are charted, one line per key.
function showCharts(results) {
  const numeric = results.values
    .map((c, i) => ({ ...c, i }))
    .filter((c) => c.type === "int64" || c.type === "float64")
    .slice(0, 2);
  const starts = [...new Set(results.rows.map((r) => r.start))].sort((a, b) => a - b).slice(-CHART_WINDOWS);
  const keys = [...new Set(results.rows.map((r) => keyText(r.key)))].sort();
  const at = new Map(results.rows.map((r) => [`${r.start}|${keyText(r.key)}`, r]));
  const by = results.keys.map((k) => k.name).join(", ");
  numeric.forEach((column, n) => {
    $(`chart-${n}-title`).textContent = `${column.name} per window, by ${by}`;
    const data = [starts.map((s) => s / 1000)];
    for (const key of keys) data.push(starts.map((s) => at.get(`${s}|${key}`)?.values[column.i] ?? null));
    const shape = keys.join("\n");
    if (!charts[n] || chartKeys !== shape) {
      charts[n]?.destroy();
      const target = $(`chart-${n}`);
      charts[n] = new uPlot({
        width: Math.max(320, target.clientWidth || 600),
        height: 260,
        series: [{}, ...keys.map((key, k) => ({ label: key, stroke: COLORS[k % COLORS.length], width: 1.5, spanGaps: false }))],
        axes: [{}, { size: 60 }],
        legend: { live: false },
        scales: { x: { time: true } },
      }, data, target);
    } else {
      charts[n].setData(data);
    }
  });
  chartKeys = keys.join("\n");
}

function showTable(results) {
  const head = el("tr");
  head.append(el("th", "window (UTC)"), ...results.keys.map((k) => el("th", k.name)),
    ...results.values.map((c) => el("th", c.name)), el("th", "state"));
  $("results").tHead.replaceChildren(head);
  const starts = [...new Set(results.rows.map((r) => r.start))].sort((a, b) => b - a).slice(0, TABLE_WINDOWS);
  const rows = results.rows
    .filter((r) => starts.includes(r.start))
    .sort((a, b) => b.start - a.start || keyText(a.key).localeCompare(keyText(b.key)));
  $("results").tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = el("tr", null, r.is_final ? "final" : "open");
    tr.dataset.start = r.start;
    tr.dataset.key = JSON.stringify(r.key);
    tr.append(el("td", `${clock(r.start)}–${clock(r.end)}`));
    r.key.forEach((k) => tr.append(el("td", k == null ? "∅" : String(k))));
    r.values.forEach((v, i) => {
      const float = results.values[i].type === "float64";
      const td = el("td", typeof v === "number" ? number(v, float ? 2 : 0) : v == null ? "∅" : String(v), "num");
      td.dataset.column = results.values[i].name;
      td.dataset.value = JSON.stringify(v);
      tr.append(td);
    });
    tr.append(el("td", r.is_final ? (r.revision > 1 ? `final, rev ${r.revision}` : "final") : "open"));
    return tr;
  }));
}

function showResults(results) {
  $("table").textContent = results.table;
  $("commits").textContent = results.commits;
  showCharts(results);
  showTable(results);
}

function connect() {
  const events = new EventSource("api/events" + (token ? `?token=${encodeURIComponent(token)}` : ""));
  events.onmessage = (message) => {
    const update = JSON.parse(message.data);
    lastEvent = Date.now();
    showStatus(update.now_ms, update.status);
    if (update.results) showResults(update.results);
  };
  // EventSource reconnects by itself; the badge says so meanwhile.
}

setInterval(() => {
  if (lastEvent && Date.now() - lastEvent > STALE_MS) {
    $("state").textContent = "disconnected";
    $("state").className = "badge stale";
  }
}, 1000);
connect();
