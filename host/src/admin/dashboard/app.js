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
const chartColumns = [null, null]; // the column each chart draws
let chartKeys = "";
let anomalies = []; // the latest, from the status
let rollbacks = []; // automatic and manual, from /api/plugins
window.weirMarks = [0, 0]; // anomaly marks drawn on each chart, for tests
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

const SCORES = ["completeness", "accuracy", "timeliness", "validity", "latency_p99", "freshness"];
const DURATIONS = ["latency_p50", "latency_p99", "freshness"];
// The last delay bucket is open: a quantile in it says only "an hour or more".
const duration = (name, ms) => name !== "freshness" && ms >= 3600000 ? "≥ 1 h"
  : ms >= 2 * 86400000 ? `${number(ms / 86400000, 1)} d` : `${number(ms / 1000, 1)} s`;
const scoreText = (name, v) => v == null ? "–" : DURATIONS.includes(name) ? duration(name, v) : `${number(100 * v, 2)} %`;

// Scores, rules and SLAs, anomalies, alerts and rollbacks (a pipeline with [quality]).
function showQuality(q) {
  $("quality").hidden = !q;
  if (!q) return;
  const broken = q.rules.filter((r) => r.ok === false);
  $("quality-summary").textContent = broken.length
    ? `${broken.length} rule(s) broken: ${broken.map((r) => r.rule).join(", ")}`
    : `every rule holds; scores over the latest ${number(q.over_ms / 60000)} min of windows`;
  const scores = new Map(q.scores);
  $("quality-tiles").replaceChildren(...SCORES.map((name) => {
    const tile = el("div", null, "tile");
    const value = el("p", scoreText(name, scores.get(name)));
    if (q.rules.some((r) => r.score === name && r.ok === false)) value.className = "bad";
    tile.dataset.score = name;
    tile.append(el("h2", name.replace("_", " ")), value, el("small", name === "freshness" ? "behind the wall clock" : ""));
    return tile;
  }));
  $("rules").tBodies[0].replaceChildren(...q.rules.map((r) => {
    const tr = el("tr", null, r.ok === false ? "bad" : "");
    const state = r.ok == null ? "no data" : r.ok ? "holds" : `broken (${r.severity})`;
    const sla = r.sla;
    tr.append(el("td", r.rule), el("td", r.check), el("td", scoreText(r.score, r.value), "num"), el("td", state),
      el("td", when(r.since_ms)), el("td", sla ? `${number(100 * sla.compliance, 3)} % (target ${100 * sla.target} %)` : "–"),
      el("td", sla ? `${number(100 * sla.budget_remaining, 1)} %` : "–"));
    tr.dataset.rule = r.rule;
    return tr;
  }));
  anomalies = q.anomalies;
  $("anomalies").tBodies[0].replaceChildren(...anomalies.map((a) => {
    const tr = el("tr");
    tr.append(el("td", `${clock(a.start)}–${clock(a.end)}`), el("td", keyText(JSON.parse(a.key))), el("td", a.column),
      el("td", number(a.value, 2), "num"), el("td", number(a.baseline, 2), "num"), el("td", number(a.score, 1), "num"));
    return tr;
  }));
  const events = [
    ...q.alerts.map((a) => ({ at: a.at_ms, what: a.rule, state: a.status,
      detail: a.error ? `not delivered: ${a.error}` : `delivered to ${a.delivered} receiver(s)` })),
    ...rollbacks.map((d) => ({ at: Date.parse(d.at), what: `${d.stage} rolled back to ${d.plugin}`, state: "rollback",
      detail: d.reason || "by command" })),
  ].sort((a, b) => b.at - a.at).slice(0, 10);
  $("alerts").tBodies[0].replaceChildren(...events.map((e) => {
    const tr = el("tr", null, e.state === "firing" || e.state === "rollback" ? "bad" : "");
    tr.append(el("td", when(e.at)), el("td", e.what), el("td", e.state), el("td", e.detail));
    tr.dataset.state = e.state;
    return tr;
  }));
  charts.forEach((c) => c?.redraw());
}

// Rings the anomalies of chart `n`'s column, at their window and value.
function drawMarks(u, n) {
  let drawn = 0;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = "#b42318";
  ctx.lineWidth = 2.5;
  for (const a of anomalies.filter((a) => a.column === chartColumns[n])) {
    const x = u.valToPos(a.start / 1000, "x", true);
    const y = u.valToPos(a.value, "y", true);
    if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) continue;
    ctx.beginPath();
    ctx.arc(x, Math.min(Math.max(y, u.bbox.top), u.bbox.top + u.bbox.height), 7, 0, 2 * Math.PI);
    ctx.stroke();
    drawn += 1;
  }
  ctx.restore();
  window.weirMarks[n] = drawn;
}

async function loadRollbacks() {
  try {
    const response = await fetch("api/plugins" + (token ? `?token=${encodeURIComponent(token)}` : ""));
    if (response.ok) rollbacks = ((await response.json()).history || []).filter((d) => d.how === "rollback");
  } catch (_) {
    // The host is gone or restarting; the badge says so.
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
    chartColumns[n] = column.name;
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
        hooks: { draw: [(u) => drawMarks(u, n)] },
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
    showQuality(update.status.quality);
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
setInterval(loadRollbacks, 5000);
loadRollbacks();
connect();
