"""IoTDA data forwarding: what an active rule with an HTTP push or an AMQP queue costs device
reports, and how fast forwarded documents reach the backend, against the same reports with no
rule measured in the same run.

    python bench/forwarding.py [--seconds 5] [--runs 3] [--only baseline,http,amqp]
                               [--state-dir]

One farm process (`emulators run`, no state directory unless --state-dir) with one IoTDA
member: a SECRET device with ``secure_access: false`` (plain TCP MQTT), a token for the REST
calls (``X-Auth-Token``), an AMQPS listener. The farm is pinned to one core; every client
process to the other:

- the publisher (bench/mqtt.py's raw asyncio QoS 1 client, 20 in flight) sends property
  reports ``{"services":[{"service_id":"b","properties":{"seq":N,"t":<time.time()>}}]}`` on
  ``$oc/devices/{id}/sys/properties/report`` for --seconds after a 0.5 s warm-up and counts
  PUBACKs;
- an HTTP receiver (aiohttp) answering every POST 200 and recording its arrival time;
- an AMQP consumer (python-qpid-proton's BlockingConnection over amqps, ANONYMOUS_PEER, SASL
  PLAIN ``accessKey=<key>|timestamp=<ms>`` and the access code, 100 credits, each message
  accepted) on a queue made with AddQueue and CreateAccessCode.

Two rules on ``device.property:report`` are made over the REST API before any run, one with an
HTTP_FORWARDING action to the receiver, one with an AMQP_FORWARDING action to the queue; a
mode is which of them is active (UpdateRoutingRule ``active``):

1. **baseline**: no rule active; PUBACKs per second;
2. **http**: the HTTP rule active; PUBACKs per second, pushes received per second in the
   same window, report-to-push latency p50 / p99 (the receiver's arrival time less the
   ``t`` in the document, for the reports sent in the window);
3. **amqp**: the AMQP rule active; the same with messages received by the consumer.

After each run the script waits until the farm has nothing left to push or deliver (its
control plane's ``forwarding`` and ``amqp_queues``). The farm's CPU per report counts from the
run's start to that point, so work left behind in queues is paid for. The farm's and the
client processes' CPU share while the publisher runs are printed too: they tell which side was
the limit (the receivers share the clients' core with the publisher). Each run's order of the
modes is rotated; every figure is the median of --runs runs, each ratio (forwarded rate over
the same run's baseline rate) the median of the runs' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import ROOT, cpu_seconds, env_note, log_problems, pin, server_and_load_cores, show
from mqtt import (
    PROJECT,
    SECRET,
    WINDOW,
    Publisher,
    Worker,
    asyncio_publish,
    command,
    emit,
    farm,
    machine_line,
    member_of,
    pctl,
    port_of,
    rest,
    runs,
    scenario,
    sdk_identity,
    secret_device,
)

from emulators.core.mqtt import packets as mqtt_packets

MODES = ("baseline", "http", "amqp")
QUEUE = "bench-forwarding"
CREDIT = 100  # the consumer's link credit, topped up as messages arrive
DRAIN_LIMIT = 120.0  # seconds to wait for the farm to finish forwarding after a run


# -- the publisher: bench/mqtt.py's QoS 1 client with a stamped report per message -------------

class StampedPublisher(Publisher):
    """Each PUBLISH carries its own sequence number and send time (``time.time()``), so a
    receiver can tell the latency of each forwarded document."""

    def __init__(self, topic: str, window: int) -> None:
        super().__init__(topic, b"", window)
        self.topic_field = mqtt_packets.text(topic)
        self.seq = 0

    def packets(self, n: int) -> bytes:
        out = []
        now = time.time()
        for _ in range(n):
            self.next_id = self.next_id % 0xFFFF + 1
            self.seq += 1
            payload = (b'{"services":[{"service_id":"b","properties":{"seq":%d,"t":%.6f}}]}'
                       % (self.seq, now))
            out.append(b"\x32" + mqtt_packets.remaining_length(
                len(self.topic_field) + 2 + len(payload)) + self.topic_field
                + struct.pack("!H", self.next_id) + payload)
        self.in_flight += n
        return b"".join(out)


async def stamped_publish(target: dict[str, Any], window: int,
                          seconds: float) -> dict[str, Any]:
    """bench/mqtt.py's ``asyncio_publish`` with stamped reports."""
    return await asyncio_publish(target, b"", window, seconds, protocol=functools.partial(
        StampedPublisher, target["topic"], window))


async def publish_worker(job: dict[str, Any]) -> None:
    async for cmd, target in runs(job):
        emit({"event": "ran", **await stamped_publish(target, job["window"], cmd["seconds"])})


