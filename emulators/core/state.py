"""Crash-safe persistence for farm members: the emulated "flash".

Every write goes to a temporary file in the same directory, is fsynced, and replaces the old
file with ``os.replace``; a farm killed mid-write therefore leaves the old file or the new one,
never a mix. Temporary files a crash left behind are swept when the store opens.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

TMP_MARKER = ".tmp-"


class StateError(Exception):
    """A saved state file exists but cannot be read back."""


# -- names that become paths -----------------------------------------------------------------
# Every identifier a request carries that becomes a file or folder name (a snapshot's name,
# a member's, an upload server user's, a file's path under a user's root) is checked here,
# and only here, before it is joined to a directory. Each rule admits one path component at
# most: no separator, no backslash, no NUL or control character, never "." or "..", ASCII
# only (no lookalikes), bounded.

class UnsafeName(ValueError):
    """A value that was to become part of a path and may not."""


# The one rule for member names (the scenario checks it) and snapshot names.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # matched whole (fullmatch)
NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "member": (NAME_RE,
               "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    "snapshot": (NAME_RE,
                 "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    # The upload servers' rule for user names (servers/common.USER_RE).
    "user": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}"),
             "1-64 letters, digits, '.', '_', '@' or '-', not starting with '.', '@' or '-'"),
}
MAX_RELATIVE_PATH = 1024
MAX_PATH_COMPONENT = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


def checked_name(value: object, kind: str) -> str:
    """``value`` when it is a valid ``kind`` name ("member", "snapshot", "user"), which is
    always exactly one safe path component; else ``UnsafeName``."""
    rule, says = NAME_RULES[kind]
    if not isinstance(value, str) or not rule.fullmatch(value):
        shown = _shown(value) if isinstance(value, str) else type(value).__name__
        raise UnsafeName(f"{shown} is not a {kind} name: {kind} names are {says}")
    return value


def checked_relative_path(value: object, what: str = "path") -> str:
    """``value`` when it is a relative path that stays where it is joined: components
    separated by '/', none empty, "." or "..", no backslash, NUL or control character,
    bounded; else ``UnsafeName``. (Symlinks are the joiner's to resolve and check.)"""
    if not isinstance(value, str) or not value:
        raise UnsafeName(f"{what} is empty")
    shown = _shown(value)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_RELATIVE_PATH:
        raise UnsafeName(f"{what} {shown} is longer than {MAX_RELATIVE_PATH} bytes")
    if _CONTROL.search(value) or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise UnsafeName(f"{what} {shown} holds a control character, a backslash or "
                         "undecodable bytes")
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeName(f"{what} {shown} is not a relative path without '.' or '..' "
                             "components (nor an absolute one)")
        if len(part.encode()) > MAX_PATH_COMPONENT:
            raise UnsafeName(f"{what} {shown} has a component over {MAX_PATH_COMPONENT} bytes")
    return value


def _component(name: str) -> str:
    # The store's own guard: whatever reaches it is one component (internal names such as
    # "_farm-ca" included); request values are checked by checked_name before they get here.
    if not name or name in (".", "..") or "/" in name or _CONTROL.search(name):
        raise UnsafeName(f"{_shown(name)} is not a file name")
    return name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep_temp_files(root: Path) -> list[Path]:
    """Remove temporary files an interrupted write left under ``root``; return what was removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in root.rglob(f"*{TMP_MARKER}*"):
        if path.is_file() and path.name.startswith("."):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def encode_state(data: Any) -> bytes:
    # Compact on purpose: ``indent`` would force json's pure-Python encoder, and every save
    # encodes the member's whole document (`python -m json.tool` pretty-prints a state file).
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def encode_document(parts: Mapping[str, Sequence[bytes | bytearray]]) -> bytes:
    """``encode_state`` of an object whose values are already encoded, each given as pieces
    to join (``[encode_state(value)]``, or ``EncodedRecords.parts()``): one join, nothing
    encoded again but the keys."""
    pieces: list[bytes | bytearray] = [b"{"]
    for key in sorted(parts):
        if len(pieces) > 1:
            pieces.append(b",")
        pieces += [encode_state(key), b":", *parts[key]]
    pieces.append(b"}")
    return b"".join(pieces)


class Record(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class EncodedRecords:
    """A list of records as a state file holds it (``encode_state`` of their ``to_dict()``s,
    in key order), kept encoded between saves: a member whose every save writes a long list
    that mostly did not change copies it rather than encoding each record again
    (bench/README.md: about 0.1 ms per MB copied, where encoding 1,000 EnOS certificates cost
    each apply 1.4 ms).

    Each record is encoded once, and again after it is ``put`` anew (a record changed in place
    must be). The list is kept joined: a record put with a key above every other is appended;
    any other change rebuilds the join at the next ``parts()``.
    """

    def __init__(self) -> None:
        self._records: dict[int, Record | dict[str, Any]] = {}
        self._encoded: dict[int, bytes] = {}  # key -> the record encoded
        self._joined = bytearray()  # the encoded records, comma-separated, in key order
        self._last: int | None = None  # the key of the last record in _joined
        self._stale = False  # _joined must be rebuilt

    def put(self, key: int, record: Record | dict[str, Any]) -> None:
        """``record`` (an object with ``to_dict()``, or a JSON-able dict never changed in
        place) is (now) the one under ``key``."""
        if key in self._records:
            self._encoded.pop(key, None)
            self._stale = True
        self._records[key] = record
        if self._stale or (self._last is not None and key <= self._last):
            self._stale = True
        else:
            if self._joined:
                self._joined += b","
            self._joined += self._encoding(key)
            self._last = key

    def drop(self, key: int) -> None:
        """No record under ``key`` any more."""
        if self._records.pop(key, None) is not None:
            self._encoded.pop(key, None)
            self._stale = True

    def clear(self) -> None:
        self._records.clear()
        self._encoded.clear()
        self._joined = bytearray()
        self._last, self._stale = None, False

    def _encoding(self, key: int) -> bytes:
        raw = self._encoded.get(key)
        if raw is None:
            record = self._records[key]
            raw = self._encoded[key] = encode_state(
                record if isinstance(record, dict) else record.to_dict())
        return raw

    def parts(self) -> list[bytes | bytearray]:
        """The list's encoding in pieces to join (for ``encode_document``); the middle one
        changes with the records, so join them before the next change."""
        if self._stale:
            self._joined = bytearray(b",".join(map(self._encoding, sorted(self._records))))
            self._last = max(self._records, default=None)
            self._stale = False
        return [b"[", self._joined, b"]"]


class StateStore:
    """Where members keep their saved state: a directory, or memory when there is none.

    Each member has one JSON document (``<dir>/<member>.json``) and may keep files in its own
    folder (``<dir>/<member>/``: FTP homes, received uploads). Without a directory the JSON
    documents live in memory and the folders in a temporary directory removed at close.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory).resolve() if directory is not None else None
        self._memory: dict[str, bytes] = {}
        self._scratch: Path | None = None
        self._pending: dict[str, tuple[int, bytes]] = {}
        self._written: dict[str, int] = {}
        # Members with a document on disk: listed on the first ``has``, kept by the writes
        # (a stat a member made a farm reset of 800 cameras 7 ms slower; the store owns its
        # directory while it is open).
        self._saved: set[str] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._version = 0
        self.swept: list[Path] = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.swept = sweep_temp_files(self.directory)

    @property
    def persistent(self) -> bool:
        return self.directory is not None

    def _path(self, name: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{_component(name)}.json"

    def has(self, name: str) -> bool:
        """Whether the member has saved (or is saving) a document."""
        if self.directory is None:
            return name in self._memory
        if self._saved is None:
            with os.scandir(self.directory) as entries:
                self._saved = {e.name[:-5] for e in entries
                               if e.name.endswith(".json") and e.is_file()}
        return name in self._pending or name in self._saved

    def _on_disk(self, name: str, present: bool = True) -> None:
        if self._saved is not None:
            if present:
                self._saved.add(name)
            else:
                self._saved.discard(name)

    def load(self, name: str) -> dict[str, Any] | None:
        """The member's saved document, or None when it has never saved."""
        if self.directory is None:
            raw = self._memory.get(name)
        else:
            try:
                raw = self._path(name).read_bytes()
            except FileNotFoundError:
                return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"saved state of {name!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StateError(f"saved state of {name!r} is not a JSON object")
        return data

    def save_now(self, name: str, data: dict[str, Any]) -> None:
        """Write synchronously (start-up and shutdown paths, and threads off the loop)."""
        raw = encode_state(data)
        if self.directory is None:
            self._memory[name] = raw
        else:
            atomic_write_bytes(self._path(name), raw)
            self._on_disk(name)

    async def save(self, name: str, data: dict[str, Any]) -> None:
        """Persist ``data``; returns once a write containing it is on disk.

        The fsync runs in a thread so the event loop never waits on the disk. Saves of one
        member are written in order and coalesced: a save that finds a newer document already
        written returns at once.
        """
        await self.save_encoded(name, encode_state(data))

    async def save_encoded(self, name: str, raw: bytes) -> None:
        """``save`` of a document already encoded as ``encode_state`` encodes it (for a member
        that keeps the encoding of the parts of its state that did not change)."""
        if self.directory is None:
            self._memory[name] = raw
            return
        self._version += 1
        version = self._version
        self._pending[name] = (version, raw)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if self._written.get(name, 0) >= version:
                return
            newest, newest_raw = self._pending.pop(name)
            await asyncio.to_thread(atomic_write_bytes, self._path(name), newest_raw)
            self._written[name] = newest
            self._on_disk(name)

    async def flush(self, name: str | None = None) -> None:
        """Wait for every write under way, or for those of member ``name``. (A member that
        stops waits for its own: each of 12,500 cameras waiting for all 12,500 made a shard's
        stop quadratic, minutes long; bench/README.md, "Shards".)"""
        locks = list(self._locks.values()) if name is None else [
            lock for lock in (self._locks.get(name),) if lock is not None]
        for lock in locks:
            async with lock:
                pass

    def delete(self, name: str) -> None:
        if self.directory is None:
            self._memory.pop(name, None)
        else:
            self._path(name).unlink(missing_ok=True)
            self._on_disk(name, present=False)

    def files_dir(self, name: str) -> Path:
        """A folder of the member's own for files (created on demand)."""
        if self.directory is not None:
            root = self.directory
        else:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="emulators-"))
            root = self._scratch
        path = root / _component(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
