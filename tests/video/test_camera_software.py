"""What camera software does with a camera, end to end, on one process and on shards: find it
with a multicast WS-Discovery Probe, configure it through ONVIF with onvif-zeep-async (Home
Assistant's library), play the stream GetStreamUri gives with ffprobe. A camera on shard 1 is
found, configured and streamed as on one process."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from onvif import ONVIFCamera

from emulators.testing import ShardedFarm
from tests.video.discovery_clients import exchange, probe_bytes
from tests.video.rtsp_clients import jpeg_size

SCENARIO = {
    "name": "camera-software", "control": {"port": 0},
    "emulators": [
        {"name": "instar", "kind": "instar-camera", "host": "127.0.0.31", "port": 0},
        {"name": "acti", "kind": "acti-camera", "host": "127.0.0.32", "port": 0},
    ],
}
CREDENTIALS = {"instar": ("admin", "instar"), "acti": ("admin", "123456")}
IDENTITY = {"instar": ("INSTAR", "IN-9408 2K+"), "acti": ("ACTi", "E32")}
MAIN = {"instar": (2560, 1440), "acti": (1920, 1080)}


@pytest.fixture(scope="module", params=[1, 3], ids=["one-process", "3-shards"])
def farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    running = ShardedFarm.start(SCENARIO, request.param)
    try:
        yield running
    finally:
        assert running.stop() == 0


async def configure(xaddr: str, user: str, password: str) -> dict[str, Any]:
    parts = urlsplit(xaddr)
    camera = ONVIFCamera(parts.hostname, parts.port, user, password)
    try:
        await camera.update_xaddrs()
        device = await camera.create_devicemgmt_service()
        info = await device.GetDeviceInformation()
        media = await camera.create_media_service()
        profiles = await media.GetProfiles()
        main = profiles[0]
        uri = await media.GetStreamUri({
            "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
            "ProfileToken": main.token})
        # Home Assistant's camera snapshot: GetSnapshotUri, then the JPEG with Digest (and
        # with Basic, which it falls back to).
        digest = await camera.get_snapshot(main.token)
        basic = await camera.get_snapshot(main.token, basic_auth=True)
        return {"manufacturer": info.Manufacturer, "model": info.Model,
                "size": (main.VideoEncoderConfiguration.Resolution.Width,
                         main.VideoEncoderConfiguration.Resolution.Height),
                "uri": uri.Uri, "snapshots": (digest, basic)}
    finally:
        await camera.close()


def ffprobe(uri: str, user: str, password: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    with_login = parts._replace(netloc=f"{user}:{password}@{parts.netloc}").geturl()
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height", "-of", "json", with_login],
        capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)["streams"][0]


def test_found_configured_and_streamed(farm: ShardedFarm) -> None:
    answers = exchange(probe_bytes()[1], wait=1.5)
    for name in ("instar", "acti"):
        xaddr = farm[name].urls["onvif"]
        [found] = [a for a in answers if a.xaddrs == xaddr]
        assert found.source[0] == farm[name].host
        user, password = CREDENTIALS[name]
        seen = asyncio.run(configure(xaddr, user, password))
        assert (seen["manufacturer"], seen["model"]) == IDENTITY[name]
        assert seen["size"] == MAIN[name]
        assert seen["uri"] == farm[name].urls["rtsp"]
        for jpeg in seen["snapshots"]:
            assert jpeg is not None and jpeg_size(jpeg) == MAIN[name]
        stream = ffprobe(seen["uri"], user, password)
        assert (stream["codec_name"], stream["width"], stream["height"]) == \
            ("h264", *MAIN[name])
