// The farm's dashboard: a thin view over the control plane's own API (/v1/...), no build
// chain, no network but the control plane. The journal is read live from
// /v1/journal/stream (Server-Sent Events read through fetch, so that a control token can be
// sent as a header, which EventSource cannot do).

const $ = (selector) => document.querySelector(selector);
const MAX_ROWS = 500; // journal rows kept on the page
let token = sessionStorage.getItem("emulators-token") || "";
let stream = null; // the AbortController of the journal stream

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function say(text) {
  $("#status").textContent = text;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const reply = await fetch(path, init);
  if (reply.status === 401) {
    askForToken();
    throw new Error("the control plane wants a token");
  }
  const doc = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (!reply.ok) throw new Error(doc?.error?.message || `${reply.status}`);
  return doc;
}

function askForToken() {
  $("#token-form").hidden = false;
  say("This control plane needs its token.");
  $("#token").focus();
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.append(td);
  return td;
}

// -- members ---------------------------------------------------------------------------------
let members = [];

function copyButton(label, value) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = `copy ${label}`;
  button.setAttribute("aria-label", `copy ${label}`);
  button.addEventListener("click", () => navigator.clipboard?.writeText(String(value)));
  return button;
}

function showMembers() {
  const needle = $("#member-search").value.trim().toLowerCase();
  const body = $("#members tbody");
  const rows = [];
  for (const m of members) {
    const haystack = `${m.name} ${m.kind} ${m.group}`.toLowerCase();
    if (needle && !haystack.includes(needle)) continue;
    if (rows.length >= 200) break; // a 1,000-member fleet: search narrows it
    const row = document.createElement("tr");
    row.dataset.member = m.name;
    cell(row, m.name);
    cell(row, m.kind);
    cell(row, m.group === m.name ? "" : m.group);
    cell(row, m.health?.status);
    cell(row, Object.values(m.urls || {}).join(" "));
    const creds = cell(row, "");
    for (const [key, value] of Object.entries(m.credentials || {})) {
      if (typeof value === "string" && value.length < 200) creds.append(copyButton(key, value));
    }
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

async function loadMembers() {
  const [emulators, servers] = await Promise.all([api("GET", "/v1/emulators"),
                                                  api("GET", "/v1/servers")]);
  members = [...(emulators.emulators || []), ...(servers.servers || [])];
  showMembers();
}

// -- journal ---------------------------------------------------------------------------------
function journalRow(entry) {
  const row = document.createElement("tr");
  row.dataset.seq = entry.seq;
  if (entry.status >= 400 || entry.event === "refused" || entry.event === "fault") {
    row.className = "error";
  }
  cell(row, entry.seq);
  cell(row, new Date(entry.time * 1000).toISOString().slice(11, 23));
  cell(row, entry.member);
  cell(row, entry.protocol);
  cell(row, entry.event);
  cell(row, [entry.method, entry.path, entry.user].filter(Boolean).join(" "));
  cell(row, entry.status);
  const link = cell(row, "");
  if (entry.correlation_id) {
    const a = document.createElement("a");
    a.href = `#correlation=${encodeURIComponent(entry.correlation_id)}`;
    a.textContent = entry.correlation_id;
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      showChain(entry.correlation_id);
    });
    link.append(a);
  }
  return row;
}

async function showChain(correlation) {
  const doc = await api("GET", `/v1/journal?correlation_id=${encodeURIComponent(correlation)}`);
  $("#journal tbody").replaceChildren(...doc.entries.map(journalRow).reverse());
  say(`correlation ${correlation}: ${doc.entries.length} entries (Filter to go back live)`);
  stream?.abort();
}

function filterQuery() {
  const q = new URLSearchParams();
  for (const [id, key] of [["#f-member", "member"], ["#f-protocol", "protocol"],
                           ["#f-path", "path"], ["#f-status", "status"]]) {
    const value = $(id).value.trim();
    if (value) q.set(key, value);
  }
  return q;
}

async function followJournal() {
  stream?.abort();
  const controller = new AbortController();
  stream = controller;
  const q = filterQuery();
  const first = await api("GET", `/v1/journal?${q}&limit=100`);
  const body = $("#journal tbody");
  body.replaceChildren(...first.entries.map(journalRow).reverse());
  const last = first.entries.length ? first.entries[first.entries.length - 1].seq : 0;
  if (last) q.set("after_seq", last);
  say("");
  try {
    const reply = await fetch(`/v1/journal/stream?${q}`, { headers: headers(),
                                                           signal: controller.signal });
    if (reply.status === 401) return askForToken();
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6)).join("\n");
        if (!data) continue;
        body.prepend(journalRow(JSON.parse(data)));
        while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") say(`journal stream ended: ${err.message}`);
  }
}

// -- faults and clock ------------------------------------------------------------------------
async function loadFaults() {
  const doc = await api("GET", "/v1/faults");
  const items = (doc.faults || []).map((rule) => {
    const li = document.createElement("li");
    li.textContent = `${rule.id}: ${rule.fault} on ${rule.member} (fired ${rule.fired}) `;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = `remove ${rule.id}`;
    remove.addEventListener("click", async () => {
      await api("DELETE", `/v1/faults/${encodeURIComponent(rule.id)}`);
      loadFaults();
    });
    li.append(remove);
    return li;
  });
  $("#faults").replaceChildren(...items);
}

async function addFault(ev) {
  ev.preventDefault();
  const rule = { fault: $("#fault-type").value, member: $("#fault-member").value || "*" };
  const path = $("#fault-path").value.trim();
  if (path) rule.path = path;
  for (const [id, key] of [["#fault-status", "status"], ["#fault-latency", "latency_ms"],
                           ["#fault-connack", "connack"], ["#fault-times", "times"]]) {
    const value = $(id).value.trim();
    if (value) rule[key] = Number(value);
  }
  try {
    await api("POST", "/v1/faults", rule);
    say(`fault ${rule.fault} added`);
    loadFaults();
  } catch (err) {
    say(`fault refused: ${err.message}`);
  }
}

async function loadClock() {
  const doc = await api("GET", "/v1/clock");
  $("#clock").textContent = `clock: ${new Date(doc.time * 1000).toISOString()}` +
    (doc.frozen ? " (frozen)" : "");
}

async function clockAction(path, body) {
  await api("POST", path, body || {});
  loadClock();
}

// -- start -----------------------------------------------------------------------------------
async function start() {
  try {
    await Promise.all([loadMembers(), loadFaults(), loadClock()]);
    followJournal();
  } catch (err) {
    say(err.message);
  }
}

$("#member-search").addEventListener("input", showMembers);
$("#journal-filter").addEventListener("submit", (ev) => { ev.preventDefault(); followJournal(); });
$("#fault-form").addEventListener("submit", addFault);
$("#clock-freeze").addEventListener("click", () => clockAction("/v1/clock/freeze"));
$("#clock-advance").addEventListener("click", () =>
  clockAction("/v1/clock/advance", { seconds: Number($("#clock-seconds").value) }));
$("#clock-reset").addEventListener("click", () => clockAction("/v1/clock/reset"));
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token").value;
  sessionStorage.setItem("emulators-token", token);
  $("#token-form").hidden = true;
  start();
});
setInterval(loadClock, 5000);
start();
