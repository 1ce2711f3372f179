"""IoTDA device access over MQTT, against Mosquitto measured in the same run.

    python bench/mqtt.py [--sessions 10000] [--seconds 5] [--runs 3] [--processes 4]
                         [--only sessions,connect,publish,halfopen] [--secret-over tls|tcp]
                         [--halfopen 1000] [--waves 3]

1. **Concurrent sessions.** One farm process (`emulators run`, a state directory) whose IoTDA
   member lists --sessions devices in its scenario: half CERTIFICATES devices with no
   fingerprint (each records the certificate it first shows), half SECRET devices with
   ``secure_access: true``, so every session is MQTT over TLS (the farm CA's server certificate,
   host name not checked, CA verified: the vendor SDK's way). A device CA is uploaded and
   verified through the REST API (add, then check with a certificate whose CN is the
   verification code) before any device connects. --processes client processes each make a
   client certificate (EC P-256, from the device CA) for each of their certificate devices,
   then open their share of sessions (CONNECT with the SDK's client id, user name and HMAC
   password; keep-alive 600 s) from their own loopback address. Printed: start-up time, the
   farm's RSS before and with every session open, per session, a PINGREQ answered on every
   session, and the farm's own count of sessions (control plane).
2. **mTLS connects per second.** A second farm (the connecting devices only) and Mosquitto
   (``require_certificate true``, ``cafile`` the device CA, an EC P-256 server certificate as the
   farm's): each connection is a full TLS 1.2 handshake with a client certificate, CONNECT,
   CONNACK 0, DISCONNECT and close, from --processes client processes, 16 devices each, spread
   over 16 loopback source addresses each. The broker is pinned to one core, the clients to the
   other; the runs alternate between the two brokers. Broker CPU per connection is printed too:
   it does not depend on who ran out of CPU first.
3. **QoS 1 publish throughput.** One client process (the same client, payload and transport for
   both: plain TCP, a ``secure_access: false`` SECRET device on the farm, an anonymous listener
   on Mosquitto) publishes a 202-byte IoTDA properties report on
   ``$oc/devices/{id}/sys/properties/report`` with 20 messages in flight (the vendor SDK's
   window) and counts PUBACKs per second. Two clients, each against every broker: the raw
   asyncio client (the ratio the target is about: it loads Mosquitto as far as one Python
   process can) and paho-mqtt as the vendor SDK drives it. The farm is measured with its
   state directory (what `emulators run --state-dir` does: every report is saved, fsync
   included, before its PUBACK) and without one (state in memory), to show where its time
   goes. Broker and client are pinned to a core each; the runs alternate.

4. **Half-open MQTTS connections** (``--only halfopen``; not in the default set). A farm
   whose IoTDA member has an MQTTS listener; --waves waves of --halfopen TCP connections to it
   that never send a ClientHello (what a port scan, a stalled client or a SYN-and-wait attack
   leaves). Printed: the farm's RSS before any (the baseline), with each wave open, and 3 s
   after each wave was closed (after the broker's heap trim), as MB and as a ratio to the
   baseline; then the same with ``mqtt_max_handshakes`` above --halfopen, so that every
   connection is a handshake in flight, to show what one costs.

Every figure is the median of --runs runs of --seconds (sessions: one run). The clients of
parts 1 and 2 are a raw asyncio MQTT 3.1.1 client (CONNECT, CONNACK, PINGREQ, DISCONNECT), not
paho: a paho client is a thread each. RLIMIT_NOFILE is raised to its hard limit in every
process; when --sessions cannot fit under it the script says so and opens what fits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import os
import platform
import resource
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from common import (
    ROOT,
    cpu_seconds,
    env_note,
    launch,
    log_problems,
    pin,
    raise_nofile,
    rss_mb,
    server_and_load_cores,
    show,
    stop,
    wait_port,
)

from emulators import pki
from emulators.core.mqtt import packets

MOSQUITTO = "/usr/sbin/mosquitto"
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # the default credential's project
TOKEN = "BenchMqttToken0001"
PRODUCT = "camera"
SECRET = "BenchSecret0001"
KEEP_ALIVE = 600  # within IoTDA's 30..1200 s: the server waits 1.5x that before it gives up
WINDOW = 20  # QoS 1 messages in flight (the vendor SDK's max_inflight_messages_set(20))
CONNECT_DEVICES_PER_PROCESS = 16  # concurrent connectors per client process in part 2
TARGET_RSS_MB = 1024
TARGET_CONNECTS = 300.0
TARGET_PUBLISH_RATIO = 0.5
FD_MARGIN = 200  # descriptors a process needs besides its sessions
# The properties report published in part 3: 202 bytes, as the SDK's report_properties sends.
REPORT = {"services": [{"service_id": "Ptz", "properties": {
    "pan": 10, "tilt": -5, "zoom": 2, "focus": 118, "iris": 7, "preset": 3, "speed": 40,
    "patrol": False, "home": "00", "ir": "auto", "wiper": 0},
    "event_time": "20261203T101500Z"}]}


# -- MQTT 3.1.1 packets (the client side): the farm's one codec ---------------------------------

def connect_packet(client_id: str, username: str | None, password: str | None,
                   keep_alive: int = KEEP_ALIVE) -> bytes:
    return packets.encode_connect(client_id, username=username, password=password,
                                  keep_alive=keep_alive)


PINGREQ = packets.PINGREQ_PACKET
PINGRESP = packets.PINGRESP_PACKET
DISCONNECT = packets.DISCONNECT_PACKET


def sdk_timestamp() -> str:
    return time.strftime("%Y%m%d%H", time.gmtime())


def sdk_identity(device_id: str, secret: str | None) -> tuple[str, str, str | None]:
    """(client id, user name, password) as the vendor SDK sends them: ``_0_0_`` (HMAC SHA-256,
    the hour not checked), the device id, HMAC(key=hour, msg=secret) for a secret device."""
    stamp = sdk_timestamp()
    password = (hmac.new(stamp.encode(), secret.encode(), hashlib.sha256).hexdigest()
                if secret is not None else None)
    return f"{device_id}_0_0_{stamp}", device_id, password


# -- small helpers --------------------------------------------------------------------------------

def client_context(ca_pem: str, chain_file: str | None = None) -> ssl.SSLContext:
    """The vendor SDK's TLS: TLS 1.2, the CA file verified, no host name check."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_pem)
    if chain_file is not None:
        ctx.load_cert_chain(chain_file)
    return ctx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pctl(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine_line() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    mosq = version.splitlines()[0].strip() if version else "mosquitto ?"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return (f"machine: {env_note()}, {model}, {mem:.1f} GiB RAM, Linux {platform.release()}, "
            f"{ssl.OPENSSL_VERSION}, {mosq}, RLIMIT_NOFILE {soft}/{hard}, ephemeral ports "
            f"{ports[0]}-{ports[1]}")


def cert_chain_pem(key: pki.PrivateKey, cn: str, ca_cert: Any, ca_key: pki.PrivateKey) -> str:
    """A device's client certificate (EC P-256, 30 days, clientAuth) and its key, as one PEM."""
    cert = pki.issue(key.public_key(), pki.name(CN=cn), ca_cert, ca_key, days=30, client=True)
    return pki.cert_pem(cert) + pki.key_pem(key)


# -- client processes ------------------------------------------------------------------------------
# Each is this script with --worker: a job (JSON) on the first line of stdin, then commands,
# one a line; answers are JSON lines on stdout.

def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def command() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    doc: dict[str, Any] = json.loads(line) if line.strip() else {"cmd": "stop"}
    return doc


def shrink_client_ssl_buffers() -> None:
    """The load generator's own TLS connections read through 32 KiB (asyncio allocates 256 KiB
    per connection); the brokers are not touched."""
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024


async def _open(host: str, port: int, ctx: ssl.SSLContext | None, local: str,
                within: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(
        host, port, ssl=ctx, local_addr=(local, 0)), within)


def device_contexts(server_ca: str, chains: list[tuple[str, str]]) -> dict[str, ssl.SSLContext]:
    """A client context per certificate device (its certificate and key), made before any
    timing (``ssl`` loads a certificate chain from a file only)."""
    contexts = {}
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        path = os.path.join(tmp, "chain.pem")
        for device_id, chain in chains:
            Path(path).write_text(chain)
            contexts[device_id] = client_context(server_ca, path)
    return contexts


def sessions_prepare(job: dict[str, Any]) -> dict[str, ssl.SSLContext]:
    """Part 1's certificates: one EC P-256 key and certificate per certificate device, signed
    by the device CA here, in the client process."""
    ca_cert = pki.load_cert(job["device_ca_cert"])
    ca_key = pki.load_key(job["device_ca_key"], trusted=True)
    chains = [(d, cert_chain_pem(pki.ec_key(), d, ca_cert, ca_key))
              for d, secret in job["devices"] if secret is None]
    return device_contexts(job["server_ca"], chains)


async def sessions_worker(job: dict[str, Any], contexts: dict[str, ssl.SSLContext],
                          prepared: float) -> None:
    """Part 1: open every session (on ``go``), ping them all (``ping``), close them
    (``stop``)."""
    secret_ctx = client_context(job["server_ca"]) if job["secret_tls"] else None
    emit({"event": "prepared", "seconds": prepared, "certificates": len(contexts)})
    await command()  # go
    sessions: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    gate = asyncio.Semaphore(job["concurrency"])
    host, local = job["host"], job["local"]

    async def one(device_id: str, secret: str | None) -> None:
        ctx = contexts.get(device_id, secret_ctx)
        async with gate:
            try:
                reader, writer = await _open(host, job["port" if ctx else "plain_port"], ctx,
                                             local, 120)
                writer.write(connect_packet(*sdk_identity(device_id, secret)))
                head = await asyncio.wait_for(reader.readexactly(4), 120)
            except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return
            if head[:2] != b"\x20\x02" or head[3]:
                refused[head[3]] += 1
                writer.close()
                return
            sessions.append((reader, writer))

    started = time.perf_counter()
    await asyncio.gather(*(one(d, s) for d, s in job["devices"]))
    emit({"event": "connected", "ok": len(sessions), "seconds": time.perf_counter() - started,
          "refused": dict(refused), "errors": dict(errors)})
    await command()  # ping

    async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            writer.write(PINGREQ)
            return await asyncio.wait_for(reader.readexactly(2), 60) == PINGRESP
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False

    started = time.perf_counter()
    answered = sum(await asyncio.gather(*(ping(r, w) for r, w in sessions)))
    emit({"event": "pinged", "ok": answered, "seconds": time.perf_counter() - started})
    await command()  # stop
    for _, writer in sessions:
        with contextlib.suppress(OSError):
            writer.write(DISCONNECT)
        writer.close()
    await asyncio.sleep(0.5)
    emit({"event": "closed"})


class ConnectRun:
    """One run of part 2 in one client process: its devices connect, are answered, disconnect
    and close, again and again until ``end`` (loop time)."""

    def __init__(self, host: str, port: int, locals_: list[str], end: float) -> None:
        self.host, self.port, self.locals, self.end = host, port, locals_, end
        self.ok = 0
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()

    async def device(self, n: int, stride: int, device_id: str, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        packet = connect_packet(*sdk_identity(device_id, None))
        i = n
        while loop.time() < self.end:
            i += stride  # the next source address, so that no address runs out of ports
            t0 = loop.time()
            try:
                reader, writer = await _open(self.host, self.port, ctx,
                                             self.locals[i % len(self.locals)], 30)
                writer.write(packet)
                head = await asyncio.wait_for(reader.readexactly(4), 30)
                writer.write(DISCONNECT)
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.failures[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            if head != b"\x20\x02\x00\x00":
                self.failures[f"CONNACK {head.hex()}"] += 1
                continue
            done = loop.time()
            if done <= self.end:
                self.ok += 1
                self.latencies.append(done - t0)


async def runs(job: dict[str, Any]) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    """A worker's commands after it says it is prepared: each ``run`` with its target, until
    ``stop``."""
    emit({"event": "prepared"})
    while True:
        cmd = await command()
        if cmd["cmd"] == "stop":
            return
        yield cmd, job["targets"][cmd["target"]]


async def connect_worker(job: dict[str, Any], contexts: dict[str, ssl.SSLContext]) -> None:
    """Part 2: a ``run`` command names the target and the seconds; ``stop`` ends."""
    loop = asyncio.get_running_loop()
    async for cmd, target in runs(job):
        run = ConnectRun(target["host"], target["port"], job["locals"],
                         loop.time() + cmd["seconds"])
        await asyncio.gather(*(run.device(n, len(contexts), d, c)
                               for n, (d, c) in enumerate(contexts.items())))
        emit({"event": "ran", "ok": run.ok, "seconds": cmd["seconds"],
              "failures": dict(run.failures), "p50_ms": pctl(run.latencies, 0.5) * 1000,
              "p99_ms": pctl(run.latencies, 0.99) * 1000})


class Publisher(asyncio.Protocol):
    """QoS 1 PUBLISHes with ``window`` in flight: each PUBACK that arrives sends the next."""

    def __init__(self, topic: str, payload: bytes, window: int) -> None:
        body_len = 2 + len(topic.encode()) + 2 + len(payload)
        self.prefix = bytes([0x32]) + packets.remaining_length(body_len) + packets.text(topic)
        self.payload = payload
        self.window = window
        self.next_id = 0
        self.acks = 0
        self.in_flight = 0
        self.sending = True
        self.buffer = bytearray()
        self.connack: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.drained: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.unexpected: collections.Counter[int] = collections.Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def packets(self, n: int) -> bytes:
        out = []
        for _ in range(n):
            self.next_id = self.next_id % 0xFFFF + 1
            out.append(self.prefix + struct.pack("!H", self.next_id) + self.payload)
        self.in_flight += n
        return b"".join(out)

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self.packets(self.window))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        acked = 0
        while len(buf) >= 2:
            length, shift, pos = 0, 0, 1
            while True:
                if pos >= len(buf):
                    return self._then(acked)
                byte = buf[pos]
                length |= (byte & 0x7F) << shift
                shift += 7
                pos += 1
                if not byte & 0x80:
                    break
            if len(buf) < pos + length:
                break
            kind = buf[0] >> 4
            if kind == 4:
                acked += 1
            elif kind == 2 and not self.connack.done():
                self.connack.set_result(bytes(buf[:pos + length]))
            else:
                self.unexpected[kind] += 1
            del buf[:pos + length]
        self._then(acked)

    def _then(self, acked: int) -> None:
        if not acked:
            return
        self.acks += acked
        self.in_flight -= acked
        assert self.transport is not None
        if self.sending:
            self.transport.write(self.packets(acked))
        elif self.in_flight == 0 and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def asyncio_publish(target: dict[str, Any], payload: bytes, window: int,
                          seconds: float, *,
                          protocol: Callable[[], Publisher] | None = None) -> dict[str, Any]:
    """The raw asyncio client: connect, publish for ``seconds`` after a 0.5 s warm-up with
    ``window`` in flight, count the PUBACKs, drain the window, disconnect. ``protocol``: a
    Publisher of another payload (bench/forwarding.py stamps each report). The window's
    bounds are also given in wall time (``wall0``, ``wall1``), a receiver's clock."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(
        protocol or functools.partial(Publisher, target["topic"], payload, window),
        target["host"], target["port"])
    transport.write(connect_packet(target["client_id"], target["username"],
                                   target["password"]))
    connack = await asyncio.wait_for(proto.connack, 10)
    if connack[-1] != 0:
        raise SystemExit(f"publisher refused: CONNACK {connack.hex()}")
    proto.start()
    await asyncio.sleep(0.5)
    first, t0, wall0 = proto.acks, time.perf_counter(), time.time()
    await asyncio.sleep(seconds)
    last, t1, wall1 = proto.acks, time.perf_counter(), time.time()
    proto.sending = False
    proto.drained = loop.create_future()
    if proto.in_flight:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proto.drained, 10)
    transport.write(DISCONNECT)
    transport.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proto.lost, 5)
    return {"acks": last - first, "seconds": t1 - t0, "wall0": wall0, "wall1": wall1,
            "total_acks": proto.acks, "unacked": proto.in_flight,
            "unexpected": dict(proto.unexpected)}


def paho_publish(target: dict[str, Any], payload: bytes, window: int,
                 seconds: float) -> dict[str, Any]:
    """paho-mqtt as the vendor SDK drives it (clean session, max_inflight_messages_set(20),
    loop_start's network thread): this thread publishes whenever the window has room."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(client_id=target["client_id"], clean_session=True,
                         callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(window)
    client.username_pw_set(target["username"], target["password"])
    room = threading.Semaphore(window)
    connected = threading.Event()
    acks = [0]

    def on_publish(*_: Any) -> None:
        acks[0] += 1
        room.release()

    client.on_publish = on_publish
    client.on_connect = lambda *_: connected.set()
    client.connect(target["host"], target["port"], keepalive=120)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise SystemExit("paho publisher not connected")
        warm = time.perf_counter() + 0.5
        end = warm + seconds
        sent = 0
        first, t0, counting = 0, warm, False
        while True:
            now = time.perf_counter()
            if now >= warm and not counting:
                first, t0, counting = acks[0], now, True
            if now >= end:
                break
            if room.acquire(timeout=5):
                client.publish(target["topic"], payload, qos=1)
                sent += 1
        last, t1 = acks[0], time.perf_counter()
        deadline = time.monotonic() + 10
        while acks[0] < sent and time.monotonic() < deadline:  # drain the window
            time.sleep(0.01)
        client.disconnect()
    finally:
        client.loop_stop()
    return {"acks": last - first, "seconds": t1 - t0, "unacked": sent - acks[0],
            "unexpected": {}}


async def publish_worker(job: dict[str, Any]) -> None:
    """Part 3: each ``run`` names the client (``asyncio`` or ``paho``), the target and the
    seconds."""
    payload = bytes.fromhex(job["payload"])
    loop = asyncio.get_running_loop()
    async for cmd, target in runs(job):
        if cmd["client"] == "paho":
            got = await loop.run_in_executor(None, paho_publish, target, payload,
                                             job["window"], cmd["seconds"])
        else:
            got = await asyncio_publish(target, payload, job["window"], cmd["seconds"])
        emit({"event": "ran", **got})


def worker_main() -> None:
    raise_nofile()
    shrink_client_ssl_buffers()
    job = json.loads(sys.stdin.readline())
    if job["kind"] == "sessions":
        started = time.perf_counter()
        contexts = sessions_prepare(job)
        asyncio.run(sessions_worker(job, contexts, time.perf_counter() - started))
    elif job["kind"] == "connect":
        asyncio.run(connect_worker(job, device_contexts(job["server_ca"], job["devices"])))
    else:
        asyncio.run(publish_worker(job))


class Worker:
    """One client process: send it a job and commands, read its answers."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.send(job)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, doc: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(doc) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"client process {self.pid} ended (status {self.proc.wait()})")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"cmd": "stop"})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def workers(jobs: list[dict[str, Any]]) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    try:
        for job in jobs:
            made.append(Worker(job))
        yield made
    finally:
        for w in made:
            w.stop()


def all_read(ws: list[Worker]) -> list[dict[str, Any]]:
    return [w.read() for w in ws]


# -- the brokers -----------------------------------------------------------------------------------

@contextlib.contextmanager
def farm(scenario: dict[str, Any], tmp: Path, timeout: float = 600, *, state: bool = True,
         ) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], float, Path]]:
    """`emulators run` on ``scenario`` with a state directory (unless not ``state``), in its own
    process (common.launch); yields (process, ready document, seconds from process start to
    the ready file, its log)."""
    tmp.mkdir(exist_ok=True)
    path = tmp / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    log = tmp / "farm.log"
    try:
        started = launch(path, tmp / "state" if state else None, tmp / "ready.json", log,
                         timeout=timeout, log_level=None)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    try:
        yield started.proc, started.ready, started.elapsed, log
    finally:
        stop(started, 60)


def scenario(devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "bench-mqtt", "emulators": [{
        "name": "iotda", "kind": "iotda", "port": 0, "mqtt_port": 0, "mqtts_port": 0,
        "tokens": [{"token": TOKEN, "project_id": PROJECT}],
        "products": [{"product_id": PRODUCT, "name": "Camera"}],
        "devices": devices}]}


def cert_device(node: str) -> dict[str, Any]:
    return {"node_id": node, "product_id": PRODUCT, "auth_info": {"auth_type": "CERTIFICATES"}}


def secret_device(node: str, secure: bool = True) -> dict[str, Any]:
    return {"node_id": node, "product_id": PRODUCT,
            "auth_info": {"auth_type": "SECRET", "secret": SECRET, "secure_access": secure}}


def member_of(ready: dict[str, Any]) -> dict[str, Any]:
    member: dict[str, Any] = ready["emulators"][0]
    return member


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def rest(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "X-Auth-Token": TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        raw = reply.read()
    return json.loads(raw) if raw else None


def upload_verified_ca(base: str, ca_cert: Any, ca_key: pki.PrivateKey) -> str:
    """AddCertificate, then CheckCertificate (verify) with a certificate whose CN is the
    verification code, signed by the CA's key: the console's flow, over the REST API."""
    url = f"{base}/v5/iot/{PROJECT}/certificates"
    record = rest("POST", url, {"content": pki.cert_pem(ca_cert)})
    proof = pki.issue(pki.ec_key().public_key(), pki.name(CN=record["verify_code"]), ca_cert,
                      ca_key, days=1)
    rest("POST", f"{url}/{record['certificate_id']}/action?action_id=verify",
         {"verify_content": pki.cert_pem(proof)})
    shown = rest("GET", f"{url}?limit=50")
    status = [c.get("status") for c in shown.get("certificates", [])]
    if status != [True]:
        raise SystemExit(f"the device CA is not verified: {shown}")
    return str(record["certificate_id"])


@contextlib.contextmanager
def mosquitto(tmp: Path, tls: tuple[str, str, str] | None = None
              ) -> Iterator[tuple[subprocess.Popen[bytes], int, int | None]]:
    """Mosquitto (no persistence) with an anonymous plain listener and, given ``tls`` (the
    device CA, the server chain and key, PEM), an mTLS listener (``require_certificate true``,
    ``cafile`` the device CA); yields (process, plain port, mTLS port or None)."""
    tmp.mkdir(exist_ok=True)
    plain = free_port()
    conf_text = f"""\
user root
per_listener_settings true
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning

listener {plain} 127.0.0.1
allow_anonymous true
max_connections -1
"""
    mtls = None
    if tls is not None:
        mtls = free_port()
        for name, text in zip(("device-ca.pem", "server.pem", "server.key"), tls, strict=True):
            (tmp / name).write_text(text)
        conf_text += f"""
listener {mtls} 127.0.0.1
allow_anonymous true
max_connections -1
cafile {tmp / "device-ca.pem"}
certfile {tmp / "server.pem"}
keyfile {tmp / "server.key"}
require_certificate true
"""
    conf = tmp / "mosquitto.conf"
    conf.write_text(conf_text)
    with (tmp / "mosquitto.log").open("wb") as err:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=err)
    try:
        wait_port(plain)
        if mtls is not None:
            wait_port(mtls)
        yield proc, plain, mtls
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def settled_rss(pid: int, seconds: float = 1.0) -> float:
    """The RSS once it stops moving by more than 1 MB over 0.25 s (at most ``seconds`` more)."""
    last = rss_mb(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_mb(pid)
        if abs(now - last) < 1:
            return now
        last = now
    return last


# -- part 1: concurrent sessions ------------------------------------------------------------------

def part_sessions(args: argparse.Namespace, ca_cert: Any, ca_key: pki.PrivateKey,
                  tmp: Path) -> list[tuple[str, str]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.sessions
    sessions = min(wanted, soft - FD_MARGIN)
    limit_note = ""
    if sessions < wanted:
        limit_note = (f"only {sessions} of {wanted}: the farm process holds one descriptor per "
                      f"session and RLIMIT_NOFILE's hard limit is {hard} (ulimit -Hn); raise it "
                      "as root (ulimit -Hn, /etc/security/limits.conf) to open more")
    half = sessions // 2
    cert_ids = [f"{PRODUCT}_c{i:05d}" for i in range(half)]
    secret_ids = [f"{PRODUCT}_s{i:05d}" for i in range(sessions - half)]
    devices = ([cert_device(d.split("_", 1)[1]) for d in cert_ids]
               + [secret_device(d.split("_", 1)[1], secure=args.secret_tls)
                  for d in secret_ids])
    pool: list[tuple[str, str | None]] = [(d, None) for d in cert_ids] + [
        (d, SECRET) for d in secret_ids]
    # Interleaved, so that every client process has both kinds.
    pool = [x for pair in zip(pool[:half], pool[half:half * 2], strict=True) for x in pair] + \
        pool[half * 2:]
    n = args.processes
    shares = [pool[i::n] for i in range(n)]
    secret_way = ("secure_access, MQTT over TLS" if args.secret_tls
                  else "secure_access: false, MQTT over plain TCP")
    farm_tmp = tmp / "sessions"
    farm_tmp.mkdir()
    with farm(scenario(devices), farm_tmp) as (proc, ready, start_s, log):
        member = member_of(ready)
        rss_start = settled_rss(proc.pid)
        t0 = time.perf_counter()
        upload_verified_ca(member["urls"]["http"], ca_cert, ca_key)
        ca_s = time.perf_counter() - t0
        rss_idle = settled_rss(proc.pid)
        server_ca = Path(ready["ca"]["file"]).read_text()
        jobs = [{"kind": "sessions", "host": member["host"],
                 "port": port_of(member["urls"]["mqtts"]), "local": f"127.0.0.{10 + i}",
                 "plain_port": port_of(member["urls"]["mqtt"]), "secret_tls": args.secret_tls,
                 "server_ca": server_ca, "device_ca_cert": pki.cert_pem(ca_cert),
                 "device_ca_key": pki.key_pem(ca_key), "devices": share,
                 "concurrency": max(1, 96 // n)} for i, share in enumerate(shares)]
        with workers(jobs) as ws:
            t0 = time.perf_counter()
            prepared = all_read(ws)
            prep_s = time.perf_counter() - t0
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            for w in ws:
                w.send({"cmd": "go"})
            connected = all_read(ws)
            connect_s = time.perf_counter() - t0
            connect_cpu = cpu_seconds(proc.pid) - cpu0
            rss_all = settled_rss(proc.pid, 3)
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            for w in ws:
                w.send({"cmd": "ping"})
            pinged = all_read(ws)
            rss_pinged = settled_rss(proc.pid)
            listed = rest("GET", f"{ready['control']['api']}/emulators/iotda/iotda/sessions")
            farm_count = len(listed["sessions"])
            tls_count = sum(1 for s in listed["sessions"] if s["tls"])
            cert_count = sum(1 for s in listed["sessions"] if s["client_certificate"])
            for w in ws:
                w.send({"cmd": "stop"})
            all_read(ws)
        rss_closed = settled_rss(proc.pid, 3)
        problems = log_problems(log)
    ok = sum(c["ok"] for c in connected)
    refused: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for c in connected:
        refused.update({str(k): v for k, v in c["refused"].items()})
        errors.update(c["errors"])
    answered = sum(p["ok"] for p in pinged)
    per_session_kb = (rss_all - rss_idle) * 1024 / max(ok, 1)
    met = "met" if rss_all < TARGET_RSS_MB and ok >= wanted else "MISSED"
    rows = [
        ("sessions asked / fitting", f"{wanted} / {sessions}" + (f"  ({limit_note})"
                                                                if limit_note else "")),
        ("mix", f"{half} CERTIFICATES (mTLS, device CA verified over REST) + "
                f"{sessions - half} SECRET ({secret_way}); {n} client processes"
                f", {max(1, 96 // n)} handshakes in flight each, one 127.0.0.x source each"),
        (f"farm start ({sessions}-device scenario)", f"{start_s:.2f} s to the ready file; RSS "
                                             f"{rss_start:.0f} MB"),
        ("device CA add + verify (REST)", f"{ca_s * 1000:.0f} ms"),
        ("client certificates made", f"{sum(p['certificates'] for p in prepared)} in "
                                     f"{prep_s:.1f} s (in the client processes)"),
        ("connected (CONNACK 0)", f"{ok} / {sessions} in {connect_s:.1f} s "
                                  f"({ok / connect_s:.0f}/s; farm CPU {connect_cpu:.1f} s, "
                                  f"{connect_cpu / max(ok, 1) * 1000:.2f} ms per session)"),
        ("refused / failed", f"{dict(refused) or 0} / {dict(errors) or 0}"),
        ("farm says", f"{farm_count} sessions ({tls_count} over TLS, {cert_count} with a "
                      f"client certificate); {fds} open descriptors"),
        ("PINGREQ answered", f"{answered} / {ok}"),
        ("farm RSS idle (CA uploaded)", f"{rss_idle:.0f} MB"),
        ("farm RSS, all connected", f"{rss_all:.0f} MB (after the pings {rss_pinged:.0f} MB)"
                                    f"  target < {TARGET_RSS_MB} MB: {met}"),
        ("per session", f"{per_session_kb:.0f} KB"),
        ("farm RSS after all closed", f"{rss_closed:.0f} MB"),
        ("farm log", f"{len(problems)} ERROR lines" + (f": {problems[:3]}" if problems else "")),
    ]
    show(f"1. concurrent IoTDA MQTT sessions to one farm process ({env_note()})", rows)
    return [("sessions", f"{ok} open, farm RSS {rss_all:.0f} MB, {per_session_kb:.0f} KB per "
                         f"session (target < {TARGET_RSS_MB} MB: {met})")]


# -- part 2: mTLS connects per second -------------------------------------------------------------

def part_connect(args: argparse.Namespace, ca_cert: Any, ca_key: pki.PrivateKey,
                 tmp: Path) -> list[tuple[str, str]]:
    n = args.processes
    per = CONNECT_DEVICES_PER_PROCESS
    ids = [f"{PRODUCT}_r{i:04d}" for i in range(n * per)]
    chains = {d: cert_chain_pem(pki.ec_key(), d, ca_cert, ca_key) for d in ids}
    # Mosquitto's server identity: EC P-256 from a CA of its own, chained as the farm's is.
    mosq_ca_key = pki.ec_key()
    mosq_ca = pki.make_ca(pki.name(CN="Bench Mosquitto CA"), mosq_ca_key)
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN="127.0.0.1"), mosq_ca, mosq_ca_key,
                     ip_addresses=("127.0.0.1",), dns_names=("localhost",), server=True)
    farm_tmp = tmp / "connect"
    farm_tmp.mkdir()
    server_cores, _ = server_and_load_cores()
    load_cores = set(os.sched_getaffinity(0)) - server_cores or server_cores
    with farm(scenario([cert_device(d.split("_", 1)[1]) for d in ids]), farm_tmp) as (
            fproc, ready, _, log), mosquitto(farm_tmp / "mosquitto", (
                pki.cert_pem(ca_cert), pki.cert_pem(cert) + pki.cert_pem(mosq_ca),
                pki.key_pem(key))) as (mproc, _, mtls_port):
        assert mtls_port is not None
        member = member_of(ready)
        upload_verified_ca(member["urls"]["http"], ca_cert, ca_key)
        trust = Path(ready["ca"]["file"]).read_text() + pki.cert_pem(mosq_ca)
        targets = {"farm": {"host": member["host"], "port": port_of(member["urls"]["mqtts"])},
                   "mosquitto": {"host": "127.0.0.1", "port": mtls_port}}
        pin(fproc.pid, server_cores)
        pin(mproc.pid, server_cores)
        jobs = [{"kind": "connect", "server_ca": trust, "targets": targets,
                 "devices": [(d, chains[d]) for d in ids[i * per:(i + 1) * per]],
                 "locals": [f"127.0.{20 + i}.{j + 1}" for j in range(16)]} for i in range(n)]
        pids = {"farm": fproc.pid, "mosquitto": mproc.pid}
        results: dict[str, list[dict[str, float]]] = {"farm": [], "mosquitto": []}
        with workers(jobs) as ws:
            all_read(ws)
            for w in ws:
                pin(w.pid, load_cores)

            def run(target: str, seconds: float) -> dict[str, float]:
                cpu0 = cpu_seconds(pids[target])
                load0 = sum(cpu_seconds(w.pid) for w in ws)
                t0 = time.perf_counter()
                for w in ws:
                    w.send({"cmd": "run", "target": target, "seconds": seconds})
                got = all_read(ws)
                wall = time.perf_counter() - t0
                ok = sum(g["ok"] for g in got)
                fails: collections.Counter[str] = collections.Counter()
                for g in got:
                    fails.update(g["failures"])
                if fails:
                    print(f"  ({target}: failures {dict(fails)})")
                return {"rate": ok / seconds, "ok": ok,
                        "failures": sum(fails.values()),
                        "cpu_ms": (cpu_seconds(pids[target]) - cpu0) / max(ok, 1) * 1000,
                        "server_share": (cpu_seconds(pids[target]) - cpu0) / wall,
                        "load_share": (sum(cpu_seconds(w.pid) for w in ws) - load0) / wall,
                        "p50_ms": statistics.median(g["p50_ms"] for g in got),
                        "p99_ms": max(g["p99_ms"] for g in got)}

            run("farm", 1)  # warm up both (and record every device's fingerprint)
            run("mosquitto", 1)
            for i in range(args.runs):
                order = ("farm", "mosquitto") if i % 2 == 0 else ("mosquitto", "farm")
                for target in order:
                    results[target].append(run(target, args.seconds))
        problems = log_problems(log)
    med = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for t, rs in results.items()}

    def runs_of(target: str, fmt: str) -> str:
        return ", ".join(format(r["rate"], fmt) for r in results[target])

    ratios = [f / m for f, m in zip((r["rate"] for r in results["farm"]),
                                    (r["rate"] for r in results["mosquitto"]), strict=True)]
    ratio = statistics.median(ratios)
    cpu_ratio = med["mosquitto"]["cpu_ms"] / med["farm"]["cpu_ms"]
    f, m = med["farm"], med["mosquitto"]
    met = "met" if f["rate"] >= TARGET_CONNECTS else "MISSED"
    show(f"2. new mTLS connections per second: TLS 1.2 handshake with a client certificate + "
         f"CONNECT + CONNACK 0 + DISCONNECT + close ({env_note()}; {n} client processes x "
         f"{per} devices; broker pinned to core(s) {sorted(server_cores)}, clients to "
         f"{sorted(load_cores)}; median of {args.runs} x {args.seconds:g} s)", [
        ("farm", f"{f['rate']:.0f} conn/s (runs {runs_of('farm', '.0f')}); "
                 f"p50 / p99 {f['p50_ms']:.1f} / {f['p99_ms']:.1f} ms  target >= "
                 f"{TARGET_CONNECTS:.0f}/s: {met}"),
        ("mosquitto (require_certificate)", f"{m['rate']:.0f} conn/s (runs "
                                            f"{runs_of('mosquitto', '.0f')}); p50 / p99 "
                                            f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} ms"),
        ("ratio farm / mosquitto", f"{ratio:.2f}x (runs {', '.join(f'{r:.2f}' for r in ratios)})"),
        ("broker CPU per connection", f"farm {f['cpu_ms']:.2f} ms, mosquitto {m['cpu_ms']:.2f}"
                                      f" ms: {cpu_ratio:.2f}x"),
        ("CPU share (broker / clients)", f"farm run {f['server_share'] * 100:.0f} % / "
                                         f"{f['load_share'] * 100:.0f} %; mosquitto run "
                                         f"{m['server_share'] * 100:.0f} % / "
                                         f"{m['load_share'] * 100:.0f} % (of one core each)"),
        ("failures", f"farm {sum(r['failures'] for r in results['farm']):.0f}, mosquitto "
                     f"{sum(r['failures'] for r in results['mosquitto']):.0f}"),
        ("farm log", f"{len(problems)} ERROR lines" + (f": {problems[:3]}" if problems else "")),
    ])
    return [("mTLS connects", f"farm {f['rate']:.0f}/s, mosquitto {m['rate']:.0f}/s, "
                              f"{ratio:.2f}x (target >= {TARGET_CONNECTS:.0f}/s: {met}); CPU per "
                              f"connection {f['cpu_ms']:.2f} / {m['cpu_ms']:.2f} ms")]


# -- part 3: QoS 1 publish throughput -------------------------------------------------------------

PUBLISH_COMBOS = (("asyncio", "farm"), ("asyncio", "mosquitto"), ("asyncio", "farm-memory"),
                  ("paho", "farm"), ("paho", "mosquitto"), ("paho", "farm-memory"))
BROKER_LABEL = {"farm": "farm (state dir)", "farm-memory": "farm (no state dir)",
                "mosquitto": "mosquitto"}


def part_publish(args: argparse.Namespace, tmp: Path) -> list[tuple[str, str]]:
    device = f"{PRODUCT}_plain"
    payload = json.dumps(REPORT, separators=(",", ":")).encode()
    topic = f"$oc/devices/{device}/sys/properties/report"
    server_cores, _ = server_and_load_cores()
    load_cores = set(os.sched_getaffinity(0)) - server_cores or server_cores
    plain_scenario = scenario([secret_device("plain", secure=False)])
    with farm(plain_scenario, tmp / "publish") as (fproc, ready, _, log), \
            farm(plain_scenario, tmp / "publish-memory", state=False) as (
                mem_proc, mem_ready, _, mem_log), \
            mosquitto(tmp / "publish" / "mosquitto") as (mproc, plain, _):
        client_id, username, password = sdk_identity(device, SECRET)
        identity = {"client_id": client_id, "username": username, "password": password,
                    "topic": topic}
        targets = {
            "farm": {"host": member_of(ready)["host"], **identity,
                     "port": port_of(member_of(ready)["urls"]["mqtt"])},
            "farm-memory": {"host": member_of(mem_ready)["host"], **identity,
                            "port": port_of(member_of(mem_ready)["urls"]["mqtt"])},
            "mosquitto": {"host": "127.0.0.1", "port": plain, **identity}}
        pids = {"farm": fproc.pid, "farm-memory": mem_proc.pid, "mosquitto": mproc.pid}
        for pid in pids.values():
            pin(pid, server_cores)
        results: dict[tuple[str, str], list[dict[str, float]]] = {c: [] for c in PUBLISH_COMBOS}
        with workers([{"kind": "publish", "payload": payload.hex(), "window": WINDOW,
                       "targets": targets}]) as ws:
            (w,) = ws
            w.read()
            pin(w.pid, load_cores)

            def run(client: str, target: str, seconds: float) -> dict[str, float]:
                pid = pids[target]
                cpu0, load0, t0 = cpu_seconds(pid), cpu_seconds(w.pid), time.perf_counter()
                w.send({"cmd": "run", "client": client, "target": target, "seconds": seconds})
                got = w.read()
                wall = time.perf_counter() - t0
                if got["unacked"] or got["unexpected"]:
                    print(f"  ({client} -> {target}: {got['unacked']} unacknowledged, "
                          f"unexpected packets {got['unexpected']})")
                return {"rate": got["acks"] / got["seconds"],
                        "cpu_us": (cpu_seconds(pid) - cpu0) / max(got["acks"], 1) * 1e6,
                        "server_share": (cpu_seconds(pid) - cpu0) / wall,
                        "load_share": (cpu_seconds(w.pid) - load0) / wall}

            for combo in PUBLISH_COMBOS:  # warm up every pair
                run(*combo, 1)
            for i in range(args.runs):
                for combo in (PUBLISH_COMBOS if i % 2 == 0 else PUBLISH_COMBOS[::-1]):
                    results[combo].append(run(*combo, args.seconds))
        base = member_of(ready)["urls"]["http"]
        shadow = rest("GET", f"{base}/v5/iot/{PROJECT}/devices/{device}/shadow")
        problems = log_problems(log) + log_problems(mem_log)
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for c, rs in results.items()}

    def ratio(client: str, target: str) -> tuple[float, str]:
        pairs = [f["rate"] / m["rate"] for f, m in zip(
            results[(client, target)], results[(client, "mosquitto")], strict=True)]
        return statistics.median(pairs), ", ".join(f"{r:.3f}" for r in pairs)

    rows = []
    for client, target in PUBLISH_COMBOS:
        r = med[(client, target)]
        runs = ", ".join(f"{x['rate']:,.0f}" for x in results[(client, target)])
        rows.append((f"{client} client -> {BROKER_LABEL[target]}",
                     f"{r['rate']:,.0f} msg/s (runs {runs}); broker CPU {r['cpu_us']:.1f} us "
                     f"per message, {r['server_share'] * 100:.0f} % of a core; client "
                     f"{r['load_share'] * 100:.0f} %"))
    main_ratio, main_runs = ratio("asyncio", "farm")
    met = "met" if main_ratio >= TARGET_PUBLISH_RATIO else "MISSED"
    mem_ratio, mem_runs = ratio("asyncio", "farm-memory")
    paho_ratio, paho_runs = ratio("paho", "farm")
    paho_mem_ratio, paho_mem_runs = ratio("paho", "farm-memory")
    f, m = med[("asyncio", "farm")], med[("asyncio", "mosquitto")]
    fm = med[("asyncio", "farm-memory")]
    reported = shadow["shadow"][0]["reported"]["properties"] if shadow.get("shadow") else None
    rows += [
        ("ratio farm / mosquitto (asyncio)", f"{main_ratio:.3f}x (runs {main_runs})  target >= "
                                             f"{TARGET_PUBLISH_RATIO}x: {met}"),
        ("  the same, farm in memory", f"{mem_ratio:.3f}x (runs {mem_runs})"),
        ("ratio farm / mosquitto (paho)", f"{paho_ratio:.3f}x (runs {paho_runs})"),
        ("  the same, farm in memory", f"{paho_mem_ratio:.3f}x (runs {paho_mem_runs})"),
        ("broker CPU per message", f"farm {f['cpu_us']:.1f} us (in memory {fm['cpu_us']:.1f} "
                                   f"us), mosquitto {m['cpu_us']:.1f} us"),
        ("farm shadow after", f"reported {reported}"),
        ("farm log", f"{len(problems)} ERROR lines" + (f": {problems[:3]}" if problems else "")),
    ]
    show(f"3. QoS 1 publish throughput: {len(payload)}-byte properties report on {topic}, "
         f"{WINDOW} in flight, one client, plain TCP ({env_note()}; broker and client pinned to "
         f"a core each; median of {args.runs} x {args.seconds:g} s)", rows)
    return [("QoS 1 publish", f"farm {f['rate']:,.0f} msg/s, mosquitto {m['rate']:,.0f} msg/s, "
                              f"{main_ratio:.3f}x (target >= {TARGET_PUBLISH_RATIO}x: {met}); "
                              f"farm in memory {fm['rate']:,.0f} msg/s ({mem_ratio:.3f}x); "
                              f"with paho {paho_ratio:.3f}x (in memory {paho_mem_ratio:.3f}x)")]


# -- part 4: half-open MQTTS connections ----------------------------------------------------------

def part_halfopen(args: argparse.Namespace, tmp: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    summary = []
    for label, options in (("default bound", {}),
                           ("every one in flight", {"mqtt_max_handshakes": args.halfopen + 1})):
        doc = scenario([secret_device("d-0")])
        doc["emulators"][0].update(options)
        with farm(doc, tmp / f"halfopen-{len(options)}", state=False) as (proc, ready, _, log):
            port = port_of(member_of(ready)["urls"]["mqtts"])
            baseline = settled_rss(proc.pid, 3)
            rows.append((f"{label}: baseline", f"{baseline:.0f} MB"))
            for wave in range(1, args.waves + 1):
                socks = [socket.create_connection(("127.0.0.1", port))
                         for _ in range(args.halfopen)]
                time.sleep(1)  # every accept and handshake start has run
                held = settled_rss(proc.pid, 3)
                for sock in socks:
                    sock.close()
                time.sleep(3)  # the handshakes fail, then the trim a second later
                after = settled_rss(proc.pid, 3)
                per = (held - baseline) * 1024 / args.halfopen
                rows.append((f"  wave {wave}: {args.halfopen} open",
                             f"{held:.0f} MB ({held / baseline:.2f}x baseline, "
                             f"{per:.0f} KB each)"))
                rows.append((f"  wave {wave}: closed", f"{after:.0f} MB "
                             f"({after / baseline:.2f}x baseline)"))
            problems = log_problems(log)
            rows.append((f"{label}: farm log", f"{len(problems)} ERROR lines"))
            summary.append(f"{label}: {baseline:.0f} -> {held:.0f} open -> {after:.0f} MB "
                           f"closed ({after / baseline:.2f}x)")
    show(f"4. Half-open MQTTS connections: {args.waves} waves of {args.halfopen} that never "
         f"send a ClientHello ({env_note()})", rows)
    return [("half-open MQTTS", "; ".join(summary))]


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4,
                        help="client processes for parts 1 and 2")
    parser.add_argument("--only", default="sessions,connect,publish")
    parser.add_argument("--halfopen", type=int, default=1000,
                        help="part 4: half-open connections per wave")
    parser.add_argument("--waves", type=int, default=3, help="part 4: waves")
    parser.add_argument("--secret-over", choices=("tls", "tcp"), default="tls",
                        help="part 1's SECRET devices: secure_access over TLS (default), or "
                             "secure_access: false over plain TCP")
    args = parser.parse_args()
    args.secret_tls = args.secret_over == "tls"
    parts = set(args.only.split(","))
    if parts & {"connect", "publish"} and not Path(MOSQUITTO).exists() and shutil.which(
            "mosquitto") is None:
        raise SystemExit(f"bench: {MOSQUITTO} is needed (apt-get install mosquitto)")
    raise_nofile()  # the farm, Mosquitto and the clients inherit it
    print(machine_line())
    print(f"started {dt.datetime.now().isoformat(timespec='seconds')}: "
          f"python bench/mqtt.py {' '.join(sys.argv[1:])}")
    ca_key = pki.ec_key()
    ca_cert = pki.make_ca(pki.name(CN="Bench Device CA", O="Emulator Farm", C="CN"), ca_key)
    summary: list[tuple[str, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp_name:
        tmp = Path(tmp_name)
        if "sessions" in parts:
            summary += part_sessions(args, ca_cert, ca_key, tmp)
        if "connect" in parts:
            summary += part_connect(args, ca_cert, ca_key, tmp)
        if "publish" in parts:
            summary += part_publish(args, tmp)
        if "halfopen" in parts:
            summary += part_halfopen(args, tmp)
    summary.append(("whole run", f"{time.perf_counter() - started:.0f} s"))
    show("summary", summary)


if __name__ == "__main__":
    main()
