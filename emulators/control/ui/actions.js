// Actions: fault rules (a form built from GET /v1/faults/types, so it shows each fault's own
// parameters), the farm clock (freeze, advance, set, back to real time) and snapshots
// (save, restore, delete).

import { $, api, button, changed, path, say, when } from "./api.js";

// -- faults ----------------------------------------------------------------------------------
const LABELS = { latency_ms: "Latency (ms)", status: "HTTP status", message: "Message",
                 seconds: "Seconds", bytes_per_second: "Bytes per second",
                 after_bytes: "After bytes", connack: "CONNACK code (1-5)" };
const NUMBERS = new Set(["latency_ms", "status", "seconds", "bytes_per_second", "after_bytes",
                         "connack", "times", "ttl", "probability", "seed"]);
let catalogue = {};

function showParameters() {
  const fault = $("#fault-type").value;
  const spec = catalogue[fault] || { required: [], optional: [] };
  $("#fault-sees").textContent = spec.where ? `${spec.where}: ${spec.sees}` : "";
  const wanted = [...spec.required, ...spec.optional];
  const holder = $("#fault-parameters");
  const kept = new Map([...holder.querySelectorAll("input")].map((i) => [i.name, i.value]));
  const fields = wanted.map((name) => {
    const wrap = document.createElement("span");
    const id = `fault-${name.replaceAll("_", "-")}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = LABELS[name] || name;
    const input = document.createElement("input");
    input.id = id;
    input.name = name;
    if (NUMBERS.has(name)) input.inputMode = "numeric";
    input.required = spec.required.includes(name);
    input.value = kept.get(name) || "";
    wrap.append(label, input);
    return wrap;
  });
  holder.replaceChildren(...fields);
}

export async function loadFaultTypes() {
  const doc = await api("GET", "/v1/faults/types");
  catalogue = doc.faults;
  const select = $("#fault-type");
  const current = select.value;
  select.replaceChildren(...Object.keys(catalogue).map((name) => {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    return option;
  }));
  if (current && catalogue[current]) select.value = current;
  showParameters();
}

export async function loadFaults() {
  const doc = await api("GET", "/v1/faults");
  const items = (doc.faults || []).map((rule) => {
    const li = document.createElement("li");
    li.dataset.rule = rule.id;
    const left = rule.remaining != null ? `, ${rule.remaining} left` : "";
    li.textContent = `${rule.id}: ${rule.fault} on ${rule.member}` +
      `${rule.path ? ` ${rule.path}` : ""} (fired ${rule.fired}${left}) `;
    li.append(button(`remove ${rule.id}`, async () => {
      await api("DELETE", `/v1/faults/${path(rule.id)}`);
      await loadFaults();
    }));
    return li;
  });
  $("#faults").replaceChildren(...items);
  $("#faults-none").hidden = items.length > 0;
}

async function addFault(ev) {
  ev.preventDefault();
  const rule = { fault: $("#fault-type").value, member: $("#fault-member").value.trim() || "*" };
  for (const [id, key] of [["#fault-path", "path"], ["#fault-command", "command"]]) {
    const value = $(id).value.trim();
    if (value) rule[key] = value;
  }
  const inputs = [...$("#fault-parameters").querySelectorAll("input"), $("#fault-times"),
                  $("#fault-probability")];
  for (const input of inputs) {
    const value = input.value.trim();
    if (!value) continue;
    rule[input.name] = NUMBERS.has(input.name) ? Number(value) : value;
  }
  try {
    const added = await api("POST", "/v1/faults", rule);
    say(`fault ${added.id} (${added.fault}) added`, { error: false });
    await loadFaults();
  } catch (err) {
    say(`fault refused: ${err.message}`);
  }
}

// -- clock -----------------------------------------------------------------------------------
let clock = { time: Date.now() / 1000, frozen: false, read: performance.now() };

/** The farm clock now, as last read (moving on with real time unless frozen). */
export function farmTime() {
  return clock.frozen ? clock.time : clock.time + (performance.now() - clock.read) / 1000;
}

export async function loadClock() {
  const doc = await api("GET", "/v1/clock");
  clock = { ...doc, read: performance.now() };
  const off = Math.round(doc.time - Date.now() / 1000); // the page runs beside the farm
  const offset = Math.abs(off) > 2 ? `, ${off > 0 ? "+" : ""}${off} s from real time` : "";
  $("#clock").textContent = `farm clock: ${when(doc.time)} UTC${doc.frozen ? " (frozen)" : ""}` +
    offset;
}

async function clockAction(route, body) {
  try {
    await api("POST", route, body || {});
    await loadClock();
    changed("clock");
  } catch (err) {
    say(err.message);
  }
}

// -- snapshots -------------------------------------------------------------------------------
export async function loadSnapshots() {
  const doc = await api("GET", "/v1/snapshots");
  const items = doc.snapshots.map((snap) => {
    const li = document.createElement("li");
    li.dataset.snapshot = snap.name;
    li.textContent = `${snap.name}: ${snap.members.length} members, ${when(snap.time)} `;
    li.append(button("restore", async () => {
      const done = await api("POST", `/v1/snapshots/${path(snap.name)}/restore`, {});
      say(`snapshot ${snap.name} restored (${done.restored.length} members)`, { error: false });
      changed("reset");
    }, `restore snapshot ${snap.name}`));
    li.append(button("delete", async () => {
      await api("DELETE", `/v1/snapshots/${path(snap.name)}`);
      say(`snapshot ${snap.name} deleted`, { error: false });
      await loadSnapshots();
    }, `delete snapshot ${snap.name}`));
    return li;
  });
  $("#snapshots").replaceChildren(...items);
  $("#snapshots-none").hidden = items.length > 0;
}

async function saveSnapshot(ev) {
  ev.preventDefault();
  const name = $("#snapshot-name").value.trim();
  try {
    await api("POST", "/v1/snapshots", { name });
    say(`snapshot ${name} saved`, { error: false });
    await loadSnapshots();
  } catch (err) {
    say(`snapshot refused: ${err.message}`);
  }
}

export function wire() {
  $("#fault-type").addEventListener("change", showParameters);
  $("#fault-form").addEventListener("submit", addFault);
  $("#clock-freeze").addEventListener("click", () => clockAction("/v1/clock/freeze"));
  $("#clock-unfreeze").addEventListener("click", () => clockAction("/v1/clock/unfreeze"));
  $("#clock-advance").addEventListener("click", () =>
    clockAction("/v1/clock/advance", { seconds: Number($("#clock-seconds").value) }));
  $("#clock-set-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const at = $("#clock-at").value.trim();
    clockAction("/v1/clock/set", { at: /[zZ]|[+-]\d\d:?\d\d$/.test(at) ? at : `${at}Z` });
  });
  $("#clock-reset").addEventListener("click", () => clockAction("/v1/clock/reset"));
  $("#snapshot-form").addEventListener("submit", saveSnapshot);
}
