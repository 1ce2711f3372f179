"""The camera's pictures and video: H.264 loops and JPEG snapshots per resolution, from the
committed assets in ``media/`` (made once by scripts/make_video_media.sh).

Each loop is parsed once into access units (frames) with their NAL units; the RTSP server
packetizes those once and shares them (rtsp/source.py). A resolution without an asset gets
the asset nearest to it (smallest difference of width and height, the larger picture on a
tie): the stream then carries that asset's real size, as its SPS says.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

MEDIA = Path(__file__).with_name("media")
# The resolutions the camera kinds use; each has a loop and a JPEG.
ASSETS: tuple[tuple[int, int], ...] = ((2560, 1440), (1920, 1080), (1280, 720), (640, 360))
FPS = 15  # the loops' frame rate (their keyframe interval: 30 frames)

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


@dataclass(frozen=True)
class AccessUnit:
    """One frame: its NAL units (no start codes) and whether it is a keyframe (IDR)."""

    nals: tuple[bytes, ...]
    idr: bool

    @property
    def size(self) -> int:
        return sum(len(n) for n in self.nals)


@dataclass(frozen=True)
class H264Loop:
    width: int
    height: int
    fps: int
    frames: tuple[AccessUnit, ...]
    sps: bytes
    pps: bytes

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def profile_level_id(self) -> str:
        """profile_idc, constraint flags and level_idc: the SPS's three bytes after its
        header, as RFC 6184's ``profile-level-id`` (hex)."""
        return self.sps[1:4].hex().upper()

    @property
    def sprop_parameter_sets(self) -> str:
        return ",".join(base64.b64encode(n).decode("ascii") for n in (self.sps, self.pps))


def nearest(width: int, height: int) -> tuple[int, int]:
    """The asset resolution for a profile's ``width`` x ``height`` (itself when there is one)."""
    return min(ASSETS, key=lambda wh: (abs(wh[0] - width) + abs(wh[1] - height),
                                       -wh[0] * wh[1]))


def split_nals(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (3- and 4-byte start codes; trailing zero
    bytes before a start code belong to no NAL)."""
    nals: list[bytes] = []
    starts: list[int] = []
    pos = stream.find(b"\x00\x00\x01")
    while pos != -1:
        starts.append(pos + 3)
        pos = stream.find(b"\x00\x00\x01", pos + 3)
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(stream)
        nal = stream[start:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def access_units(nals: list[bytes]) -> list[AccessUnit]:
    """Group NAL units into access units (ITU-T H.264 7.4.1.2.3): a new one begins at an
    AUD, SEI, SPS or PPS after a slice, or at a slice whose first_mb_in_slice is 0 (its
    ue(v) starts with a 1 bit)."""
    units: list[AccessUnit] = []
    current: list[bytes] = []
    seen_slice = False

    def close() -> None:
        if current:
            units.append(AccessUnit(tuple(current),
                                    any(n[0] & 0x1F == NAL_IDR for n in current)))

    for nal in nals:
        kind = nal[0] & 0x1F
        is_slice = kind in (NAL_SLICE, NAL_IDR)
        starts = (seen_slice and kind in (NAL_AUD, NAL_SEI, NAL_SPS, NAL_PPS)) or (
            is_slice and seen_slice and len(nal) > 1 and nal[1] & 0x80)
        if starts:
            close()
            current = []
            seen_slice = False
        current.append(nal)
        seen_slice = seen_slice or is_slice
    close()
    return units


def parse_loop(stream: bytes, width: int, height: int, fps: int = FPS) -> H264Loop:
    nals = split_nals(stream)
    sps = next((n for n in nals if n[0] & 0x1F == NAL_SPS), None)
    pps = next((n for n in nals if n[0] & 0x1F == NAL_PPS), None)
    frames = tuple(access_units(nals))
    if sps is None or pps is None or not frames or not frames[0].idr:
        raise ValueError(f"{width}x{height}: not an H.264 loop that starts on a keyframe")
    return H264Loop(width, height, fps, frames, sps, pps)


_lock = threading.Lock()
_cached_jpegs: set[tuple[int, int]] = set()


@functools.cache
def _load_loop(width: int, height: int) -> H264Loop:
    return parse_loop((MEDIA / f"{width}x{height}.h264").read_bytes(), width, height)


@functools.cache
def _load_jpeg(width: int, height: int) -> bytes:
    return (MEDIA / f"{width}x{height}.jpg").read_bytes()


def load_loop(width: int, height: int) -> H264Loop:
    """The loop for a profile's resolution (the nearest asset's); blocking: first use reads
    and parses the file."""
    with _lock:  # two executor threads asking at once: parsed once
        return _load_loop(*nearest(width, height))


async def h264_loop(width: int, height: int) -> H264Loop:
    """``load_loop`` off the event loop (the first call reads the file in an executor)."""
    return await asyncio.get_running_loop().run_in_executor(None, load_loop, width, height)


async def snapshot_jpeg(width: int, height: int) -> bytes:
    """The JPEG at the profile's resolution (the nearest asset's); read once, then cached."""
    size = nearest(width, height)
    if size in _cached_jpegs:
        return _load_jpeg(*size)
    body = await asyncio.get_running_loop().run_in_executor(None, _load_jpeg, *size)
    _cached_jpegs.add(size)
    return body
