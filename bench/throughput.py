"""Targets 1 and 6: request throughput of INSTAR getftpattr and ACTi HTTPS_CER reads against a
bare aiohttp app returning the same bytes, and the cost of the fault check with no rules.

    python bench/throughput.py [--seconds 5] [--runs 3] [--connections 32]

The farm and the baseline each run in their own process; wrk (one thread) is the load. Each
figure is the median of --runs runs, emulator and baseline alternating.
"""

from __future__ import annotations

import argparse
import http.client
import timeit
import urllib.parse
import urllib.request

from common import baseline_process, env_note, farm_process, median_of, show, wrk

TARGETS = {
    "instar getftpattr": ("instar-camera", "/param.cgi",
                          "/param.cgi?cmd=getftpattr&user=admin&pwd=instar"),
    "acti HTTPS_CER": ("acti-camera", "/cgi-bin/update",
                       "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    load = {"seconds": args.seconds, "connections": args.connections}
    scenario = {"name": "bench", "emulators": [
        {"name": "instar", "kind": "instar-camera"}, {"name": "acti", "kind": "acti-camera"}]}
    with farm_process(scenario) as (_proc, ready, _t):
        urls = {m["name"]: m["urls"]["http"] for m in ready["emulators"]}
        for label, (kind, path, path_qs) in TARGETS.items():
            url = urls[kind.split("-")[0]] + path_qs
            # A keep-alive request (urllib would ask for close): does the device close anyway?
            split = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
            conn.request("GET", path_qs)
            resp = conn.getresponse()
            body, ctype = resp.read(), resp.headers.get("Content-Type", "text/plain")
            closes = resp.will_close
            conn.close()
            with baseline_process(path, body, ctype, close=closes) as base:
                base_url = base + path_qs
                with urllib.request.urlopen(base_url) as resp:
                    assert resp.read() == body, "the baseline must answer the same bytes"
                emu_runs, base_runs = [], []
                for _ in range(args.runs):
                    emu_runs.append(wrk(url, **load))
                    base_runs.append(wrk(base_url, **load))
            emu, base_m = median_of(emu_runs), median_of(base_runs)
            reuse = "a new connection per request, both" if closes else "keep-alive"
            show(f"{label}: journal on, no fault rules ({env_note()}, wrk -t1 -c"
                 f"{args.connections} -d{args.seconds}s, median of {args.runs}; {reuse})", [
                ("emulator req/s", f"{emu['rps']:.0f}"),
                ("baseline req/s", f"{base_m['rps']:.0f}  (bare aiohttp, same bytes)"),
                ("ratio", f"{emu['rps'] / base_m['rps']:.2f}x  (target >= 0.70x)"),
                ("emulator p50 / p99", f"{emu['p50_ms']:.2f} / {emu['p99_ms']:.2f} ms"),
                ("baseline p50 / p99", f"{base_m['p50_ms']:.2f} / {base_m['p99_ms']:.2f} ms"),
            ])
            if label.startswith("instar"):
                instar_rps = emu["rps"]
    fault_check_cost(instar_rps, scenario, load, args.runs)


def fault_check_cost(rps: float, scenario: dict, load: dict, runs: int) -> None:  # type: ignore[type-arg]
    """Target 6, two ways: the check's own cost against the time of one request, and an A/B of
    throughput with no rules against one rule that matches nothing."""
    from emulators.core.clock import Clock
    from emulators.core.faults import FaultEngine

    engine = FaultEngine(Clock())
    per_check = min(timeit.repeat("engine.rules and engine.check('x', 'k', 'http', types=())",
                                  globals={"engine": engine}, number=1_000_000, repeat=5)) / 1e6
    per_request = 1 / rps
    ruled = dict(scenario, faults=[{"fault": "status", "member": "nobody", "status": 500}])
    with farm_process(scenario) as (_p, ready, _t), farm_process(ruled) as (_q, ready2, _u):
        url = ready["emulators"][0]["urls"]["http"] + TARGETS["instar getftpattr"][2]
        url2 = ready2["emulators"][0]["urls"]["http"] + TARGETS["instar getftpattr"][2]
        a, b = [], []
        for _ in range(runs):
            a.append(wrk(url, **load))
            b.append(wrk(url2, **load))
    none_rps, one_rps = median_of(a)["rps"], median_of(b)["rps"]
    show("fault check with no rules", [
        ("check, no rules", f"{per_check * 1e9:.0f} ns per request"),
        ("one request", f"{per_request * 1e6:.0f} us at {rps:.0f} req/s"),
        ("share of request time", f"{per_check / per_request * 100:.4f} %  (target < 2 %)"),
        ("A/B: no rules", f"{none_rps:.0f} req/s"),
        ("A/B: one non-matching rule",
         f"{one_rps:.0f} req/s ({(1 - one_rps / none_rps) * 100:+.1f} % cost)"),
    ])


if __name__ == "__main__":
    main()
