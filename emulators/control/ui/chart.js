// Request rate and latency per member over the last minutes (GET /v1/journal/rates): bars
// for entries per bucket, a line for the 95th-percentile duration, the busiest members first.

import { $, api, cell, fill } from "./api.js";

const MINUTES = 5;
const BUCKET = 10; // seconds
const BUSIEST = 6; // members charted
const SVG = "http://www.w3.org/2000/svg";
const W = 300;
const H = 48;

function svg(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function sparkline(member, series) {
  const n = series.entries.length;
  const top = Math.max(1, ...series.entries);
  const slow = Math.max(1, ...series.p95_ms.filter((v) => v != null));
  const step = W / n;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
                             class: "spark" });
  const title = svg("title", {});
  const lastMinute = series.entries.slice(-60 / BUCKET).reduce((a, b) => a + b, 0);
  title.textContent = `${member}: ${lastMinute} entries in the last minute; ` +
    `slowest 95th percentile ${slow.toFixed(1)} ms`;
  chart.append(title);
  series.entries.forEach((count, i) => {
    const h = (count / top) * (H - 4);
    chart.append(svg("rect", { x: (i * step + 0.5).toFixed(1), y: (H - h).toFixed(1),
                               width: Math.max(step - 1, 1).toFixed(1), height: h.toFixed(1),
                               class: "bar" }));
  });
  const points = series.p95_ms.map((v, i) => v == null ? null
    : `${(i * step + step / 2).toFixed(1)},${(H - 2 - (v / slow) * (H - 6)).toFixed(1)}`)
    .filter(Boolean);
  if (points.length > 1) {
    chart.append(svg("polyline", { points: points.join(" "), class: "latency", fill: "none" }));
  }
  return chart;
}

function mean(values) {
  const known = values.filter((v) => v != null);
  return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
}

export async function load() {
  const doc = await api("GET",
                        `/v1/journal/rates?minutes=${MINUTES}&bucket=${BUCKET}&top=${BUSIEST}`);
  const ranked = Object.entries(doc.members)
    .map(([member, series]) => [member, series, series.entries.reduce((a, b) => a + b, 0)])
    .sort((a, b) => b[2] - a[2]).slice(0, BUSIEST);
  const rows = ranked.map(([member, series]) => {
    const tr = document.createElement("tr");
    tr.dataset.member = member;
    cell(tr, member);
    const lastMinute = series.entries.slice(-60 / BUCKET).reduce((a, b) => a + b, 0);
    cell(tr, (lastMinute / 60).toFixed(2));
    const m = mean(series.mean_ms.slice(-60 / BUCKET));
    const p = series.p95_ms.slice(-60 / BUCKET).filter((v) => v != null);
    cell(tr, m == null ? "" : m.toFixed(1));
    cell(tr, p.length ? Math.max(...p).toFixed(1) : "");
    cell(tr, "").append(sparkline(member, series));
    return tr;
  });
  fill($("#rates"), rows);
  $("#rates-empty").hidden = rows.length > 0;
}
