// Certificates (GET /v1/certificates): what ACTi, EnOS and IoTDA hold, judged on the farm
// clock by the control plane (expired, soon, valid, not yet valid), with IoTDA's CA
// verification status and verification-code expiry, and a PEM download each.

import { $, api, button, cell, fill, saveAs, when } from "./api.js";

const WORDS = { expired: "EXPIRED", soon: "expires soon", valid: "valid",
                not_yet_valid: "not yet valid", unreadable: "unreadable" };

function row(cert, farmTime) {
  const tr = document.createElement("tr");
  tr.dataset.validity = cert.validity;
  tr.dataset.member = cert.member;
  cell(tr, cert.member);
  cell(tr, cert.role);
  cell(tr, cert.subject);
  cell(tr, cert.issuer);
  cell(tr, cert.serial);
  cell(tr, cert.not_after ? cert.not_after.replace("T", " ").slice(0, 19) : "");
  cell(tr, WORDS[cert.validity] || cert.validity, `validity-${cert.validity}`);
  const checks = [];
  if (cert.verified != null) checks.push(`CA verification: ${cert.verified}`);
  if (cert.verify_code_expires != null) {
    const gone = cert.verify_code_expires <= farmTime;
    checks.push(`code ${gone ? "expired" : "expires"} ${when(cert.verify_code_expires)}`);
  }
  cell(tr, checks.join("; "));
  const td = document.createElement("td");
  const file = `${cert.member}-${cert.role}`.replace(/[^A-Za-z0-9._-]+/g, "_");
  td.append(button("PEM", () => saveAs(new Blob([cert.pem], { type: "application/x-pem-file" }),
                                       `${file}.pem`), `download the PEM of ${cert.role}`));
  tr.append(td);
  return tr;
}

export async function load() {
  const doc = await api("GET", "/v1/certificates");
  const order = { expired: 0, soon: 1, not_yet_valid: 2, unreadable: 3, valid: 4 };
  const certs = [...doc.certificates].sort((a, b) =>
    (order[a.validity] ?? 5) - (order[b.validity] ?? 5));
  fill($("#certificates"), certs.map((c) => row(c, doc.farm_time)));
  const expired = certs.filter((c) => c.validity === "expired").length;
  const soon = certs.filter((c) => c.validity === "soon").length;
  $("#certificates-summary").textContent = `${certs.length} certificates on the farm clock ` +
    `${when(doc.farm_time)}: ${expired} expired, ${soon} expiring within 30 days`;
}

export function wire() {
  $("#certificates-refresh").addEventListener("click", () => load());
}
