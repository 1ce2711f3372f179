"""ONVIF events: pull-point and WS-BaseNotification subscriptions, the camera's motion topics.
(Skeleton: filled in by the events service.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..wing import VideoWing


class EventService:
    def __init__(self, wing: VideoWing) -> None:
        self.wing = wing

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def motion(self, active: bool, correlation: str | None) -> None:
        pass

    def subscription_count(self) -> int:
        return 0
