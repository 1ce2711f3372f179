"""Planned snapshots: the schedule (``*snapschedftpattr``), the deprecated interval-snapshot
names (``*snaptimerftpattr``), when the schedule fires next, and what files are called."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any

from ..profiles import Profile
from . import values

LAST_SECOND = 86340  # 23:59:00, the seed's upper bound: the schedule has minute resolution
ALL_DAYS = 127
_TIME = re.compile(r"([0-9]{1,5})-([0-9]{1,3})")


def parse_times(raw: str, profile: Profile) -> tuple[tuple[int, int], ...]:
    """``36000-1,43200-127``: seconds of the day (whole minutes) and a Mon=1..Sun=64 mask."""
    entries = raw.split(",")
    if len(entries) > profile.max_schedule_times:
        raise values.InvalidValue(f"times: more than {profile.max_schedule_times} entries")
    out = []
    for entry in entries:
        match = _TIME.fullmatch(entry)
        if not match:
            raise values.InvalidValue(f"times: {entry!r} is not <seconds>-<weekdays>")
        seconds, mask = int(match[1]), int(match[2])
        if seconds > LAST_SECOND or seconds % 60:
            raise values.InvalidValue(f"times: {seconds} is not a minute between 0 and 86340")
        if not 1 <= mask <= ALL_DAYS:
            raise values.InvalidValue(f"times: weekday mask {mask} is outside 1-127")
        out.append((seconds, mask))
    return tuple(out)


def format_times(times: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{s}-{m}" for s, m in times)


@dataclass(frozen=True)
class FileNaming:
    """``mode`` 1: the fixed ``name``; 0: a timestamp, after ``name`` when ``prefix`` is 1."""

    mode: int = 0
    prefix: int = 0
    name: str = "snapshot"

    def file_name(self, local: dt.datetime, profile: Profile, fallback_prefix: str) -> str:
        if self.mode == 1:
            return f"{self.name}.jpeg"
        stamp = local.strftime(profile.timestamp_format)
        lead = self.name if self.prefix == 1 else fallback_prefix
        return f"{lead}_{stamp}.jpeg"

    def naming_updates(self, params: dict[str, str], profile: Profile) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for key in ("mode", "prefix"):
            if key in params:
                changes[key] = values.switch(key, params[key])
        if "name" in params:
            changes["name"] = values.filename("name", params["name"], profile.max_filename_len)
        return changes


@dataclass(frozen=True)
class SnapSchedule(FileNaming):
    enable: int = 0
    times: tuple[tuple[int, int], ...] = ((0, 1),)

    def get_lines(self) -> list[tuple[str, str]]:
        return [("mode", str(self.mode)), ("prefix", str(self.prefix)), ("name", self.name),
                ("enable", str(self.enable)), ("times", format_times(self.times))]

    def updated(self, params: dict[str, str], profile: Profile) -> SnapSchedule:
        changes = self.naming_updates(params, profile)
        if "enable" in params:
            changes["enable"] = values.switch("enable", params["enable"])
        if "times" in params:
            changes["times"] = parse_times(params["times"], profile)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "prefix": self.prefix, "name": self.name,
                "enable": self.enable, "times": format_times(self.times)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], profile: Profile) -> SnapSchedule:
        return cls(mode=int(data.get("mode", 0)), prefix=int(data.get("prefix", 0)),
                   name=str(data.get("name", "snapshot")), enable=int(data.get("enable", 0)),
                   times=parse_times(str(data.get("times", "0-1")), profile))

    def next_after(self, local: dt.datetime) -> dt.datetime | None:
        """The first scheduled minute strictly after ``local`` (camera time, naive)."""
        if not self.times:
            return None
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        best: dt.datetime | None = None
        for day in range(8):
            date = midnight + dt.timedelta(days=day)
            bit = 1 << date.weekday()  # Monday is 1, Sunday 64, as in the seed
            for seconds, mask in self.times:
                when = date + dt.timedelta(seconds=seconds)
                if mask & bit and when > local and (best is None or when < best):
                    best = when
            if best is not None:
                return best
        return None


@dataclass(frozen=True)
class SnapTimerNaming(FileNaming):
    """The deprecated interval-snapshot names (the seed's example: mode 1, prefix 1, test)."""

    mode: int = 1
    prefix: int = 1
    name: str = "test"

    def get_lines(self) -> list[tuple[str, str]]:
        return [("mode", str(self.mode)), ("prefix", str(self.prefix)), ("name", self.name)]

    def updated(self, params: dict[str, str], profile: Profile) -> SnapTimerNaming:
        return replace(self, **self.naming_updates(params, profile))

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "prefix": self.prefix, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapTimerNaming:
        return cls(mode=int(data.get("mode", 1)), prefix=int(data.get("prefix", 1)),
                   name=str(data.get("name", "test")))


def alarm_file_name(local: dt.datetime, index: int, profile: Profile) -> str:
    return f"A_{local.strftime(profile.timestamp_format)}_{index}.jpeg"


def daily_folder(local: dt.datetime, profile: Profile) -> str:
    return local.strftime(profile.daily_folder_format)
