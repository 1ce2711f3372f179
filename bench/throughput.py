"""Targets 1 and 6: request throughput of INSTAR getftpattr and ACTi HTTPS_CER reads against a
bare aiohttp app returning the same bytes, and the cost of the fault check with no rules.

    python bench/throughput.py [--seconds 2] [--runs 4] [--processes 3] [--connections 32]
                               [--farm default|cameras|both]

Each target is measured in the default farm (scenarios/default.yaml on free ports: what a
user runs, with the FTPS server the INSTAR camera's settings name, SFTP, EnOS and IoTDA in
the same process) and in a farm of the two cameras alone.

The farm and the baseline each run in their own process; wrk (one thread) is the load. On a
machine of two cores or more the server under test is pinned to one core and wrk to the others.
The two are measured in --runs pairs of --seconds each, back to back and in alternating order,
and the ratio is the median of the pairs' ratios: on a shared machine the speed of the host
drifts by tens of percent within a minute, and two runs next to each other see the same host.
That is done for --processes fresh farm and baseline processes in turn: on this VM one process
of the very same code runs 10-20 % faster or slower than another for its whole life, which one
pair of processes would take for the code's speed. CPU per request (the server process's user +
system time over the requests served) is printed too: it does not depend on what else the
machine runs.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import timeit
import urllib.parse
import urllib.request
from typing import Any

import yaml
from common import (
    ROOT,
    baseline_process,
    cpu_seconds,
    env_note,
    farm_process,
    median_of,
    pin,
    server_and_load_cores,
    show,
    wrk,
)

TARGETS = {
    "instar getftpattr": ("instar-camera", "/param.cgi",
                          "/param.cgi?cmd=getftpattr&user=admin&pwd=instar"),
    "acti HTTPS_CER": ("acti-camera", "/cgi-bin/update",
                       "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER"),
}


def measured(url: str, pid: int, load: dict[str, Any]) -> dict[str, float]:
    """One wrk run against a server process, with the CPU it used per request (us)."""
    before = cpu_seconds(pid)
    run = wrk(url, **load)
    run["cpu_us"] = (cpu_seconds(pid) - before) / run["requests"] * 1e6
    return run


def pairs(emulator: tuple[str, int], baseline: tuple[str, int], load: dict[str, Any],
          runs: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """``runs`` runs of each, back to back, the order alternating from pair to pair."""
    emu_runs, base_runs = [], []
    measured(emulator[0], emulator[1], dict(load, seconds=1))  # warm up both
    measured(baseline[0], baseline[1], dict(load, seconds=1))
    for i in range(runs):
        if i % 2:
            base_runs.append(measured(*baseline, load))
            emu_runs.append(measured(*emulator, load))
        else:
            emu_runs.append(measured(*emulator, load))
            base_runs.append(measured(*baseline, load))
    return emu_runs, base_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--runs", type=int, default=4, help="pairs per pair of processes")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh farm and baseline processes, one pair after another")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--farm", choices=("default", "cameras", "both"), default="both",
                        help="the default scenario (what a user runs), the two cameras alone, "
                             "or both, in that order")
    args = parser.parse_args()
    server_cores, wrk_prefix = server_and_load_cores()
    load = {"seconds": args.seconds, "connections": args.connections, "prefix": wrk_prefix}
    pinned = (f"server on core {min(server_cores)}, wrk on the others" if wrk_prefix
              else "not pinned: one core")
    farms = {"default": default_farm(), "cameras": CAMERAS_ONLY}
    chosen = list(farms) if args.farm == "both" else [args.farm]
    instar_rps = 0.0
    for farm_name in chosen:
        rps = measure_farm(farm_name, farms[farm_name], args, load, server_cores, pinned)
        if farm_name == chosen[0]:
            instar_rps = rps
    fault_check_cost(instar_rps, farms[chosen[0]], load, args.runs, args.processes)


# The cameras alone, in a farm of their own (no upload server, nothing else in the process).
CAMERAS_ONLY = {"name": "bench", "emulators": [
    {"name": "instar", "kind": "instar-camera"}, {"name": "acti", "kind": "acti-camera"}]}


def default_farm() -> dict[str, Any]:
    """The default scenario as `emulators run` runs it, on free ports: what a user meets. Its
    INSTAR camera uploads to the farm's FTPS server, so getftpattr answers that server's
    address and account, and the process also runs the FTP and SFTP servers, EnOS and IoTDA."""
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["control"]["port"] = 0
    for entry in (*doc["servers"], *doc["emulators"]):
        for key in list(entry):  # port, https_port, mqtt_port, mqtts_port: all free ones
            if key == "port" or key.endswith("_port"):
                entry[key] = 0
        entry.pop("passive_ports", None)
    return doc  # type: ignore[no-any-return]


def measure_farm(farm_name: str, scenario: dict[str, Any], args: argparse.Namespace,
                 load: dict[str, Any], server_cores: set[int], pinned: str) -> float:
    """Every target of one farm against its baselines; the INSTAR figure (req/s)."""
    runs: dict[str, tuple[list[dict[str, float]], list[dict[str, float]]]] = {
        label: ([], []) for label in TARGETS}
    closes: dict[str, bool] = {}
    for _ in range(args.processes):
        with farm_process(scenario) as (proc, ready, _t):
            pin(proc.pid, server_cores)
            urls = {m["kind"]: m["urls"]["http"] for m in ready["emulators"]}
            for label, (kind, path, path_qs) in TARGETS.items():
                url = urls[kind] + path_qs
                # A keep-alive request (urllib would ask for close): does the device close?
                split = urllib.parse.urlsplit(url)
                conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
                conn.request("GET", path_qs)
                resp = conn.getresponse()
                body, ctype = resp.read(), resp.headers.get("Content-Type", "text/plain")
                closes[label] = resp.will_close
                conn.close()
                with baseline_process(path, body, ctype, close=closes[label]) as (base, pid):
                    pin(pid, server_cores)
                    base_url = base + path_qs
                    with urllib.request.urlopen(base_url) as reply:
                        assert reply.read() == body, "the baseline must answer the same bytes"
                    emu_runs, base_runs = pairs((url, proc.pid), (base_url, pid), load,
                                                args.runs)
                runs[label][0].extend(emu_runs)
                runs[label][1].extend(base_runs)
    instar_rps = 0.0
    for label, (emu_runs, base_runs) in runs.items():
        emu, base_m = median_of(emu_runs), median_of(base_runs)
        ratios = sorted(e["rps"] / b["rps"] for e, b in zip(emu_runs, base_runs, strict=True))
        reuse = "a new connection per request, both" if closes[label] else "keep-alive"
        show(f"{label}, {farm_name} farm: journal on, no fault rules ({env_note()}, {pinned}; "
             f"wrk -t1 -c"
             f"{args.connections}; {args.processes} pairs of processes x {args.runs} pairs of "
             f"{args.seconds:g} s runs; {reuse})", [
            ("emulator req/s", f"{emu['rps']:.0f}  (median)"),
            ("baseline req/s", f"{base_m['rps']:.0f}  (bare aiohttp, same bytes)"),
            ("ratio", f"{statistics.median(ratios):.2f}x  (median of the pairs; "
                      f"{ratios[0]:.2f}-{ratios[-1]:.2f})  target >= 0.70x"),
            ("CPU per request", f"{emu['cpu_us']:.0f} us emulator, {base_m['cpu_us']:.0f} us "
                                f"baseline: {base_m['cpu_us'] / emu['cpu_us']:.2f}x"),
            ("emulator p50 / p99", f"{emu['p50_ms']:.2f} / {emu['p99_ms']:.2f} ms"),
            ("baseline p50 / p99", f"{base_m['p50_ms']:.2f} / {base_m['p99_ms']:.2f} ms"),
        ])
        if label.startswith("instar"):
            instar_rps = emu["rps"]
    return instar_rps


def instar_url(ready: dict[str, Any]) -> str:
    return next(str(m["urls"]["http"]) for m in ready["emulators"]
                if m["kind"] == "instar-camera")


def fault_check_cost(rps: float, scenario: dict[str, Any], load: dict[str, Any],
                     runs: int, processes: int) -> None:
    """Target 6, two ways: the check's own cost against the time of one request, and an A/B of
    throughput with no rules against one rule that matches nothing."""
    from emulators.core.clock import Clock
    from emulators.core.faults import FaultEngine

    engine = FaultEngine(Clock())
    per_check = min(timeit.repeat("engine.rules and engine.check('x', 'k', 'http', types=())",
                                  globals={"engine": engine}, number=1_000_000, repeat=5)) / 1e6
    per_request = 1 / rps
    ruled = dict(scenario, faults=[{"fault": "status", "member": "nobody", "status": 500}])
    server_cores, _ = server_and_load_cores()
    a: list[dict[str, float]] = []
    b: list[dict[str, float]] = []
    for _ in range(processes):
        with farm_process(scenario) as (p, ready, _t), farm_process(ruled) as (q, ready2, _u):
            pin(p.pid, server_cores)
            pin(q.pid, server_cores)
            url = instar_url(ready) + TARGETS["instar getftpattr"][2]
            url2 = instar_url(ready2) + TARGETS["instar getftpattr"][2]
            none_runs, one_runs = pairs((url, p.pid), (url2, q.pid), load, runs)
            a += none_runs
            b += one_runs
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
