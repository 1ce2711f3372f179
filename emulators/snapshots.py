"""Named snapshots of the farm's state (LocalStack's habit): save, restore, list, delete.

A snapshot holds every member's saved document and a copy of its files folder. Under a state
directory snapshots live in ``<dir>/_snapshots/`` and survive a restart; without one, in
memory and a temporary folder.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.state import StateError, atomic_write_bytes, checked_name, encode_state

if TYPE_CHECKING:
    from .farm import Farm


class SnapshotError(LookupError):
    pass


class SnapshotDamaged(StateError):
    """A snapshot's document exists but is not one this farm wrote."""


def _well_formed(doc: Any) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("name"), str)
            and isinstance(doc.get("time"), (int, float)) and not isinstance(doc["time"], bool)
            and isinstance(doc.get("members"), dict)
            and all(isinstance(k, str) and isinstance(v, dict)
                    for k, v in doc["members"].items()))


class Snapshots:
    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self._memory: dict[str, dict[str, Any]] = {}

    @property
    def _root(self) -> Path:
        store = self.farm.store
        if store.directory is not None:
            return store.directory / "_snapshots"
        return store.files_dir("_snapshots")

    # Every way in (save, restore, delete) names its snapshot through these two.
    def _doc_path(self, name: str) -> Path:
        return self._root / f"{checked_name(name, 'snapshot')}.json"

    def _files_path(self, name: str) -> Path:
        return self._root / f"{checked_name(name, 'snapshot')}.files"

    def catalogue(self) -> list[dict[str, Any]]:
        docs = list(self._memory.values())
        if self.farm.store.directory is not None and self._root.is_dir():
            for path in sorted(self._root.glob("*.json")):
                try:
                    doc = json.loads(path.read_bytes())
                except (ValueError, RecursionError, OSError):
                    continue
                if _well_formed(doc):
                    docs.append(doc)
        return [{"name": d["name"], "time": d["time"], "members": sorted(d["members"])}
                for d in sorted(docs, key=lambda d: d["time"])]

    def _load(self, name: str) -> dict[str, Any]:
        path = self._doc_path(name)
        if name in self._memory:
            return self._memory[name]
        if self.farm.store.directory is None or not path.is_file():
            raise SnapshotError(f"no snapshot named {name!r}")
        try:
            doc = json.loads(path.read_bytes())
        except (ValueError, RecursionError) as exc:
            raise SnapshotDamaged(f"snapshot {name!r} is damaged: {exc}") from None
        if not _well_formed(doc):
            raise SnapshotDamaged(f"snapshot {name!r} is damaged: not a snapshot document")
        return doc

    async def save(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        self._doc_path(name)  # the name is checked before anything is done
        targets = self._targets(members)
        states = {m.name: copy.deepcopy(m.dump_state()) for m in targets}
        doc: dict[str, Any] = {"name": name, "time": self.farm.clock.time(), "members": states}
        files = self._files_path(name)
        await asyncio.to_thread(self._copy_files, [m.name for m in targets], files)
        if self.farm.store.directory is not None:
            await asyncio.to_thread(atomic_write_bytes, self._doc_path(name), encode_state(doc))
        else:
            self._memory[name] = doc
        return {"name": name, "time": doc["time"], "members": sorted(states)}

    async def restore(self, name: str, members: list[str] | None = None) -> list[str]:
        for member_name in members or ():
            checked_name(member_name, "member")
        doc = self._load(name)
        wanted = set(members) if members else set(doc["members"])
        unknown = wanted - set(doc["members"])
        if unknown:
            raise SnapshotError(f"snapshot {name!r} has no member {sorted(unknown)[0]!r}")
        restored = []
        for member_name in sorted(wanted):
            member = self.farm.members.get(member_name)
            if member is None:
                continue  # a member the scenario no longer has
            files = self._files_path(name) / member_name
            await asyncio.to_thread(self._restore_files, files, member.files_dir())
            member.load_state(copy.deepcopy(doc["members"][member_name]))
            await member.state_changed()
            await member.save()
            restored.append(member_name)
        return restored

    def delete(self, name: str) -> None:
        path, files = self._doc_path(name), self._files_path(name)
        if name in self._memory:
            del self._memory[name]
        elif self.farm.store.directory is not None and path.is_file():
            path.unlink()
        else:
            raise SnapshotError(f"no snapshot named {name!r}")
        shutil.rmtree(files, ignore_errors=True)

    def _targets(self, members: list[str] | None) -> list[Any]:
        if not members:
            return list(self.farm.members.values())
        for member_name in members:
            checked_name(member_name, "member")
        missing = [m for m in members if m not in self.farm.members]
        if missing:
            raise SnapshotError(f"no member named {missing[0]!r}")
        return [self.farm.members[m] for m in members]

    def _copy_files(self, names: list[str], dest: Path) -> None:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            source = self.farm.store.files_dir(name)
            if any(source.iterdir()):
                shutil.copytree(source, dest / name, symlinks=True)

    @staticmethod
    def _restore_files(source: Path, target: Path) -> None:
        for child in target.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
