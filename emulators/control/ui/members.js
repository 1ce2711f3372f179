// Members: every emulator and server, fleets folded into one row each until opened or
// searched (a 1,000-camera fleet stays one line), with copy buttons for credentials and the
// actions a member has: reset, and an alarm for a camera that has one.

import { $, api, button, cell, changed, fill, path, say, showDetail } from "./api.js";

const SHOWN = 200; // rows drawn at most: a search narrows a big fleet
let members = [];
const opened = new Set(); // fleets the user unfolded

function copyButton(label, value) {
  return button(`copy ${label}`, () => navigator.clipboard?.writeText(String(value)),
                `copy ${label}`);
}

function actions(m) {
  const td = document.createElement("td");
  const plural = m.role === "server" ? "servers" : "emulators";
  td.append(button("state", async () => {
    const state = await api("GET", `/v1/${plural}/${path(m.name)}/state`);
    showDetail(`State of ${m.name} (${m.kind})`, JSON.stringify(state, null, 2));
  }, `show the state of ${m.name}`));
  td.append(button("reset", async () => {
    await api("POST", `/v1/${plural}/${path(m.name)}/reset`);
    say(`${m.name} reset`, { error: false });
    changed("reset");
  }, `reset ${m.name}`));
  if (m.kind === "instar-camera") {
    td.append(button("alarm", async () => {
      const doc = await api("POST", `/v1/emulators/${path(m.name)}/alarm`);
      const outcome = doc.skipped ? `nothing uploaded (${doc.skipped})`
        : `${doc.uploaded.length} snapshot(s) uploaded${doc.result ? ` (${doc.result})` : ""}`;
      say(`${m.name}: alarm: ${outcome}`, { error: false });
      changed("files");
    }, `trigger an alarm on ${m.name}`));
  }
  return td;
}

function memberRow(m, inFleet) {
  const row = document.createElement("tr");
  row.dataset.member = m.name;
  if (inFleet) row.className = "in-fleet";
  cell(row, m.name);
  const kind = cell(row, m.kind);
  if (m.quirks) {
    // A member replaying a captured device says which one, and where the profile came from.
    const q = m.quirks;
    const line = document.createElement("div");
    line.className = "quirks";
    line.textContent = `quirks: ${[q.model, q.firmware].filter(Boolean).join(" ") || q.file}`;
    line.title = [`file: ${q.file}`, q.captured_at && `captured: ${q.captured_at}`,
      q.checksum && `checksum: ${q.checksum}`, `${q.exchanges} exchanges`]
      .filter(Boolean).join("\n");
    kind.append(line);
  }
  cell(row, m.group === m.name ? "" : m.group);
  cell(row, m.health?.status, `health-${m.health?.status}`);
  const urls = cell(row, "");
  for (const url of Object.values(m.urls || {})) {
    const line = document.createElement("div");
    line.textContent = url;
    urls.append(line);
  }
  const creds = cell(row, "");
  for (const [key, value] of Object.entries(m.credentials || {})) {
    if (typeof value === "string" && value.length < 200) creds.append(copyButton(key, value));
  }
  row.append(actions(m));
  return row;
}

function fleetRow(name, list) {
  const row = document.createElement("tr");
  row.dataset.fleet = name;
  row.className = "fleet";
  const td = document.createElement("td");
  td.colSpan = 7;
  const open = opened.has(name);
  const kinds = [...new Set(list.map((m) => m.kind))].join(", ");
  const ok = list.filter((m) => m.health?.status === "ok").length;
  const toggle = button(`${open ? "▾" : "▸"} fleet ${name}: ${list.length} ${kinds} (${ok} ok)`,
                        () => {
    if (opened.has(name)) opened.delete(name); else opened.add(name);
    show();
  });
  toggle.setAttribute("aria-expanded", String(open));
  toggle.className = "link";
  td.append(toggle);
  row.append(td);
  return row;
}

export function show() {
  const needle = $("#member-search").value.trim().toLowerCase();
  const rows = [];
  let drawn = 0;
  let hidden = 0;
  const fleets = new Map();
  for (const m of members) {
    if (m.group && m.group !== m.name) {
      if (!fleets.has(m.group)) fleets.set(m.group, []);
      fleets.get(m.group).push(m);
    }
  }
  const seenFleets = new Set();
  for (const m of members) {
    const fleet = m.group && m.group !== m.name ? m.group : null;
    if (needle) {
      if (!`${m.name} ${m.kind} ${m.group}`.toLowerCase().includes(needle)) continue;
    } else if (fleet) {
      if (!seenFleets.has(fleet)) {
        seenFleets.add(fleet);
        rows.push(fleetRow(fleet, fleets.get(fleet)));
      }
      if (!opened.has(fleet)) continue;
    }
    if (drawn >= SHOWN) {
      hidden += 1;
      continue;
    }
    rows.push(memberRow(m, Boolean(fleet) && !needle));
    drawn += 1;
  }
  fill($("#members"), rows);
  $("#members-more").textContent = hidden ? `${hidden} more not shown: search to narrow` : "";
  $("#members-count").textContent = `${members.length} members`;
}

export async function load() {
  const [emulators, servers] = await Promise.all([api("GET", "/v1/emulators"),
                                                  api("GET", "/v1/servers")]);
  members = [...(emulators.emulators || []), ...(servers.servers || [])];
  show();
  return members;
}

export function byRole(role) {
  return members.filter((m) => m.role === role);
}

export function wire() {
  $("#member-search").addEventListener("input", show);
  $("#farm-reset").addEventListener("click", async () => {
    try {
      const doc = await api("POST", "/v1/reset");
      say(`farm reset: ${doc.reset.length} members`, { error: false });
      changed("reset");
    } catch (err) {
      say(err.message);
    }
  });
}
