// Received files per upload server (GET /v1/servers/{name}/files), newest first: JPEGs shown
// as images (the cameras' test snapshots and alarm uploads), every file downloadable. Bytes
// are fetched with the token and shown through blob: URLs.

import { $, api, blob, button, bytes, path, saveAs, say, when } from "./api.js";
import { byRole } from "./members.js";

const SHOWN = 24; // newest files drawn per server
const images = new Map(); // file key -> blob: URL of its image, kept while shown

function isImage(file) {
  return /\.jpe?g$/i.test(file.path);
}

function fileUrl(server, file) {
  return `/v1/servers/${path(server)}/files/${path(file.user)}/` +
    file.path.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
}

function figure(server, file, keep) {
  const item = document.createElement("li");
  item.className = "file";
  item.dataset.path = file.path;
  const key = `${server} ${file.user} ${file.path} ${file.sha256}`;
  keep.add(key);
  if (isImage(file)) {
    const img = document.createElement("img");
    img.alt = `${file.path} (received by ${server} from ${file.user})`;
    img.width = 160;
    img.height = 90;
    item.append(img);
    const known = images.get(key);
    if (known) {
      img.src = known;
    } else {
      blob(fileUrl(server, file)).then((data) => {
        const url = URL.createObjectURL(data.slice(0, data.size, "image/jpeg"));
        images.set(key, url);
        img.src = url;
      }).catch((err) => { img.alt = `${file.path}: ${err.message}`; });
    }
  }
  const caption = document.createElement("p");
  caption.textContent = `${file.user}/${file.path.replace(/^\/+/, "")} · ${bytes(file.size)} · ` +
    `${file.protocol || ""} · ${when(file.time)}`;
  item.append(caption);
  item.append(button("download", async () => {
    saveAs(await blob(fileUrl(server, file)), file.path.split("/").pop() || "file");
  }, `download ${file.path}`));
  return item;
}

export async function load() {
  const servers = byRole("server");
  const docs = await Promise.all(servers.map((s) => api("GET", `/v1/servers/${path(s.name)}/files`)));
  const keep = new Set();
  const sections = docs.map((doc) => {
    const section = document.createElement("section");
    section.dataset.server = doc.server;
    const title = document.createElement("h3");
    title.textContent = `${doc.server}: ${doc.files.length} file(s)`;
    section.append(title);
    const list = document.createElement("ul");
    list.className = "files";
    list.append(...doc.files.slice(-SHOWN).reverse().map((f) => figure(doc.server, f, keep)));
    section.append(list);
    return section;
  });
  for (const [key, url] of images) {
    if (!keep.has(key)) {
      URL.revokeObjectURL(url);
      images.delete(key);
    }
  }
  $("#files").replaceChildren(...sections);
}

let pending = null;
/** Read the files again soon (an upload in the journal, an alarm): at most once per 300 ms. */
export function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    load().catch((err) => say(err.message));
  }, 300);
}

export function wire() {
  $("#files-refresh").addEventListener("click", () => load().catch((err) => say(err.message)));
}
