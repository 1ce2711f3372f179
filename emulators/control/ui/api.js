// What every part of the page shares: the control plane's API (with the token when the farm
// has one), the status line, and small DOM helpers. No data lives here: the API is the one
// source of truth, and each view reads it again when it changes.

export const $ = (selector) => document.querySelector(selector);

const TOKEN_KEY = "emulators-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
const tokenWaiters = [];

export function setToken(value) {
  token = value;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("#token-form").hidden = true;
  for (const wake of tokenWaiters.splice(0)) wake();
}

export function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

export function say(text, { error = true } = {}) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("ok", !error);
}

export class Unauthorized extends Error {}

export function askForToken() {
  $("#token-form").hidden = false;
  say("This control plane needs its token.");
  $("#token").focus();
}

/** Resolves once a token was given (a view that met 401 starts again then). */
export function tokenGiven() {
  return new Promise((wake) => tokenWaiters.push(wake));
}

export async function api(method, path, body) {
  // JSON, or X-Requested-With when there is no body: the control plane takes a state change
  // only with one of them (a page of another origin cannot send either).
  const init = {
    method,
    headers: headers(body ? { "Content-Type": "application/json" }
      : { "X-Requested-With": "emulators-dashboard" }),
  };
  if (body) init.body = JSON.stringify(body);
  const reply = await fetch(path, init);
  if (reply.status === 401) {
    askForToken();
    throw new Unauthorized("the control plane wants a token");
  }
  const doc = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (!reply.ok) throw new Error(doc?.error?.message || `${method} ${path}: ${reply.status}`);
  return doc;
}

/** The bytes of an API path as a Blob (files and images: fetch sends the token, an <img src>
 * or a plain link could not). */
export async function blob(path) {
  const reply = await fetch(path, { headers: headers() });
  if (reply.status === 401) {
    askForToken();
    throw new Unauthorized("the control plane wants a token");
  }
  if (!reply.ok) throw new Error(`GET ${path}: ${reply.status}`);
  return reply.blob();
}

export function saveAs(data, filename) {
  const url = URL.createObjectURL(data);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  row.append(td);
  return td;
}

export function button(text, onClick, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await onClick();
    } catch (err) {
      if (!(err instanceof Unauthorized)) say(err.message);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** Fill a table's body, each cell labelled with its column's heading (a phone shows rows as
 * cards, the headings as the cells' labels: style.css). */
export function fill(table, rows) {
  const headings = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const row of rows) {
    [...row.cells].forEach((td, i) => { if (td.colSpan === 1) td.dataset.label = headings[i]; });
  }
  table.tBodies[0].replaceChildren(...rows);
}

export const path = (...parts) => parts.map(encodeURIComponent).join("/");

export function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
}

export function bytes(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Something else changed the farm (a clock move, a reset): views that care listen. */
export const farmChanged = new EventTarget();
export function changed(what) {
  farmChanged.dispatchEvent(new Event(what));
}

/** The detail dialog: a title, lines of text, and optionally request and reply excerpts. */
export function showDetail(title, text, excerpts) {
  $("#detail-title").textContent = title;
  $("#detail-meta").textContent = text;
  $("#detail-excerpts").hidden = !excerpts;
  if (excerpts) {
    $("#detail-request").textContent = excerpts.request ?? "(none)";
    $("#detail-reply").textContent = excerpts.reply ?? "(none)";
  }
  const dialog = $("#detail");
  if (!dialog.open) dialog.showModal();
  $("#detail-close").focus();
}
