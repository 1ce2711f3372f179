"""Crash-safe persistence for farm members: the emulated "flash".

Every write goes to a temporary file in the same directory, is fsynced, and replaces the old
file with ``os.replace``; a farm killed mid-write therefore leaves the old file or the new one,
never a mix. Temporary files a crash left behind are swept when the store opens.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

TMP_MARKER = ".tmp-"


class StateError(Exception):
    """A saved state file exists but cannot be read back."""


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
        return self.directory / f"{name}.json"

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

    async def flush(self) -> None:
        """Wait for every write under way."""
        for lock in list(self._locks.values()):
            async with lock:
                pass

    def delete(self, name: str) -> None:
        if self.directory is None:
            self._memory.pop(name, None)
        else:
            self._path(name).unlink(missing_ok=True)

    def files_dir(self, name: str) -> Path:
        """A folder of the member's own for files (created on demand)."""
        if self.directory is not None:
            root = self.directory
        else:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="emulators-"))
            root = self._scratch
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
