"""RTSP streaming at fleet scale: many concurrent readers of the cameras' H.264 streams, in one
farm process pinned to one core.

    python bench/rtsp.py [--cameras 100] [--readers 100] [--seconds 20]

One farm (``emulators run``) with a fleet of --cameras ACTi cameras (one port each); the
readers are raw asyncio RTSP clients in this process (on the other cores): DESCRIBE, SETUP
over TCP-interleaved channels, PLAY of /stream1 (1920x1080, 15 fps), then reading every RTP
packet. Three phases, back to back in the same farm:

1. one reader on one camera (the cost of a single reader);
2. the baseline: --readers readers on one camera;
3. --readers readers spread over the --cameras cameras (one each).

Printed per phase: bytes/s delivered, the farm's CPU seconds per reader per second (user +
system over the phase), its RSS, and the drift of every reader: the wall time since its first
RTP packet less the RTP time (90 kHz) its latest frame covers, max and p99 (a reader falling
behind shows a growing drift). The ratio of phase 3 to phase 2 is what spreading readers
over cameras costs; all cameras share one packetized stream per resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common import cpu_seconds, env_note, farm_process, pin, raise_nofile, rss_mb, show
from common import server_and_load_cores as cores_for

USER, PASSWORD = "admin", "123456"  # the ACTi kind's default account


@dataclass
class Reader:
    url: str
    bytes: int = 0
    packets: int = 0
    first_ts: int | None = None
    first_at: float = 0.0
    last_ts: int = 0
    errors: list[str] = field(default_factory=list)

    def drift(self, now: float) -> float:
        """Seconds of wall time since the first packet not covered by RTP time."""
        if self.first_ts is None:
            return float("inf")
        rtp = ((self.last_ts - self.first_ts) % 2**32) / 90_000
        return (now - self.first_at) - rtp


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                   url: str, cseq: int, extra: str = "") -> tuple[int, dict[str, str]]:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    writer.write(f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\nAuthorization: Basic {auth}\r\n"
                 f"{extra}\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return int(head[0].split(" ")[1]), headers


async def read_stream(state: Reader, stop: asyncio.Event) -> None:
    parts = urlsplit(state.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        status, headers = await _request(reader, writer, "DESCRIBE", state.url, 1,
                                         "Accept: application/sdp\r\n")
        base = headers.get("content-base", state.url + "/")
        status, headers = await _request(reader, writer, "SETUP", base + "trackID=1", 2,
                                         "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        if status != 200:
            raise RuntimeError(f"SETUP {status}")
        session = headers["session"].split(";")[0]
        status, _ = await _request(reader, writer, "PLAY", base, 3, f"Session: {session}\r\n")
        if status != 200:
            raise RuntimeError(f"PLAY {status}")
        while not stop.is_set():
            head = await reader.readexactly(4)
            if head[0] != 0x24:
                raise RuntimeError(f"not interleaved: {head!r}")
            length = struct.unpack(">H", head[2:])[0]
            data = await reader.readexactly(length)
            state.bytes += 4 + length
            if head[1] != 0:
                continue  # RTCP
            state.packets += 1
            if data[1] & 0x80:  # the last packet of a frame
                timestamp = struct.unpack(">I", data[4:8])[0]
                if state.first_ts is None:
                    state.first_ts, state.first_at = timestamp, time.monotonic()
                state.last_ts = timestamp
    except Exception as exc:  # noqa: BLE001 - reported, the other readers go on
        state.errors.append(repr(exc))
    finally:
        writer.close()


async def phase(urls: list[str], seconds: float, pid: int) -> dict[str, float]:
    readers = [Reader(url) for url in urls]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(read_stream(r, stop)) for r in readers]
    # Every reader is playing (it has its first frame) before the measurement starts.
    deadline = time.monotonic() + 30
    while any(r.first_ts is None and not r.errors for r in readers):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    bytes0 = sum(r.bytes for r in readers)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    bytes1 = sum(r.bytes for r in readers)
    drifts = sorted(r.drift(t1) for r in readers)
    rss = rss_mb(pid)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = t1 - t0
    errors = [e for r in readers for e in r.errors]
    return {
        "readers": len(readers), "failed": sum(bool(r.errors) for r in readers),
        "bytes_per_s": (bytes1 - bytes0) / elapsed,
        "cpu_per_reader_s": (cpu1 - cpu0) / elapsed / len(readers),
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "rss_mb": rss, "drift_max": drifts[-1],
        "drift_p99": drifts[min(len(drifts) - 1, int(len(drifts) * 0.99))],
        "drift_median": statistics.median(drifts),
        "first_error": errors[0] if errors else "",  # type: ignore[dict-item]
    }


def rows(result: dict[str, float]) -> list[tuple[str, str]]:
    found = [
        ("readers", f"{result['readers']:.0f} ({result['failed']:.0f} failed)"),
        ("delivered", f"{result['bytes_per_s'] / 1e6:.2f} MB/s"),
        ("farm CPU", f"{result['cpu_share'] * 100:.1f} % of a core; "
                     f"{result['cpu_per_reader_s'] * 1e3:.3f} ms per reader per second"),
        ("farm RSS", f"{result['rss_mb']:.0f} MB (target < 500 MB)"),
        ("drift", f"max {result['drift_max'] * 1e3:.0f} ms, p99 "
                  f"{result['drift_p99'] * 1e3:.0f} ms, median "
                  f"{result['drift_median'] * 1e3:.0f} ms"),
    ]
    if result["first_error"]:
        found.append(("first error", str(result["first_error"])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, default=100)
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    raise_nofile()
    farm_cores, _ = cores_for()
    load_cores = set(os.sched_getaffinity(0)) - farm_cores or farm_cores
    scenario = {"version": 1, "name": "rtsp-bench", "journal": {"capacity": 10000},
                "emulators": [{"name": "cam", "kind": "acti-camera", "count": args.cameras,
                               "port": 0, "fleet": "ports"}]}
    with farm_process(scenario, timeout=300) as (proc, ready, elapsed):
        pin(proc.pid, farm_cores)
        os.sched_setaffinity(0, load_cores)
        urls = [m["urls"]["rtsp"] for m in ready["emulators"]]
        idle_rss = rss_mb(proc.pid)
        print(f"{len(urls)} cameras up in {elapsed:.1f} s; farm pinned to core "
              f"{sorted(farm_cores)}, readers on {sorted(load_cores)}; idle RSS "
              f"{idle_rss:.0f} MB", file=sys.stderr)
        one = asyncio.run(phase(urls[:1], min(args.seconds, 10), proc.pid))
        base = asyncio.run(phase(urls[:1] * args.readers, args.seconds, proc.pid))
        spread = asyncio.run(phase([urls[i % len(urls)] for i in range(args.readers)],
                                   args.seconds, proc.pid))
    title = f"RTSP, /stream1 1920x1080 15 fps, TCP-interleaved ({env_note()})"
    show(f"{title}: 1 reader on 1 camera", rows(one))
    show(f"{title}: baseline, {args.readers} readers on 1 camera", rows(base))
    show(f"{title}: {args.readers} readers over {args.cameras} cameras", rows(spread))
    show("ratios", [
        ("CPU per reader, spread / baseline",
         f"{spread['cpu_per_reader_s'] / base['cpu_per_reader_s']:.2f}x"),
        ("CPU per reader, spread / single reader",
         f"{spread['cpu_per_reader_s'] / one['cpu_per_reader_s']:.2f}x"),
        ("bytes/s per reader, spread / single reader",
         f"{spread['bytes_per_s'] / args.readers / one['bytes_per_s']:.2f}x"),
        ("farm RSS idle / with readers", f"{idle_rss:.0f} MB / {spread['rss_mb']:.0f} MB"),
    ])


if __name__ == "__main__":
    main()
