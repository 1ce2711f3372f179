"""A sharded farm (`emulators run --shards N`) against one process.

    python bench/shards.py [--part scale,control,cpu,pod] [--cameras 100000] [--scale-shards 6]
                           [--control-shards 8] [--cpu-shards 1,2,4] [--seconds 3]
                           [--pod-cameras 1000000]

scale: --cameras INSTAR cameras, one loopback address each (127.1.0.1 up, port 8080), dealt
over --scale-shards shards (6: the fewest whose share of 100,000 fits this machine's
open-file limit of 20,000 a process, a listening socket a camera; each shard process costs
about 58 MB before its first camera): seconds from the command to the ready file (every camera
listening), every camera asked once (getserverinfo, 256 at a time), the RSS of the coordinator
and every shard after that. Baseline: one process with one shard's share of the cameras, in
the same run (per-device memory and start rate against it).

control: a farm of 800 cameras on --control-shards shards, its journal filled with 10,000
requests over them; GET /v1/journal?limit=100 and POST /v1/reset timed 20 times each on the
front (medians; the first journal read, which pulls the 10,000 entries from the shards, apart).
Baseline: the same on one process.

cpu: INSTAR getserverinfo with keep-alive, the same load for each shard count in --cpu-shards:
one wrk -t1 -c16 per camera on cameras 0..K-1 (K the largest count; camera i on shard (i + 1) % N):
total req/s and the CPU per request of every process that served (coordinator included).
Prints the cores: on two, wrk and the farm share
them, so throughput cannot grow with shards here.

pod: what `emulators shard` (a Kubernetes pod) spends on the scenario before its members
start, for --pod-cameras cameras over 60 pods: the partition rule from the scenario stamped
partly (servers, singletons, each fleet's first member) and then its own slice stamped, each
in a fresh process (seconds, peak RSS over the RSS before). Baseline: the whole scenario
stamped to find the rule, as pods did before, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from common import cpu_seconds, env_note, farm_process, raise_nofile, rss_mb, show

FLEET_MAX = 50_000  # cameras per scenario entry (a fleet holds at most 65,000)


def fleet(cameras: int, addresses: bool = True) -> dict[str, Any]:
    """``cameras`` INSTAR cameras: fleets of at most FLEET_MAX on addresses 127.<1+2k>.0.1 up
    (port 8080), or one fleet on ports of 127.0.0.1."""
    if not addresses:
        return {"name": "bench", "control": {"port": 0}, "emulators": [
            {"name": "cam", "kind": "instar-camera", "count": cameras, "fleet": "ports",
             "host": "127.0.0.1", "port": 0}]}
    entries = []
    for k, start in enumerate(range(0, cameras, FLEET_MAX)):
        entries.append({"name": f"cam{k}", "kind": "instar-camera",
                        "count": min(FLEET_MAX, cameras - start), "fleet": "addresses",
                        "host": f"127.{1 + 2 * k}.0.1", "port": 8080})
    return {"name": "bench", "control": {"port": 0}, "emulators": entries}


@contextmanager
def farm(scenario: dict[str, Any], shards: int
         ) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], float]]:
    """`emulators run --shards N` on ``scenario`` with a state directory (a sharded farm keeps
    its shards' state on disk always, so the one process does too: like for like)."""
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp, farm_process(
            scenario, state_dir=Path(tmp), timeout=600, extra=("--shards", str(shards)),
            stop_timeout=300, report_stop=True) as running:
        yield running


def pids(proc: subprocess.Popen[bytes], ready: dict[str, Any]) -> list[int]:
    return [proc.pid, *(s["pid"] for s in ready.get("shards", []))]


async def ask_all(urls: list[str], concurrency: int = 256) -> int:
    """How many answered 200 to one getserverinfo each."""
    ok = 0
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            nonlocal ok
            for url in queue:
                try:
                    async with session.get(url + "/param.cgi?cmd=getserverinfo"
                                           "&user=admin&pwd=instar") as reply:
                        await reply.read()
                        ok += reply.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    pass

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def scale(args: argparse.Namespace) -> None:
    soft, hard = raise_nofile()
    per_shard = -(-args.cameras // args.scale_shards)
    rows = []
    results = {}
    for label, cameras, shards in (("one process (baseline)", per_shard, 1),
                                   (f"{args.scale_shards} shards", args.cameras,
                                    args.scale_shards)):
        with farm(fleet(cameras), shards) as (proc, ready, started):
            urls = [m["urls"]["http"] for m in ready["emulators"]]
            t = time.perf_counter()
            answered = asyncio.run(ask_all(urls))
            asked = time.perf_counter() - t
            total = sum(rss_mb(pid) for pid in pids(proc, ready))
            results[label] = (cameras, started, total)
            rows.append((label, f"{cameras:,} cameras: listening in {started:.1f} s "
                                f"({cameras / started:,.0f}/s), {answered:,} / {cameras:,} "
                                f"answering (asked in {asked:.1f} s), RSS {total:,.0f} MB "
                                f"({total * 1024 / cameras:.1f} KB per device)"))
            print(f"  {rows[-1][0]}: {rows[-1][1]}", flush=True)
    base, sharded = results["one process (baseline)"], results[f"{args.scale_shards} shards"]
    memory = sharded[2] / sharded[0] / (base[2] / base[0])
    rate = sharded[0] / sharded[1] / (base[0] / base[1])
    rows.append(("ratio", f"per-device memory {memory:.2f}x the baseline; start rate "
                          f"{rate:.2f}x"))
    rows.append(("targets", "listening < 60 s, all answering, total RSS < 2 GB"))
    show(f"scale ({env_note()}; RLIMIT_NOFILE {soft}/{hard})", rows)


async def fill(urls: list[str], entries: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        async def worker(mine: list[str]) -> None:
            for url in mine:
                async with session.get(url + "/param.cgi?cmd=getserverinfo") as reply:
                    await reply.read()

        queue = [urls[i % len(urls)] for i in range(entries)]
        await asyncio.gather(*(worker(queue[i::64]) for i in range(64)))


def timed(url: str, method: str, times: int) -> list[float]:
    import urllib.request

    out = []
    for _ in range(times):
        request = urllib.request.Request(url, method=method,
                                         data=b"{}" if method == "POST" else None,
                                         headers={"Content-Type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()
        out.append((time.perf_counter() - t) * 1000)
    return out


def control(args: argparse.Namespace) -> None:
    rows = []
    figures = {}
    for shards in (1, args.control_shards):
        with farm(fleet(800, addresses=False), shards) as (_p, ready, _t):
            api = ready["control"]["api"]
            asyncio.run(fill([m["urls"]["http"] for m in ready["emulators"]], 10_000))
            first = timed(api + "/journal?limit=100", "GET", 1)[0]
            journal = statistics.median(timed(api + "/journal?limit=100", "GET", 20))
            reset = statistics.median(timed(api + "/reset", "POST", 20))
        with farm(fleet(shards * 2, addresses=False), shards) as (_p, ready, _t):
            small = statistics.median(timed(ready["control"]["api"] + "/reset", "POST", 20))
        figures[shards] = (journal, reset, small)
        rows.append((f"{shards} shard(s)" if shards > 1 else "one process (baseline)",
                     f"journal query {journal:.1f} ms (the first, pulling 10,000 entries: "
                     f"{first:.0f} ms); farm reset {reset:.1f} ms with 800 cameras, "
                     f"{small:.1f} ms with {shards * 2} (medians of 20; state on disk)"))
    one, many = figures[1], figures[args.control_shards]
    rows.append(("ratio", f"journal {many[0] / one[0]:.2f}x, reset {many[1] / one[1]:.2f}x "
                          f"(800) and {many[2] / one[2]:.2f}x (2 a shard)"))
    rows.append(("target", f"each under 50 ms over {args.control_shards} shards"))
    show(f"control plane ({env_note()})", rows)


def cpu(args: argparse.Namespace) -> None:
    rows = []
    for shards in args.cpu_shards:
        with farm(fleet(8 * max(args.cpu_shards), addresses=False), shards) as (
                proc, ready, _t):
            cams = ready["emulators"]
            # the same load for every shard count: one wrk per camera 0..K-1 (K the largest
            # count asked for), camera i on shard (i + 1) % N
            targets = [cams[i]["urls"]["http"] + "/param.cgi?cmd=getserverinfo&user=admin"
                       "&pwd=instar" for i in range(max(args.cpu_shards))]
            served = pids(proc, ready)
            before = [cpu_seconds(p) for p in served]
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                outs = [subprocess.Popen([sys.executable, "-c", WRK_ONE, url, str(args.seconds),
                                          str(Path(tmp) / f"{i}.json")])
                        for i, url in enumerate(targets)]
                for o in outs:
                    o.wait()
                runs = [json.loads((Path(tmp) / f"{i}.json").read_text())
                        for i in range(len(targets))]
            wall = time.perf_counter() - started
            used = sum(cpu_seconds(p) - b for p, b in zip(served, before, strict=True))
            requests = sum(r["requests"] for r in runs)
            rows.append((f"{shards} shard(s)", f"{sum(r['rps'] for r in runs):,.0f} req/s "
                                               f"({len(targets)} wrk), CPU per request "
                                               f"{used / requests * 1e6:.0f} us (all processes; "
                                               f"{wall:.1f} s)"))
    rows.append(("target", "CPU per request within 10 % of one process"))
    show(f"cpu ({env_note()}: wrk and the farm share these cores)", rows)


POD_ONE = f"""
import json, os, resource, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from common import rss_mb
from emulators import scenario
from emulators.shards.partition import Rule
source, how = json.loads(sys.argv[1]), sys.argv[2]
scenario.load({{"name": "warm", "emulators": [{{"name": "c", "kind": "instar-camera"}}]}})
before, started = rss_mb(os.getpid()), time.perf_counter()
if how == "whole":
    rule = Rule.of(scenario.load(source), 60)
else:
    rule, _ = Rule.of_source(source, 60)
mine = scenario.load(source, keep=rule.keep(1))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": time.perf_counter() - started, "mb": peak - before,
                   "slice": len(mine.members)}}))
"""


def pod(args: argparse.Namespace) -> None:
    source = json.dumps(fleet(args.pod_cameras))
    got = {}
    for how in ("whole", "partial"):
        out = subprocess.run([sys.executable, "-c", POD_ONE, source, how], check=True,
                             capture_output=True, text=True).stdout
        got[how] = json.loads(out)
    rows = [(label, f"{got[how]['seconds']:.2f} s, peak +{got[how]['mb']:.0f} MiB (its slice: "
                    f"{got[how]['slice']:,} cameras)")
            for how, label in (("whole", "whole scenario stamped (baseline)"),
                               ("partial", "rule from a partial stamp"))]
    rows.append(("ratio", f"{got['partial']['seconds'] / got['whole']['seconds']:.3f}x time, "
                          f"{got['partial']['mb'] / max(got['whole']['mb'], 1):.3f}x memory"))
    show(f"pod start, {args.pod_cameras:,} cameras over 60 pods ({env_note()})", rows)


WRK_ONE = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from common import wrk
run = wrk(sys.argv[1], seconds=float(sys.argv[2]), connections=16)
open(sys.argv[3], "w").write(json.dumps(run))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", default="scale,control,cpu")
    parser.add_argument("--cameras", type=int, default=100_000)
    parser.add_argument("--scale-shards", type=int, default=6)
    parser.add_argument("--control-shards", type=int, default=8)
    parser.add_argument("--cpu-shards", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--pod-cameras", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    parts = args.part.split(",")
    if "control" in parts:
        control(args)
    if "cpu" in parts:
        cpu(args)
    if "scale" in parts:
        scale(args)
    if "pod" in parts:
        pod(args)


if __name__ == "__main__":
    main()
