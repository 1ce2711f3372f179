"""The dashboard's speed, in Debian's headless Chromium.

    python bench/dashboard.py [--loads 5] [--fleet 1000] [--entries 10000]
                              [--seconds 2] [--runs 4] [--processes 2] [--part both|page|cost]

page: a farm of the default scenario plus a --fleet camera fleet, its journal filled with
--entries requests spread over the fleet; the page loaded --loads times (a fresh tab each),
timed by the page itself: "interactive" (members drawn, every form and button live: the
performance mark app.js sets) and "ready" (the journal, files, certificates and chart drawn
too: body[data-ready]); the first load meets the journal's requests still unbuilt. Then a
search keystroke over the fleet (input event to rows drawn). The baseline is the same page on
the default farm with an empty journal, loaded in the same run. Target: interactive within
500 ms.

cost: the INSTAR getftpattr throughput of bench/throughput.py's default farm (wrk -t1, server
pinned to one core, wrk and the browser to the others) with no dashboard, with one dashboard
open (streaming the journal at its rate, redrawing its chart), and with a raw stream of every
entry (curl on /v1/journal/stream without max_rate: what the dashboard would cost if it took
everything); and curl reading the stream as the page does (max_rate=25), which is the farm's
side of an open dashboard without the browser's own CPU on this 2-core machine. The four
take turns on the same farm process, in rounds whose order alternates;
each ratio is the median of the rounds'; CPU per request of the farm process too. Target: the
dashboard costs at most 5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
from common import (
    cpu_seconds,
    env_note,
    farm_process,
    pin,
    server_and_load_cores,
    show,
    wrk,
)
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
from throughput import TARGETS, default_farm


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(
        shutil.which("chromedriver") or "/usr/bin/chromedriver"))


def ui_url(ready: dict[str, Any]) -> str:
    return str(ready["control"]["url"]).removesuffix("/v1") + "/ui"


TIMES = """
    const mark = performance.getEntriesByName('interactive')[0];
    return [mark ? mark.startTime : null, Number(document.body.dataset.ready)];"""


def load_times(driver: webdriver.Chrome, url: str, loads: int) -> list[tuple[float, float]]:
    """(interactive, ready) in ms from navigation start, one fresh tab per load."""
    out = []
    for _ in range(loads):
        driver.switch_to.new_window("tab")
        driver.get(url)
        WebDriverWait(driver, 60, poll_frequency=0.02).until(
            lambda d: d.execute_script("return document.body.dataset.ready"))
        interactive, ready = driver.execute_script(TIMES)
        out.append((float(interactive), float(ready)))
        driver.close()
        driver.switch_to.window(driver.window_handles[0])
    return out


SEARCH = """
    const box = document.querySelector('#member-search');
    const started = performance.now();
    box.value = arguments[0];
    box.dispatchEvent(new Event('input'));
    const rows = document.querySelectorAll('#members tr[data-member]').length;
    return [performance.now() - started, rows];"""


async def fill_journal(urls: list[str], entries: int) -> float:
    """``entries`` getserverinfo requests, round-robin over the cameras; seconds taken."""
    started = time.perf_counter()
    queue = [f"{urls[i % len(urls)]}/param.cgi?cmd=getserverinfo" for i in range(entries)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def worker(mine: list[str]) -> None:
            for url in mine:
                async with session.get(url) as reply:
                    await reply.read()

        await asyncio.gather(*(worker(queue[i::64]) for i in range(64)))
    return time.perf_counter() - started


def page(args: argparse.Namespace) -> None:
    baseline_doc = default_farm()
    big = default_farm()
    big["emulators"].append({"name": "cam", "kind": "instar-camera", "count": args.fleet,
                             "fleet": "ports", "host": "127.0.0.1", "port": 0})
    big.setdefault("journal", {})["capacity"] = max(args.entries, 10_000)
    driver = browser()
    try:
        with farm_process(baseline_doc) as (_p, ready, _t):
            driver.get("about:blank")
            base = load_times(driver, ui_url(ready), args.loads)
        with farm_process(big) as (_p, ready, started):
            cams = [m["urls"]["http"] for m in ready["emulators"] if m.get("group") == "cam"]
            filled = asyncio.run(fill_journal(cams, args.entries))
            times = load_times(driver, ui_url(ready), args.loads)
            driver.get(ui_url(ready))
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready"))
            searches = [driver.execute_script(SEARCH, needle)
                        for needle in ("cam-0999", "cam-05", "instar", "cam-0999", "cam-1")]
    finally:
        driver.quit()
    first, rest = times[0], times[1:] or times
    med_i = statistics.median(t[0] for t in rest)
    med_r = statistics.median(t[1] for t in rest)
    base_i = statistics.median(t[0] for t in base)
    base_r = statistics.median(t[1] for t in base)
    show(f"dashboard page: default farm + {args.fleet}-camera fleet, {args.entries} journal "
         f"entries ({env_note()}; headless Chromium 1280x800; {args.loads} loads, fresh tab each)",
         [("farm start", f"{started:.1f} s; journal filled in {filled:.1f} s"),
          ("first load", f"interactive {first[0]:.0f} ms, ready {first[1]:.0f} ms "
                         "(the journal's requests unbuilt until then)"),
          ("later loads", f"interactive {med_i:.0f} ms, ready {med_r:.0f} ms (median)  "
                          "target: interactive < 500 ms"),
          ("baseline", f"interactive {base_i:.0f} ms, ready {base_r:.0f} ms (default farm, "
                       "empty journal)"),
          ("ratio", f"interactive {med_i / base_i:.2f}x, ready {med_r / base_r:.2f}x the "
                    "baseline"),
          ("search keystroke", ", ".join(f"{n} rows {ms:.1f} ms" for ms, n in searches))])


def measured(url: str, pid: int, load: dict[str, Any]) -> dict[str, float]:
    before = cpu_seconds(pid)
    run = wrk(url, **load)
    run["cpu_us"] = (cpu_seconds(pid) - before) / run["requests"] * 1e6
    return run


def cost(args: argparse.Namespace) -> None:
    server_cores, wrk_prefix = server_and_load_cores()
    load_cores = set(os.sched_getaffinity(0)) - server_cores or server_cores
    os.sched_setaffinity(0, load_cores)  # the browser and curl start from here: off the server
    load = {"seconds": args.seconds, "connections": 32, "prefix": wrk_prefix}
    path = TARGETS["instar getftpattr"][2]
    variants = ("no dashboard", "dashboard open", "its stream, no browser", "raw stream")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {v: [] for v in variants[1:]}
    cpu_ratios: dict[str, list[float]] = {v: [] for v in variants[1:]}
    drawn = []
    driver = browser()
    try:
        for _ in range(args.processes):
            # One farm process for all three: a process of the same code runs 10-20 % faster
            # or slower than another for its whole life (bench/throughput.py), which would
            # swamp a 5 % budget; the variants take turns on the same process instead.
            with farm_process(default_farm()) as (proc, ready, _t):
                pin(proc.pid, server_cores)
                url = next(m["urls"]["http"] for m in ready["emulators"]
                           if m["kind"] == "instar-camera") + path
                measured(url, proc.pid, dict(load, seconds=1))  # warm up
                for i in range(args.runs):
                    pair = {}
                    for variant in (variants if i % 2 == 0 else variants[::-1]):
                        pair[variant] = one_variant(variant, driver, ready, url, proc.pid, load)
                        if variant == "dashboard open":
                            drawn.append(driver.execute_script(
                                "return [document.querySelectorAll('#journal tbody tr').length,"
                                " document.querySelector('#journal-skipped').textContent]"))
                            driver.get("about:blank")
                    for v in variants:
                        runs[v].append(pair[v])
                    for v in variants[1:]:
                        ratios[v].append(pair[v]["rps"] / pair["no dashboard"]["rps"])
                        cpu_ratios[v].append(pair[v]["cpu_us"] / pair["no dashboard"]["cpu_us"])
    finally:
        driver.quit()
    plain = runs["no dashboard"]
    table = [("no dashboard", f"{statistics.median(r['rps'] for r in plain):.0f} req/s, "
                              f"{statistics.median(r['cpu_us'] for r in plain):.0f} us CPU "
                              "per request (median)")]
    for v in variants[1:]:
        rs = sorted(ratios[v])
        cs = sorted(cpu_ratios[v])
        table.append((v, f"{statistics.median(r['rps'] for r in runs[v]):.0f} req/s: "
                         f"{statistics.median(rs):.3f}x ({rs[0]:.2f}-{rs[-1]:.2f}); CPU per "
                         f"request {statistics.median(cs):.3f}x ({cs[0]:.2f}-{cs[-1]:.2f})"))
    rows, skipped = drawn[-1]
    table.append(("the dashboard drew", f"{rows} rows kept; {skipped or 'nothing skipped'}"))
    table.append(("target", "dashboard open >= 0.95x"))
    show(f"INSTAR getftpattr with a dashboard streaming ({env_note()}; server on core "
         f"{min(server_cores)}, wrk + browser on {sorted(load_cores)}; {args.processes} farm "
         f"processes x {args.runs} rounds of the four, {args.seconds:g} s runs, order "
         "alternating)", table)


def one_variant(variant: str, driver: webdriver.Chrome, ready: dict[str, Any], url: str,
                pid: int, load: dict[str, Any]) -> dict[str, float]:
    """One wrk run with nothing watching, the dashboard open, curl reading the stream as the
    page asks for it (max_rate=25: the farm's side of the page without the browser's CPU on
    the machine), or curl reading every entry."""
    if variant == "no dashboard":
        return measured(url, pid, load)
    if variant == "dashboard open":
        driver.get(ui_url(ready))
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.body.dataset.ready"))
        time.sleep(0.5)  # the page settled: what is measured is it watching
        return measured(url, pid, load)
    rate = "?max_rate=25" if variant == "its stream, no browser" else ""
    curl = subprocess.Popen(["curl", "-sN", "-o", "/dev/null",
                             f"{ready['control']['api']}/journal/stream{rate}"])
    try:
        time.sleep(0.5)
        return measured(url, pid, load)
    finally:
        curl.terminate()
        curl.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--part", choices=("both", "page", "cost"), default="both")
    args = parser.parse_args()
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        sys.exit("bench/dashboard.py needs Debian's chromium and chromium-driver")
    if args.part in ("both", "page"):
        page(args)
    if args.part in ("both", "cost"):
        cost(args)


if __name__ == "__main__":
    main()
