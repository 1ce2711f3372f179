"""ACTi firmware platforms and what a firmware version can do.

The seed's applicability table decides which versions know ``HTTPS_CER``; every other
platform difference is a named field here, never an ``if firmware == ...`` in a handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ACTi firmware strings: A1D-<platform code>-V<major>.<minor>[.<build>...][-<suffix>],
# e.g. A1D-310-V4.10 or A1D-310-V4.12.09-AC.
FIRMWARE_RE = re.compile(
    r"^A1D-(?P<code>\d{3})-V(?P<version>\d+(?:\.\d+)*)(?P<suffix>-[A-Za-z0-9._-]+)?$")


@dataclass(frozen=True)
class Platform:
    """One ACTi hardware platform, as the seed's applicability table lists it."""

    name: str
    code: str  # the middle field of the firmware string (A1D-310-...)
    devices: tuple[str, ...]
    # First firmware with HTTPS_CER / HTTPS_CSR_CREATE; earlier ones answer "not found".
    https_since: tuple[int, ...]
    # Key lengths HTTPS_CSR_CREATE accepts (the spec lists none; see README).
    csr_key_lengths: tuple[int, ...] = (1024, 2048, 4096)
    # The FIRMWARE upload form carries URL_FIRMWARE_MD5 on PlatformA only (spec). Recorded
    # for the profile's description; the FIRMWARE command itself is not emulated.
    firmware_md5_field: bool = False

    @property
    def first_https_firmware(self) -> str:
        return f"A1D-{self.code}-V" + ".".join(
            f"{part:02d}" if i else str(part) for i, part in enumerate(self.https_since))


PLATFORM_A = Platform("PlatformA", "220", ("Camera", "Video server"), (3, 14),
                      firmware_md5_field=True)
PLATFORM_T = Platform("PlatformT", "310", ("Camera", "Video server"), (4, 10))
PLATFORM_K = Platform("PlatformK", "311", ("Camera",), (5, 2))

PLATFORMS: dict[str, Platform] = {p.code: p for p in (PLATFORM_A, PLATFORM_T, PLATFORM_K)}

DEFAULT_FIRMWARE = "A1D-310-V4.10"


def version_tuple(text: str) -> tuple[int, ...]:
    """``"4.10"`` -> ``(4, 10)``: numeric, so V4.9 < V4.10 and V5.02 == V5.2."""
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Firmware:
    text: str
    platform: Platform
    version: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Firmware:
        match = FIRMWARE_RE.match(text)
        if match is None:
            raise ValueError(
                f"firmware {text!r} is not an ACTi version string such as {DEFAULT_FIRMWARE!r}")
        platform = PLATFORMS.get(match["code"])
        if platform is None:
            known = ", ".join(f"A1D-{code} ({p.name})" for code, p in PLATFORMS.items())
            raise ValueError(f"firmware {text!r}: unknown platform code; known: {known}")
        return cls(text, platform, version_tuple(match["version"]))

    @property
    def https(self) -> bool:
        """Whether this firmware knows HTTPS_CER (seed 000, "Applicability")."""
        return _padded(self.version) >= _padded(self.platform.https_since)

    def describe(self) -> dict[str, object]:
        return {"version": self.text, "platform": self.platform.name,
                "devices": list(self.platform.devices), "https": self.https,
                "https_since": self.platform.first_https_firmware}


def _padded(version: tuple[int, ...]) -> tuple[int, ...]:
    # V5.2 and V5.2.0 are the same release: compare with trailing zeros filled in.
    return version + (0,) * (6 - len(version))
