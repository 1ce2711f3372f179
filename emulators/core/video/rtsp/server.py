"""The camera's RTSP server. (Skeleton: filled in by the RTSP server.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..wing import VideoWing


class RtspServer:
    def __init__(self, wing: VideoWing) -> None:
        self.wing = wing
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        self.port = port or None

    async def stop(self) -> None:
        pass

    def session_count(self) -> int:
        return 0
