"""What a quirk profile costs a request it does not match: the same camera with and without
docs/QUIRKS.md's profile, in one farm process, answering a command the profile does not record
on the very path it does (the profile's index is hit, every exchange of that path compared).

    python bench/quirks.py [--seconds 2] [--runs 6] [--connections 32]

wrk (one thread) is the load; on a machine of two cores or more the farm is pinned to one core
and wrk to the others. The two cameras are measured in --runs pairs, back to back in
alternating order, and the ratio is the median of the pairs' ratios (the host's speed drifts;
two runs next to each other see the same host). CPU per request is the farm process's.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from common import (
    ROOT,
    cpu_seconds,
    env_note,
    farm_process,
    median_of,
    pin,
    server_and_load_cores,
    show,
    wrk,
)

# (kind, a request the document's profile does not match, on a path it records)
TARGETS = {
    "instar-camera": "/param.cgi?cmd=getsnapcount&user=admin&pwd=instar",
    "acti-camera": "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CSR",
}


def doc_profiles() -> dict[str, str]:
    text = (ROOT / "docs" / "QUIRKS.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return {yaml.safe_load(block)["kind"]: block for block in blocks}


def measured(url: str, pid: int, load: dict[str, Any]) -> dict[str, float]:
    before = cpu_seconds(pid)
    run = wrk(url, **load)
    run["cpu_us"] = (cpu_seconds(pid) - before) / run["requests"] * 1e6
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--runs", type=int, default=6, help="pairs of runs per camera kind")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    server_cores, wrk_prefix = server_and_load_cores()
    load = {"seconds": args.seconds, "connections": args.connections, "prefix": wrk_prefix}
    pinned = (f"farm on core {min(server_cores)}, wrk on the others" if wrk_prefix
              else "not pinned: one core")
    with tempfile.TemporaryDirectory(prefix="bench-quirks-") as tmp:
        entries: list[dict[str, Any]] = []
        for kind, text in doc_profiles().items():
            path = Path(tmp) / f"{kind}.yaml"
            path.write_text(text)
            entries.append({"name": f"{kind}-plain", "kind": kind, "port": 0})
            entries.append({"name": f"{kind}-quirks", "kind": kind, "port": 0,
                            "quirks": str(path)})
        scenario = {"version": 1, "name": "bench-quirks", "control": {"port": 0},
                    "emulators": entries}
        with farm_process(scenario) as (proc, ready, _elapsed):
            pin(proc.pid, server_cores)
            urls = {m["name"]: m["urls"]["http"] for m in ready["emulators"]}
            for kind, target in TARGETS.items():
                plain, quirky = urls[f"{kind}-plain"] + target, urls[f"{kind}-quirks"] + target
                with urllib.request.urlopen(plain) as a, urllib.request.urlopen(quirky) as b:
                    if a.read() != b.read():
                        sys.exit(f"{kind}: the profile matched {target}: not what is measured")
                measured(plain, proc.pid, dict(load, seconds=1))  # warm up both
                measured(quirky, proc.pid, dict(load, seconds=1))
                without, with_ = [], []
                for i in range(args.runs):
                    order = [(plain, without), (quirky, with_)]
                    for url, into in (order if i % 2 == 0 else order[::-1]):
                        into.append(measured(url, proc.pid, load))
                ratios = sorted(w["rps"] / p["rps"] for w, p in zip(with_, without,
                                                                     strict=True))
                a_m, b_m = median_of(without), median_of(with_)
                show(f"{kind}: a request its profile does not match ({env_note()}, {pinned}; "
                     f"wrk -t1 -c{args.connections}; {args.runs} pairs of {args.seconds:g} s "
                     f"runs)", [
                    ("without profile", f"{a_m['rps']:.0f} req/s, {a_m['cpu_us']:.0f} us CPU "
                                        f"per request"),
                    ("with profile", f"{b_m['rps']:.0f} req/s, {b_m['cpu_us']:.0f} us CPU "
                                     f"per request"),
                    ("ratio", f"{statistics.median(ratios):.3f}x  (median of the pairs; "
                              f"{ratios[0]:.3f}-{ratios[-1]:.3f})"),
                    ("CPU per request", f"{b_m['cpu_us'] - a_m['cpu_us']:+.1f} us with the "
                                        "profile"),
                ])


if __name__ == "__main__":
    main()
