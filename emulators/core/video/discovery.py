"""WS-Discovery 1.0 target service for every camera of the process. (Skeleton.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .wing import VideoWing


class Discovery:
    async def join(self, wing: VideoWing) -> None:
        pass

    async def leave(self, wing: VideoWing) -> None:
        pass


DISCOVERY = Discovery()
