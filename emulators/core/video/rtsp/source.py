"""One shared, paced H.264 stream per asset: the loop packetized once, and one asyncio task
ticking at the frame rate that hands each frame to every session of every camera reading
that asset. A reader costs its sockets and a header rewrite per packet, not an encoding.

Time: frames are paced by the event loop's monotonic clock (wall time), so RTP timestamps
advance with wall time while the loop plays, whatever the farm clock does; the farm clock
(the camera's clock) only gives the NTP time of the RTCP sender reports, beside the RTP
timestamp of the same instant. A tick that comes late keeps its scheduled time (timestamps
stay 1/fps apart); one more than a second late restarts the schedule from now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from typing import Protocol

from ..media import H264Loop, load_loop, nearest
from .rtp import PacketizedFrame, packetize

log = logging.getLogger("emulators.video.rtsp")


class Reader(Protocol):
    def on_frame(self, frame: PacketizedFrame, when: float) -> None:
        """``frame`` is due at ``when`` (the loop's clock); must not block."""


class StreamSource:
    def __init__(self, media: H264Loop, frames: tuple[PacketizedFrame, ...]) -> None:
        self.media = media
        self.frames = frames
        self.readers: set[Reader] = set()
        self.index = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def fps(self) -> int:
        return self.media.fps

    def add(self, reader: Reader) -> None:
        self.readers.add(reader)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._pace(), name=f"rtsp-stream-{self.media.name}")

    def remove(self, reader: Reader) -> None:
        self.readers.discard(reader)
        if not self.readers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        start = loop.time()
        tick = 0
        while self.readers:
            when = start + tick * period
            delay = when - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # the loop was stalled: no burst of stale frames
                start, tick, when = loop.time(), 0, loop.time()
            frame = self.frames[self.index]
            self.index = (self.index + 1) % len(self.frames)
            for reader in list(self.readers):
                try:
                    reader.on_frame(frame, when)
                except Exception:  # one broken reader never stops the others
                    log.exception("rtsp reader failed on a frame")
                    self.readers.discard(reader)
            tick += 1

    async def stop(self) -> None:
        self.readers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


_packetized: dict[tuple[int, int], tuple[H264Loop, tuple[PacketizedFrame, ...]]] = {}
_packetizing = threading.Lock()


def packetized(width: int, height: int) -> tuple[H264Loop, tuple[PacketizedFrame, ...]]:
    """An asset's loop and its frames as RTP packets (blocking: the first call reads the
    file and packetizes it, once for the process however many threads ask at once)."""
    with _packetizing:
        found = _packetized.get((width, height))
        if found is None:
            media = load_loop(width, height)
            found = _packetized[(width, height)] = (
                media, tuple(packetize(u) for u in media.frames))
        return found


class Sources:
    """One event loop's stream sources, one per asset, made on first use (file read and
    packetization in an executor, once per process) and kept while the loop runs."""

    def __init__(self) -> None:
        self._sources: dict[tuple[int, int], StreamSource] = {}

    async def get(self, width: int, height: int) -> StreamSource:
        key = nearest(width, height)
        found = self._sources.get(key)
        if found is None:
            media, frames = await asyncio.get_running_loop().run_in_executor(
                None, packetized, *key)
            found = self._sources.setdefault(key, StreamSource(media, frames))
        return found


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sources] = \
    weakref.WeakKeyDictionary()


def sources() -> Sources:
    """The running loop's sources (a farm's streams pace on the farm's own loop)."""
    loop = asyncio.get_running_loop()
    found = _BY_LOOP.get(loop)
    if found is None:
        found = _BY_LOOP[loop] = Sources()
    return found
