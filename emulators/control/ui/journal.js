// The journal, live: the last entries from GET /v1/journal, then every new one from
// GET /v1/journal/stream (Server-Sent Events read through fetch, so that a control token can be
// sent as a header, which EventSource cannot do). The stream is asked for at most MAX_RATE
// entries a second: beyond that a person reads nothing more, and the farm builds nothing more
// (a "skipped" event says how many it passed over; the journal still holds them).

import { $, api, askForToken, cell, changed, fill, headers, say, showDetail, when } from "./api.js";
import { farmTime } from "./actions.js";

const MAX_ROWS = 500; // rows kept on the page
const MAX_RATE = 25; // entries a second the live view asks for (bench/README.md, dashboard)
let stream = null; // the AbortController of the journal stream
let skipped = 0;
// Module scripts run once the document is parsed: the headings are there.
const HEADINGS = [...$("#journal").tHead.rows[0].cells].map((th) => th.textContent);

function entryRow(entry) {
  const row = document.createElement("tr");
  row.dataset.seq = entry.seq;
  if (entry.status >= 400 || ["refused", "fault", "login_failed", "upload_failed"]
    .includes(entry.event)) row.className = "error";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link";
  open.textContent = entry.seq;
  open.setAttribute("aria-label", `show entry ${entry.seq}`);
  open.addEventListener("click", () => showEntry(entry));
  cell(row, "").append(open);
  cell(row, new Date(entry.time * 1000).toISOString().slice(11, 23));
  cell(row, entry.member);
  cell(row, entry.protocol);
  cell(row, entry.event);
  cell(row, [entry.method, entry.path, entry.user].filter(Boolean).join(" "));
  cell(row, entry.status);
  cell(row, entry.duration_ms != null ? entry.duration_ms.toFixed(1) : "");
  const link = cell(row, "");
  if (entry.correlation_id) {
    const chain = document.createElement("button");
    chain.type = "button";
    chain.className = "link";
    chain.textContent = entry.correlation_id;
    chain.setAttribute("aria-label", `show the chain ${entry.correlation_id}`);
    chain.addEventListener("click", () => showChain(entry.correlation_id));
    link.append(chain);
  }
  return row;
}

function showEntry(entry) {
  const lines = [];
  for (const key of ["time", "client", "user", "method", "path", "status", "duration_ms",
                     "request_size", "reply_size", "correlation_id"]) {
    if (entry[key] != null) lines.push(`${key}: ${key === "time" ? when(entry[key]) : entry[key]}`);
  }
  for (const [k, v] of entry.query || []) lines.push(`query ${k}=${v}`);
  for (const [k, v] of entry.headers || []) lines.push(`header ${k}: ${v}`);
  if (entry.detail && Object.keys(entry.detail).length) {
    lines.push(`detail: ${JSON.stringify(entry.detail)}`);
  }
  showDetail(`Entry ${entry.seq}: ${entry.member} ${entry.protocol} ${entry.event}`,
             lines.join("\n"), { request: entry.request_excerpt, reply: entry.reply_excerpt });
}

async function showChain(correlation) {
  stream?.abort();
  const doc = await api("GET", `/v1/journal?correlation_id=${encodeURIComponent(correlation)}`);
  fill($("#journal"), doc.entries.map(entryRow).reverse());
  const members = [...new Set(doc.entries.map((e) => e.member))].join(", ");
  $("#journal-mode").textContent = `Chain ${correlation}: ${doc.entries.length} entries ` +
    `(${members}). Press Live to follow the journal again.`;
  $("#journal-live").hidden = false;
}

function filterQuery() {
  const q = new URLSearchParams();
  for (const [id, key] of [["#f-member", "member"], ["#f-protocol", "protocol"],
                           ["#f-path", "path"], ["#f-status", "status"], ["#f-event", "event"]]) {
    const value = $(id).value.trim();
    if (value) q.set(key, value);
  }
  const minutes = Number($("#f-minutes").value);
  if ($("#f-minutes").value.trim() && minutes > 0) q.set("since", farmTime() - minutes * 60);
  return q;
}

function showSkipped() {
  $("#journal-skipped").textContent = skipped
    ? `${skipped} entries passed over at this rate (at most ${MAX_RATE} a second are shown; ` +
      "Filter narrows, and the journal keeps them)" : "";
}

function receive(event, body) {
  const lines = event.split("\n");
  const kind = lines.find((l) => l.startsWith("event: "))?.slice(7) || "message";
  const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
  if (!data) return;
  const doc = JSON.parse(data);
  if (kind === "skipped") {
    skipped += doc.skipped;
    showSkipped();
    return;
  }
  const row = entryRow(doc);
  [...row.cells].forEach((td, i) => { td.dataset.label = HEADINGS[i]; });
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  if (doc.event === "upload") changed("files");
  if (doc.event === "fault") changed("faults");
}

/** Show the last entries, then follow the stream (resolves once the first page is drawn). */
export async function follow() {
  stream?.abort();
  const controller = new AbortController();
  stream = controller;
  $("#journal-mode").textContent = "Live: new entries appear at the top.";
  $("#journal-live").hidden = true;
  skipped = 0;
  showSkipped();
  const q = filterQuery();
  const first = await api("GET", `/v1/journal?${q}&limit=100`);
  fill($("#journal"), first.entries.map(entryRow).reverse());
  // From the journal's end when it was read, not the stream's own "now": an entry recorded
  // between the two (on a sharded farm, pulled in as the stream opens) is not lost.
  q.set("after_seq", first.last_seq);
  q.set("max_rate", MAX_RATE);
  listen(q, controller).catch((err) => say(err.message));
}

async function listen(q, controller) {
  const body = $("#journal tbody");
  try {
    const reply = await fetch(`/v1/journal/stream?${q}`, { headers: headers(),
                                                           signal: controller.signal });
    if (reply.status === 401) return askForToken();
    if (!reply.ok) throw new Error(`journal stream: ${reply.status}`);
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        receive(buffer.slice(0, end), body);
        buffer = buffer.slice(end + 2);
      }
    }
    if (stream === controller) $("#journal-mode").textContent = "The journal stream ended.";
  } catch (err) {
    if (err.name !== "AbortError") say(`journal stream ended: ${err.message}`);
  }
  return undefined;
}

export function wire() {
  $("#journal-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    follow().catch((err) => say(err.message));
  });
  $("#journal-live").addEventListener("click", () => follow().catch((err) => say(err.message)));
}
