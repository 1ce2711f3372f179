"""The FTP upload target (``getftpattr`` / ``setftpattr``): one frozen record and its rules."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

from ..profiles import Profile
from . import values

# The keys in the order the seed's getftpattr replies list them (ft_password never listed;
# ft_autocreatedir only when the profile says so, right after ft_dirname).
GET_ORDER = ("ft_server", "ft_port", "ft_username", "ft_dirname", "ft_dirmode", "ft_mode",
             "ft_ssl", "ft_insecure")
SET_KEYS = ("ft_server", "ft_port", "ft_username", "ft_password", "ft_mode", "ft_dirname",
            "ft_autocreatedir", "ft_dirmode", "ft_ssl", "ft_insecure")

SSL_NONE, SSL_FTPS, SSL_SFTP = 0, 1, 2
MODE_PORT, MODE_PASV = 0, 1


@dataclass(frozen=True)
class FtpSettings:
    # Defaults: the seed's first getftpattr example; the password and ft_autocreatedir are
    # not in it (README.md: the camera's own admin/instar, and no auto-create).
    ft_server: str = "192.168.2.111"
    ft_port: int = 21
    ft_username: str = "admin"
    ft_password: str = "instar"
    ft_mode: int = MODE_PASV
    ft_dirname: str = "./hello"
    ft_autocreatedir: int = 0
    ft_dirmode: int = 1
    ft_ssl: int = SSL_FTPS
    ft_insecure: int = 1

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (21 us against about 2; every camera's initial
        # state and every save make one: bench/shards.py's start of 100,000 cameras).
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FtpSettings:
        known = {k: data[k] for k in SET_KEYS if k in data}
        return cls(**known)

    def get_lines(self, profile: Profile) -> tuple[tuple[str, str], ...]:
        """getftpattr's lines. The record never changes, so they are worked out once."""
        return self._lines_with_autocreatedir if profile.getftpattr_lists_autocreatedir \
            else self._lines

    @cached_property
    def _lines(self) -> tuple[tuple[str, str], ...]:
        return tuple((key, str(getattr(self, key))) for key in GET_ORDER)

    @cached_property
    def _lines_with_autocreatedir(self) -> tuple[tuple[str, str], ...]:
        at = GET_ORDER.index("ft_dirname") + 1
        return (*self._lines[:at], ("ft_autocreatedir", str(self.ft_autocreatedir)),
                *self._lines[at:])

    def updated(self, params: dict[str, str], profile: Profile) -> FtpSettings:
        """A copy with ``params`` applied; every value checked before anything changes."""
        changes: dict[str, Any] = {}
        for key, raw in params.items():
            if key == "ft_server":
                changes[key] = values.host(key, raw, profile.max_server_len)
            elif key == "ft_port":
                changes[key] = values.integer(key, raw, 1, 65535)
            elif key in ("ft_username", "ft_password"):
                changes[key] = values.text(key, raw, profile.max_credential_len)
            elif key == "ft_dirname":
                changes[key] = values.text(key, raw, profile.max_dirname_len)
            elif key == "ft_ssl":
                changes[key] = values.integer(key, raw, 0, 2)
            elif key in ("ft_mode", "ft_autocreatedir", "ft_dirmode", "ft_insecure"):
                changes[key] = values.switch(key, raw)
        return replace(self, **changes)


FIELDS = tuple(f.name for f in fields(FtpSettings))
