// The farm's dashboard: a thin view over the control plane's own API (/v1/...), no build
// chain, no network but the control plane. Each view is a module; this one starts them and
// says when the page is ready (document.body.dataset.ready: bench/dashboard.py reads it).

import { $, Unauthorized, farmChanged, say, setToken, tokenGiven } from "./api.js";
import * as actions from "./actions.js";
import * as certificates from "./certificates.js";
import * as chart from "./chart.js";
import * as files from "./files.js";
import * as journal from "./journal.js";
import * as members from "./members.js";

const RATES_EVERY = 5000; // ms between chart reads
const CLOCK_EVERY = 5000;

function report(err) {
  if (!(err instanceof Unauthorized)) say(err.message);
}

async function start() {
  try {
    await Promise.all([members.load(), actions.loadClock(), actions.loadFaultTypes(),
                       actions.loadFaults(), actions.loadSnapshots()]);
  } catch (err) {
    if (err instanceof Unauthorized) {
      await tokenGiven();
      return start();
    }
    say(err.message);
    return undefined;
  }
  // The members and the clock are what the rest is read against; the rest fills in after.
  performance.mark("interactive"); // members drawn, forms and buttons live (bench/dashboard.py)
  await Promise.all([journal.follow(), files.load(), certificates.load(), chart.load()])
    .catch(report);
  document.body.dataset.ready = String(Math.round(performance.now()));
  setInterval(() => chart.load().catch(report), RATES_EVERY);
  setInterval(() => actions.loadClock().catch(report), CLOCK_EVERY);
  return undefined;
}

farmChanged.addEventListener("files", files.refreshSoon);
farmChanged.addEventListener("faults", () => actions.loadFaults().catch(report));
farmChanged.addEventListener("clock", () => {
  certificates.load().catch(report);
  chart.load().catch(report);
});
farmChanged.addEventListener("reset", () => {
  Promise.all([members.load(), files.load(), certificates.load(), actions.loadFaults(),
               actions.loadSnapshots()]).catch(report);
});

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken($("#token").value);
});
for (const view of [members, journal, files, certificates, actions]) view.wire();
start();
