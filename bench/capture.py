"""A capture of one emulated device or cloud on loopback, as a user runs it: ``emulators
capture`` (a child process, its start-up included) against an INSTAR and an ACTi camera and
an IoTDA and an EnOS member of a farm; the total time (target: under 10 s), the probe script's
requests and the time per request.

    python bench/capture.py [--runs 3]

The farm runs in this process (emulators.testing.RunningFarm, its own thread and loop); the
capture is a child process. The time per request is the capture's wall time less a run of
``emulators kinds`` (the interpreter's and the package's start-up), over its requests.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulators.testing import RunningFarm  # noqa: E402


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "emulators", *args], capture_output=True,
                            text=True, env=env, check=False, timeout=600)
    return time.perf_counter() - start, result


APP_KEY, APP_SECRET = "7b4fa3c2-1d5e-4f60-9a8b-2c3d4e5f6a7b", "e1d2c3b4-a596-4788-9900-aabbccddeeff"
NO_MQTT = {"mqtt_port": None, "mqtts_port": None}
# Each kind's member and the capture's own arguments (the clouds': credentials, params).
MEMBERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"name": "cam", "kind": "instar-camera", "port": 0}, []),
    ({"name": "acti", "kind": "acti-camera", "port": 0}, []),
    ({"name": "iotda", "kind": "iotda", "port": 0, **NO_MQTT,
      "products": [{"product_id": "camera", "name": "Camera"}],
      "devices": [{"node_id": "cam-1", "product_id": "camera"}]}, []),
    ({"name": "enos", "kind": "enos", "port": 0, **NO_MQTT, "orgs": [{"orgId": "o1"}],
      "products": [{"orgId": "o1", "productKey": "pk"}],
      "devices": [{"orgId": "o1", "assetId": "a1", "productKey": "pk", "deviceKey": "dk"}],
      "apps": [{"appKey": APP_KEY, "appSecret": APP_SECRET}]},
     ["--user", APP_KEY, "--password", APP_SECRET, "--param", "org_id=o1",
      "--param", "asset_id=a1"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    farm = RunningFarm.start({"version": 1, "name": "bench",
                              "emulators": [entry for entry, _ in MEMBERS]}, tmp)
    try:
        startup = statistics.median(timed("kinds")[0] for _ in range(args.runs))
        print(f"python -m emulators start-up (kinds): {startup:.2f} s (median of {args.runs})")
        for index, (entry, extra) in enumerate(MEMBERS):
            kind = entry["kind"]
            url = farm.ready["emulators"][index]["urls"]["http"]
            times, requests = [], 0
            for run in range(args.runs):
                seconds, result = timed("capture", "--kind", kind, "--target", url, *extra,
                                        "--out", str(tmp / f"{kind}-{run}.yaml"))
                if result.returncode != 0:
                    raise SystemExit(f"capture failed: {result.stderr}")
                requests = int(re.search(r"\((\d+) requests\)", result.stdout)[1])  # type: ignore[index]
                times.append(seconds)
            total = statistics.median(times)
            per = (total - startup) / requests * 1000
            print(f"{kind}: capture {total:.2f} s (median of {args.runs}; target < 10 s), "
                  f"{requests} requests, {per:.1f} ms per request beyond start-up")
    finally:
        farm.stop()


if __name__ == "__main__":
    main()
