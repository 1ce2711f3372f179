"""The camera's pictures and video: H.264 loops and JPEG snapshots per resolution.
(Skeleton: filled in by the media assets.)"""

from __future__ import annotations


async def snapshot_jpeg(width: int, height: int) -> bytes:
    raise NotImplementedError
