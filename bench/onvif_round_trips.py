"""ONVIF round trips as camera software makes them: onvif-zeep-async against one camera of a
farm in its own process, GetProfiles + GetStreamUri (one media round trip each, signed with a
PasswordDigest UsernameToken), against the same client's GetSystemDateAndTime (pre-auth, the
smallest reply) and a plain aiohttp GET of the camera's CGI in the same run.

    python bench/onvif_round_trips.py [--kind acti-camera|instar-camera] [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import onvif
from common import env_note, farm_process, show
from onvif import ONVIFCamera

ADMINS = {"acti-camera": ("admin", "123456"), "instar-camera": ("admin", "instar")}
CGI = {"acti-camera": "/cgi-bin/encoder?USER=admin&PWD=123456&VIDEO_RESOLUTION",
       "instar-camera": "/param.cgi?cmd=getftpattr&user=admin&pwd=instar"}


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def timed(rounds: int, step: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(min(20, rounds)):  # warm-up: connections, WSDL-side caches
        await step()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - started)
    return samples


async def measure(ready: dict[str, Any], kind: str, rounds: int) -> dict[str, list[float]]:
    urls = ready["emulators"][0]["urls"]
    device_url = urlparse(urls["onvif"])
    cam = ONVIFCamera(device_url.hostname, device_url.port, *ADMINS[kind],
                      str(Path(onvif.__file__).parent / "wsdl"), no_cache=True)
    try:
        await cam.update_xaddrs()
        device = await cam.create_devicemgmt_service()
        media = await cam.create_media_service()
        setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}

        async def profiles_and_uri() -> None:
            profiles = await media.GetProfiles()
            await media.GetStreamUri({"StreamSetup": setup, "ProfileToken": profiles[0].token})

        results = {"GetProfiles+GetStreamUri": await timed(rounds, profiles_and_uri),
                   "GetSystemDateAndTime": await timed(rounds, device.GetSystemDateAndTime)}
    finally:
        await cam.close()
    async with aiohttp.ClientSession() as session:
        async def cgi() -> None:
            async with session.get(urls["http"] + CGI[kind]) as reply:
                await reply.read()

        results["CGI GET (aiohttp)"] = await timed(rounds, cgi)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=sorted(ADMINS), default="acti-camera")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    scenario = {"version": 1, "name": "bench-onvif", "control": {"port": 0},
                "emulators": [{"name": "cam", "kind": args.kind, "port": 0}]}
    with farm_process(scenario) as (_, ready, _):
        results = asyncio.run(measure(ready, args.kind, args.rounds))
    rows = []
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        rows.append((name, f"p50 {p50:.2f} ms  p99 {p99:.2f} ms"))
    pair = percentiles(results["GetProfiles+GetStreamUri"])[0]
    rows.append(("ratio to GetSystemDateAndTime (p50)",
                 f"{pair / percentiles(results['GetSystemDateAndTime'])[0]:.2f}x"))
    rows.append(("ratio to the CGI GET (p50)",
                 f"{pair / percentiles(results['CGI GET (aiohttp)'])[0]:.2f}x"))
    show(f"ONVIF round trips, {args.kind}, {args.rounds} rounds ({env_note()})", rows)


if __name__ == "__main__":
    main()