# -- the receivers ---------------------------------------------------------------------------

class Arrivals:
    """(arrival time, the report's ``t``) of every forwarded document since the last
    collect; written by the receiving thread or task, read by the command loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[float, float]] = []
        self.bad = 0

    def add(self, body: bytes | str) -> None:
        arrival = time.time()
        try:
            t = float(json.loads(body)["notify_data"]["body"]["services"][0]["properties"]["t"])
        except (ValueError, KeyError, IndexError, TypeError):
            self.bad += 1
            return
        with self.lock:
            self.items.append((arrival, t))

    def answer(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``count``: how many so far; ``collect``: figures for the publisher's window
        [wall0, wall1], then forget them."""
        if cmd["cmd"] == "count":
            return {"received": len(self.items)}
        with self.lock:
            items, self.items = self.items, []
        w0, w1 = cmd["wall0"], cmd["wall1"]
        in_window = sum(1 for a, _ in items if w0 <= a <= w1)
        latencies = [a - t for a, t in items if w0 <= t <= w1]
        return {"received": len(items), "in_window": in_window, "of_window": len(latencies),
                "p50_ms": pctl(latencies, 0.5) * 1000, "p99_ms": pctl(latencies, 0.99) * 1000,
                "bad": self.bad}


async def http_worker(job: dict[str, Any]) -> None:
    """An application server for HTTP pushes: every POST is answered 200 (empty)."""
    from aiohttp import web

    arrivals = Arrivals()

    async def push(request: web.Request) -> web.Response:
        arrivals.add(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/push", push)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    emit({"event": "prepared", "url": f"http://127.0.0.1:{port}/push"})
    while (cmd := await command())["cmd"] != "stop":
        emit(arrivals.answer(cmd))
    await runner.cleanup()


def amqp_worker(job: dict[str, Any]) -> None:
    """Huawei's Python sample's consumer (tests/iotda/test_forwarding_amqp.py) in a thread;
    this thread answers the commands."""
    from proton import SSLDomain, Timeout
    from proton.utils import BlockingConnection

    arrivals = Arrivals()
    attached = threading.Event()
    stopping = threading.Event()
    failure: list[str] = []

    def consume() -> None:
        try:
            domain = SSLDomain(SSLDomain.MODE_CLIENT)
            domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
            user = f"accessKey={job['access_key']}|timestamp={int(time.time() * 1000)}"
            connection = BlockingConnection(job["url"], timeout=10, user=user,
                                            password=job["access_code"],
                                            allowed_mechs="PLAIN", ssl_domain=domain)
            receiver = connection.create_receiver(job["queue"], credit=CREDIT)
        except Exception as exc:  # said to the bench, which stops
            failure.append(f"{type(exc).__name__}: {exc}")
            attached.set()
            return
        attached.set()
        try:
            while not stopping.is_set():
                try:
                    message = receiver.receive(timeout=0.5)
                except Timeout:
                    continue
                arrivals.add(message.body)
                receiver.accept()
        except Exception as exc:
            failure.append(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    attached.wait()
    emit({"event": "prepared", "error": failure[0] if failure else None})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "stop":
            break
        emit({**arrivals.answer(cmd), "error": failure[0] if failure else None})
    stopping.set()
    thread.join(5)


def worker_main() -> None:
    job = json.loads(sys.stdin.readline())
    if job["kind"] == "publish":
        asyncio.run(publish_worker(job))
    elif job["kind"] == "http":
        asyncio.run(http_worker(job))
    else:
        amqp_worker(job)


class Client(Worker):
    """A client process of this script (bench/mqtt.py's Worker: a job, then commands, JSON
    lines both ways)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.send(job)

    def ask(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.send(doc)
        return self.read()


@contextlib.contextmanager
def client(job: dict[str, Any]) -> Iterator[Client]:
    made = Client(job)
    try:
        yield made
    finally:
        made.stop()


# -- the bench -------------------------------------------------------------------------------

def farm_member(control: str) -> dict[str, Any]:
    """The IoTDA member as the control plane describes it now (``GET /v1/farm``)."""
    request = urllib.request.Request(f"{control}/farm", headers={"X-Requested-With": "bench"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return member_of(json.loads(reply.read()))


def farm_busy(control: str) -> int:
    """Pushes waiting for a host and messages waiting in or unsettled from a queue."""
    member = farm_member(control)
    hosts = member["forwarding"]["hosts"].values()
    queues = member["amqp_queues"].values()
    return (sum(h["waiting"] + h["backlog"] for h in hosts)
            + sum(q["waiting"] + q["unsettled"] for q in queues))


def drain(control: str, sink: Client | None) -> float:
    """Until the farm has nothing left to forward and ``sink`` has stopped receiving (0.5 s
    without a new document); the seconds it took."""
    started = time.monotonic()
    last, still_since = -1, time.monotonic()
    while time.monotonic() - started < DRAIN_LIMIT:
        busy = farm_busy(control)
        count = sink.ask({"cmd": "count"})["received"] if sink is not None else 0
        if count != last or busy:
            last, still_since = count, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(MODES),
                        help="modes, comma-separated: baseline, http, amqp")
    parser.add_argument("--state-dir", action="store_true",
                        help="run the farm with a state directory (every report saved)")
    args = parser.parse_args()
    modes = [m for m in MODES if m in args.only.split(",")]
    if not modes or set(args.only.split(",")) - set(MODES):
        raise SystemExit(f"--only: some of {', '.join(MODES)}")
    try:
        print(machine_line())
    except OSError:  # bench/mqtt.py's line names Mosquitto's version; not needed here
        print(f"machine: {env_note()}")
    print(f"started {dt.datetime.now().isoformat(timespec='seconds')}: "
          f"python bench/forwarding.py {' '.join(sys.argv[1:])}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-forwarding-") as tmp:
        results, extra = measure(args, modes, Path(tmp))
    report(args, modes, results, extra)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


def measure(args: argparse.Namespace, modes: list[str], tmp: Path
            ) -> tuple[dict[str, list[dict[str, float]]], dict[str, Any]]:
    device = "camera_plain"
    doc = scenario([secret_device("plain", secure=False)])
    doc["name"] = "bench-forwarding"
    doc["emulators"][0]["amqps_port"] = 0
    server_cores, _ = server_and_load_cores()
    load_cores = set(os.sched_getaffinity(0)) - server_cores or server_cores
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with farm(doc, tmp, state=args.state_dir) as (proc, ready, _, log), \
            contextlib.ExitStack() as stack:
        pin(proc.pid, server_cores)
        member = member_of(ready)
        base = f"{member['urls']['http']}/v5/iot/{PROJECT}"
        control = ready["control"]["api"]
        client_id, username, password = sdk_identity(device, SECRET)
        target = {"host": member["host"], "port": port_of(member["urls"]["mqtt"]),
                  "client_id": client_id, "username": username, "password": password,
                  "topic": f"$oc/devices/{device}/sys/properties/report"}
        publisher = stack.enter_context(client({"kind": "publish", "window": WINDOW,
                                                "targets": {"farm": target}}))
        publisher.read()
        pin(publisher.pid, load_cores)
        rules: dict[str, str] = {}
        sinks: dict[str, Client] = {}

        def rule(name: str, channel: str, detail: dict[str, Any]) -> str:
            made = rest("POST", f"{base}/routing-rule/rules", {
                "rule_name": f"bench-{name}",
                "subject": {"resource": "device.property", "event": "report"}})
            rest("POST", f"{base}/routing-rule/actions", {
                "rule_id": made["rule_id"], "channel": channel, "channel_detail": detail})
            return str(made["rule_id"])

        if "http" in modes:
            sinks["http"] = stack.enter_context(client({"kind": "http"}))
            url = sinks["http"].read()["url"]
            rules["http"] = rule("http", "HTTP_FORWARDING", {"http_forwarding": {"url": url}})
        if "amqp" in modes:
            rest("POST", f"{base}/amqp-queues", {"queue_name": QUEUE})
            code = rest("POST", f"{base}/auth/accesscode", {"type": "AMQP"})
            rules["amqp"] = rule("amqp", "AMQP_FORWARDING",
                                 {"amqp_forwarding": {"queue_name": QUEUE}})
            sinks["amqp"] = stack.enter_context(client({
                "kind": "amqp", "url": member["urls"]["amqps"], "queue": QUEUE,
                "access_key": code["access_key"], "access_code": code["access_code"]}))
            said = sinks["amqp"].read()
            if said.get("error"):
                raise SystemExit(f"the AMQP consumer could not attach: {said['error']}")
        for sink in sinks.values():
            pin(sink.pid, load_cores)
        active = dict.fromkeys(rules, False)

        def run(mode: str, seconds: float) -> dict[str, float]:
            for name, rule_id in rules.items():
                if active[name] != (name == mode):
                    active[name] = name == mode
                    rest("PUT", f"{base}/routing-rule/rules/{rule_id}", {"active": active[name]})
            clients = [publisher.pid, *(k.pid for k in sinks.values())]
            cpu0 = cpu_seconds(proc.pid)
            load0, wall0 = sum(cpu_seconds(p) for p in clients), time.perf_counter()
            got = publisher.ask({"cmd": "run", "target": "farm", "seconds": seconds})
            wall = time.perf_counter() - wall0
            farm_share = (cpu_seconds(proc.pid) - cpu0) / wall
            load_share = (sum(cpu_seconds(p) for p in clients) - load0) / wall
            if got["unacked"] or got["unexpected"]:
                print(f"  ({mode}: {got['unacked']} unacknowledged, unexpected packets "
                      f"{got['unexpected']})")
            sink = sinks.get(mode)
            drained = drain(control, sink)
            out = {"acked": got["acks"] / got["seconds"],
                   "cpu_us": (cpu_seconds(proc.pid) - cpu0) / max(got["total_acks"], 1) * 1e6,
                   "drain_s": drained, "farm_share": farm_share, "load_share": load_share}
            if sink is not None:
                seen = sink.ask({"cmd": "collect", "wall0": got["wall0"],
                                 "wall1": got["wall1"]})
                if seen.get("error") or seen["bad"]:
                    print(f"  ({mode} receiver: {seen.get('error')}, {seen['bad']} unreadable)")
                out.update(forwarded=seen["in_window"] / (got["wall1"] - got["wall0"]),
                           p50_ms=seen["p50_ms"], p99_ms=seen["p99_ms"],
                           share=seen["of_window"] / max(got["acks"], 1))
            return out

        for mode in modes:  # warm up: connections, the HTTP session, the consumer's link
            run(mode, 1)
        for i in range(args.runs):
            for mode in modes[i % len(modes):] + modes[:i % len(modes)]:
                results[mode].append(run(mode, args.seconds))
        shown = farm_member(control)
        extra = {"problems": log_problems(log), "forwarding": shown["forwarding"],
                 "queues": shown["amqp_queues"], "server_cores": server_cores,
                 "load_cores": load_cores}
    return results, extra


def report(args: argparse.Namespace, modes: list[str],
           results: dict[str, list[dict[str, float]]], extra: dict[str, Any]) -> None:
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for m, rs in results.items()}

    def each(mode: str, key: str, fmt: str = ",.0f") -> str:
        return ", ".join(format(r[key], fmt) for r in results[mode])

    rows: list[tuple[str, str]] = []
    label = {"baseline": "baseline, no rule", "http": "HTTP push rule",
             "amqp": "AMQP queue rule"}
    what = {"http": "pushes received", "amqp": "messages received"}
    for mode in modes:
        r = med[mode]
        rows.append((f"{label[mode]}: reports acked", f"{r['acked']:,.0f}/s (runs "
                     f"{each(mode, 'acked')}); farm CPU {r['cpu_us']:.1f} us per report; "
                     f"CPU while publishing: farm {r['farm_share'] * 100:.0f} %, clients "
                     f"{r['load_share'] * 100:.0f} % of a core"))
        if mode in what:
            rows.append((f"  {what[mode]}", f"{r['forwarded']:,.0f}/s (runs "
                         f"{each(mode, 'forwarded')}); of the window's reports "
                         f"{r['share'] * 100:.1f} % arrived"))
            rows.append(("  report -> arrival", f"p50 {r['p50_ms']:.1f} ms, p99 "
                         f"{r['p99_ms']:.1f} ms; drained {r['drain_s']:.1f} s after the run"))
    if "baseline" in modes:
        for mode in (m for m in modes if m in what):
            for key, name in (("forwarded", what[mode]), ("acked", "reports acked")):
                ratios = [f[key] / b["acked"] for f, b in zip(
                    results[mode], results["baseline"], strict=True)]
                rows.append((f"ratio {mode.upper()} {name} / baseline",
                             f"{statistics.median(ratios):.3f}x (runs "
                             f"{', '.join(f'{x:.3f}' for x in ratios)})"))
    rows.append(("farm says", f"{extra['forwarding']['delivered']} pushes delivered; hosts "
                              f"{extra['forwarding']['hosts']}; queues {extra['queues']}"))
    problems = extra["problems"]
    rows.append(("farm log", f"{len(problems)} ERROR lines"
                 + (f": {problems[:3]}" if problems else "")))
    show(f"IoTDA data forwarding of QoS 1 property reports ({env_note()}; one plain-TCP device, "
         f"{WINDOW} in flight; farm {'with' if args.state_dir else 'without'} a state dir, "
         f"pinned to core(s) {sorted(extra['server_cores'])}, clients to "
         f"{sorted(extra['load_cores'])}; median of {args.runs} x {args.seconds:g} s)", rows)


if __name__ == "__main__":
    main()
