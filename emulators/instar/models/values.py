"""Parsing one CGI value: each rule raises InvalidValue (202) with what was wrong."""

from __future__ import annotations

import re

from ..exceptions import InvalidValue

_DIGITS = re.compile(r"[0-9]{1,10}")
# Printable ASCII without the double quote that would break the ``key="value";`` reply.
_TEXT = re.compile(r'[\x20-\x21\x23-\x7e]*')
_HOST = re.compile(r"[A-Za-z0-9._:-]*")
_FILENAME = re.compile(r"[A-Za-z0-9._-]+")


def integer(key: str, raw: str, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(raw):
        raise InvalidValue(f"{key}: {raw!r} is not a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidValue(f"{key}: {value} is outside {low}-{high}")
    return value


def switch(key: str, raw: str) -> int:
    if raw not in ("0", "1"):
        raise InvalidValue(f"{key}: {raw!r} is not 0 or 1")
    return int(raw)


def text(key: str, raw: str, max_len: int, *, allow_empty: bool = True) -> str:
    if not _TEXT.fullmatch(raw):
        raise InvalidValue(f"{key}: only printable ASCII without '\"' is accepted")
    if len(raw) > max_len:
        raise InvalidValue(f"{key}: longer than {max_len} characters")
    if not raw and not allow_empty:
        raise InvalidValue(f"{key}: must not be empty")
    return raw


def host(key: str, raw: str, max_len: int) -> str:
    if not _HOST.fullmatch(raw) or len(raw) > max_len:
        raise InvalidValue(f"{key}: {raw!r} is not a host name or address")
    return raw


def filename(key: str, raw: str, max_len: int) -> str:
    """A file name part: letters, digits, ``._-``; no path separators, no leading dot."""
    if not _FILENAME.fullmatch(raw) or raw.startswith(".") or len(raw) > max_len:
        raise InvalidValue(f"{key}: {raw!r} is not a usable file name")
    return raw
