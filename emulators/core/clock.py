"""The farm's one clock: real by default, and frozen, set or advanced through the control plane.

Everything time-based (certificate validity, verification codes, tokens, cooldowns,
schedules) asks this clock, never ``time.time()``, so that a test can jump to next year.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

# datetime, X.509 validity and everything else that turns the clock into a date need a year
# from 1 to 9999; the farm keeps between the epoch and the end of 9998, so that a member adding
# a year of validity to "now" never leaves that range.
MIN_TIME = 0.0
MAX_TIME = datetime(9998, 12, 31, tzinfo=UTC).timestamp()


class ClockRangeError(ValueError):
    """An instant the farm clock cannot take."""


def _checked(at: float) -> float:
    at = float(at)
    if not MIN_TIME <= at <= MAX_TIME:  # also refuses NaN
        raise ClockRangeError("the farm clock runs from 1970-01-01 to 9998-12-31 (UTC)")
    return at


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._listeners: list[Callable[[], None]] = []
        # time() -> seconds since the epoch, as the farm sees them. While the clock runs real
        # (no freeze, no shift: the usual case) it is time.time itself, one C call for each
        # journal entry; otherwise _farm_time. _changed() keeps it right.
        self.time: Callable[[], float] = time.time

    def _farm_time(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def readings(self) -> tuple[float, ...]:
        """The instants a client's own timestamp may be judged against for freshness: the farm
        clock, and the host's wall clock when the farm clock has been moved off it. A client
        (a vendor SDK) stamps with the host's clock and cannot know a test moved the farm's."""
        farm = self.time()
        if self.time is time.time:
            return (farm,)
        return (farm, time.time())

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def freeze(self, at: float | None = None) -> None:
        self._frozen_at = self.time() if at is None else _checked(at)
        self._changed()

    def unfreeze(self) -> None:
        if self._frozen_at is not None:
            self._offset = self._frozen_at - time.time()
            self._frozen_at = None
            self._changed()

    def set(self, at: float) -> None:
        at = _checked(at)
        if self._frozen_at is not None:
            self._frozen_at = at
        else:
            self._offset = at - time.time()
        self._changed()

    def advance(self, seconds: float) -> None:
        self.set(self.time() + seconds)

    def reset(self) -> None:
        self._offset = 0.0
        self._frozen_at = None
        self._changed()

    def state(self) -> dict[str, float | None]:
        """What makes this clock what it is: a sharded farm gives it to every shard."""
        return {"offset": self._offset, "frozen_at": self._frozen_at}

    def restore(self, state: dict[str, float | None]) -> None:
        """Take another clock's ``state()`` (the coordinator's, in a shard)."""
        frozen = state.get("frozen_at")
        self._offset = float(state.get("offset") or 0.0)
        self._frozen_at = None if frozen is None else _checked(frozen)
        self._changed()

    def describe(self) -> dict[str, object]:
        return {"now": self.now().isoformat(), "time": self.time(), "frozen": self.frozen}

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the clock jumps; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    async def reached(self, target: float) -> bool:
        """Sleep until the clock reaches ``target`` (True), or until it jumps without reaching
        it (False: the caller works out its next time again, e.g. after a jump back)."""
        jumped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_jump() -> None:
            if not jumped.done():
                jumped.set_result(None)

        unsubscribe = self.on_change(on_jump)
        try:
            while True:
                remaining = target - self.time()
                if remaining <= 0:
                    return True
                # A frozen clock only moves when someone moves it: wait for that.
                timeout = None if self.frozen else min(remaining, 3600)
                try:
                    await asyncio.wait_for(asyncio.shield(jumped), timeout)
                except TimeoutError:
                    continue
                return self.time() >= target
        finally:
            unsubscribe()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock, following its jumps (frozen: until moved past)."""
        target = self.time() + seconds
        while not await self.reached(target):
            pass

    def _changed(self) -> None:
        real = self._frozen_at is None and self._offset == 0.0
        self.time = time.time if real else self._farm_time
        for callback in list(self._listeners):
            callback()
