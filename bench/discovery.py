"""Cameras that camera software finds: 1,000 ONVIF cameras in one process, each on its own
loopback address, all found by one multicast WS-Discovery Probe. Start time (process start to
ready file) and RSS against the same 1,000 cameras with ONVIF, discovery and RTSP off,
measured in the same run.

    python bench/discovery.py [--cameras 1000] [--runs 2]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
import uuid
import xml.etree.ElementTree as ET

from common import env_note, farm_process, raise_nofile, rss_mb, show

GROUP, PORT = "239.255.255.250", 3702
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"


def scenario(cameras: int, onvif: bool) -> dict:
    entry: dict = {"name": "cam", "kind": "instar-camera", "count": cameras,
                   "fleet": "addresses", "host": "127.1.0.1", "port": 18081}
    if onvif:
        entry.update(onvif_port=18082, rtsp_port=18554)
    else:
        entry.update(onvif_port=None, rtsp_port=None, video={"onvif": False})
    return {"version": 1, "name": "discovery-bench", "control": {"port": 0},
            "emulators": [entry]}


def probe(wait: float) -> tuple[set[str], float]:
    """One multicast Probe; the device service URLs of every ProbeMatch within ``wait``
    seconds, and when the last one came (seconds after the send)."""
    message = (
        '<?xml version="1.0" encoding="UTF-8"?><s:Envelope '
        'xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        f'xmlns:d="{WSD}" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header>'
        f"<a:Action>{WSD}/Probe</a:Action><a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>"
        "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body>"
        "<d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>").encode()
    found: set[str] = set()
    last = 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.bind(("127.0.0.1", 0))
        sent = time.perf_counter()
        sock.sendto(message, (GROUP, PORT))
        deadline = sent + wait
        while (left := deadline - time.perf_counter()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                break
            xaddrs = ET.fromstring(data).find(f".//{{{WSD}}}XAddrs")
            if xaddrs is not None and xaddrs.text:
                found.add(xaddrs.text)
                last = time.perf_counter() - sent
    return found, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    raise_nofile()
    print(env_note())
    rows = []
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    found_all = []
    for _ in range(args.runs):
        for onvif in (False, True):
            with farm_process(scenario(args.cameras, onvif), timeout=600) as (proc, ready, t):
                time.sleep(1.0)  # the Hellos (random delay up to 0.5 s) are out
                rss = rss_mb(proc.pid)
                figures[onvif].append((t, rss))
                if onvif:
                    expected = {e["urls"]["onvif"] for e in ready["emulators"]}
                    found, last = probe(wait=3.0)
                    found_all.append((len(found & expected), len(expected), last))
    for onvif in (False, True):
        label = "with ONVIF+RTSP+discovery" if onvif else "without (baseline)"
        starts = [t for t, _ in figures[onvif]]
        rsss = [r for _, r in figures[onvif]]
        rows.append((f"{args.cameras} cameras {label}: start",
                     " / ".join(f"{t:.1f} s" for t in starts)))
        rows.append((f"{args.cameras} cameras {label}: RSS",
                     " / ".join(f"{r:.0f} MB" for r in rsss)))
    ratio_t = statistics.median(t for t, _ in figures[True]) / statistics.median(
        t for t, _ in figures[False])
    ratio_r = statistics.median(r for _, r in figures[True]) / statistics.median(
        r for _, r in figures[False])
    rows.append(("ratio with/without: start, RSS", f"{ratio_t:.2f}x, {ratio_r:.2f}x"))
    for got, expected, last in found_all:
        rows.append(("one multicast Probe", f"{got} of {expected} found; last ProbeMatch "
                     f"{last * 1000:.0f} ms after the Probe"))
    show("WS-Discovery fleet", rows)
    if any(got != expected for got, expected, _ in found_all):
        sys.exit("not every camera answered the Probe")


if __name__ == "__main__":
    main()
