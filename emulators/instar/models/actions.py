"""Which uploads go to the FTP server (``*ftpaction``) and how many alarm snapshots
(``*ftpactionattr``); the cooldown bookkeeping that ``interval`` asks for."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from . import values

TYPES = ("rec", "snap", "timersnap")


@dataclass(frozen=True)
class FtpAction:
    enable: int = 0
    interval: int = 0

    def updated(self, params: dict[str, str]) -> FtpAction:
        changes: dict[str, int] = {}
        if "enable" in params:
            changes["enable"] = values.switch("enable", params["enable"])
        if "interval" in params:
            changes["interval"] = values.integer("interval", params["interval"], 1, 3600)
        return replace(self, **changes)


def default_actions() -> dict[str, FtpAction]:
    # The seed's getftpaction example (rec's interval 0 is outside the settable 1-3600).
    return {"rec": FtpAction(0, 0), "snap": FtpAction(0, 15), "timersnap": FtpAction(0, 820)}


def action_type(raw: str) -> str:
    if raw not in TYPES:
        raise values.InvalidValue(f"type: {raw!r} is not one of {', '.join(TYPES)}")
    return raw


def snapcount(raw: str) -> int:
    return values.integer("snapcount", raw, 1, 10)


@dataclass
class Cooldowns:
    """When each upload type last went out (farm-clock seconds); not saved to flash."""

    last: dict[str, float] = field(default_factory=dict)

    def remaining(self, kind: str, interval: int, now: float) -> float:
        last = self.last.get(kind)
        if last is None:
            return 0.0
        return max(0.0, last + interval - now)

    def mark(self, kind: str, now: float) -> None:
        self.last[kind] = now

    def to_dict(self) -> dict[str, Any]:
        return dict(self.last)
