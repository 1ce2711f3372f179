"""Target 3: a fleet of INSTAR cameras, each on its own loopback address. Start-up time,
resident memory, memory per device, and proof that every camera answers.

    python bench/fleet.py [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from common import env_note, farm_process, rss_mb, show


async def every_camera_answers(members: list[dict]) -> tuple[int, int]:  # type: ignore[type-arg]
    ok = 0
    connector = aiohttp.TCPConnector(limit=200, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(200)

        async def one(member: dict) -> bool:  # type: ignore[type-arg]
            async with sem:
                url = member["urls"]["http"] + "/param.cgi?cmd=getftpattr&user=admin&pwd=instar"
                async with session.get(url) as resp:
                    body = await resp.read()
                    return resp.status == 200 and body.endswith(b'response="200";\r\n')

        results = await asyncio.gather(*(one(m) for m in members))
        ok = sum(results)
    return ok, len(members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    empty = {"name": "empty", "emulators": []}
    with farm_process(empty) as (proc, _ready, elapsed0):
        base_rss = rss_mb(proc.pid)
    for size in (int(s) for s in args.sizes.split(",")):
        scenario = {"name": f"fleet-{size}", "journal": {"capacity": 1000}, "emulators": [
            {"name": "cam", "kind": "instar-camera", "host": "127.1.0.1", "count": size}]}
        with farm_process(scenario, timeout=600) as (proc, ready, elapsed):
            rss = rss_mb(proc.pid)
            ok, total = asyncio.run(every_camera_answers(ready["emulators"]))
            rss_after = rss_mb(proc.pid)
        target = "  (target < 5 s)" if size == 1000 else ""
        mem_target = "  (target < 300 MB)" if size == 1000 else ""
        show(f"fleet of {size} INSTAR cameras, one loopback address each ({env_note()})", [
            ("start to listening", f"{elapsed:.2f} s{target}   (empty farm: {elapsed0:.2f} s)"),
            ("resident memory", f"{rss:.0f} MB after start, {rss_after:.0f} MB after every "
                                f"camera answered{mem_target}"),
            ("empty farm", f"{base_rss:.0f} MB"),
            ("per device", f"{(rss_after - base_rss) * 1024 / size:.0f} KB"),
            ("cameras answering", f"{ok} / {total}"),
        ])


if __name__ == "__main__":
    main()
