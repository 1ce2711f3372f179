"""The other way of measuring INSTAR getftpattr throughput (a second, independent figure):
README's command 1 as a user runs it (`emulators run`, the default farm on its documented
ports), one farm process and one baseline process for the whole run, the server pinned to
core 0 from launch and wrk to core 1, five alternating rounds of --seconds each. The baseline
is `web.run_app` with one route answering the same bytes, access_log=None.

    python bench/throughput_one_pair.py [--seconds 5] [--rounds 5]

Prints each round and the median ratio. It needs the default ports (8081, 8700, ...) free.
bench/throughput.py is the method the figures in bench/README.md are judged by: it takes the
median over three fresh pairs of processes, because one process pair can run 10-20 % faster
or slower than another for its whole life; this script shows what one pair sees.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import env_note, launch, stop, wrk

PATH_QS = "/param.cgi?cmd=getftpattr&user=admin&pwd=instar"
BASELINE_PORT = 18081
BASELINE = r'''
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
async def handler(request):
    return web.Response(body=body, content_type="text/plain")
app = web.Application()
app.router.add_get("/param.cgi", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: the server on one, wrk on the other")
    with tempfile.TemporaryDirectory(prefix="one-pair-") as tmp:
        try:  # the default farm, as README's command runs it
            farm = launch("default", None, Path(tmp) / "ready.json", Path(tmp) / "farm.log",
                          log_level=None, prefix=("taskset", "-c", "0"))
        except RuntimeError as exc:
            raise SystemExit(f"the default farm did not start (ports in use?): {exc}") from None
        base = None
        try:
            url = "http://127.0.0.1:8081" + PATH_QS
            with urllib.request.urlopen(url) as reply:
                (Path(tmp) / "body").write_bytes(reply.read())
            base = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", BASELINE,
                                     str(Path(tmp) / "body"), str(BASELINE_PORT)])
            base_url = f"http://127.0.0.1:{BASELINE_PORT}" + PATH_QS
            time.sleep(1.5)
            load = {"seconds": args.seconds, "prefix": ["taskset", "-c", "1"]}
            wrk(url, **dict(load, seconds=1))  # warm up both
            wrk(base_url, **dict(load, seconds=1))
            print(f"== INSTAR getftpattr, one pair of processes ({env_note()}; wrk -t1 -c32, "
                  f"{args.rounds} alternating rounds of {args.seconds:g} s)")
            ratios = []
            for n in range(args.rounds):
                farm_rps = wrk(url, **load)["rps"]
                base_rps = wrk(base_url, **load)["rps"]
                ratios.append(farm_rps / base_rps)
                print(f"  round {n + 1}: farm {farm_rps:.0f} req/s, baseline {base_rps:.0f} "
                      f"req/s, ratio {ratios[-1]:.2f}x")
            print(f"  median ratio {statistics.median(ratios):.2f}x "
                  f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")
        finally:
            stop(farm)
            if base is not None:
                base.terminate()
                base.wait(10)


if __name__ == "__main__":
    main()
