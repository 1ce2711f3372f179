"""The emulated flash: atomic writes, crash safety, temp-file sweep, ordered coalesced saves."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulators.core.state import (
    EncodedRecords,
    StateError,
    StateStore,
    atomic_write_bytes,
    encode_document,
    encode_state,
    sweep_temp_files,
)

WRITER = r"""
import sys
from pathlib import Path
from emulators.core.state import atomic_write_bytes
path = Path(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    i += 1
    # Big enough that a kill lands mid-write most of the time.
    atomic_write_bytes(path, (('{"version": %d, "pad": "' % i) + "x" * 400000 + '"}').encode())
"""


def test_write_killed_midway_leaves_old_or_new_state(tmp_path: Path) -> None:
    target = tmp_path / "member.json"
    atomic_write_bytes(target, b'{"version": 0, "pad": ""}')
    seen_versions = set()
    for _ in range(15):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.02 + (len(seen_versions) % 5) * 0.013)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = json.loads(target.read_bytes())  # never a torn file
        seen_versions.add(data["version"])
        assert data["pad"] in ("", "x" * 400000)
    assert len(seen_versions) > 1  # the writes really happened while we killed them
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    store = StateStore(tmp_path)  # opening the store sweeps what the kills left behind
    assert {p.name for p in store.swept} == {p.name for p in leftovers}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert store.load("member") is not None


def test_sweep_removes_only_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / ".a.json.tmp-123-456").write_text("{")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".b.json.tmp-1-2").write_text("")
    (tmp_path / "sub" / "upload.jpeg").write_bytes(b"\xff\xd8")
    removed = sweep_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".a.json.tmp-123-456", ".b.json.tmp-1-2"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "sub", "upload.jpeg"]


def test_corrupt_state_is_reported_not_silently_replaced(tmp_path: Path) -> None:
    (tmp_path / "cam.json").write_text("{ not json")
    with pytest.raises(StateError, match="saved state of 'cam' is not valid JSON"):
        StateStore(tmp_path).load("cam")


def test_saves_are_ordered_and_the_last_one_wins(tmp_path: Path) -> None:
    store = StateStore(tmp_path)

    async def burst() -> None:
        await asyncio.gather(*(store.save("cam", {"n": i}) for i in range(50)))
        await store.flush()

    asyncio.run(burst())
    assert store.load("cam") == {"n": 49}
    assert oct(os.stat(tmp_path / "cam.json").st_mode & 0o777) == "0o600"


def test_memory_store_keeps_state_without_touching_disk(tmp_path: Path) -> None:
    store = StateStore(None)
    asyncio.run(store.save("cam", {"n": 1}))
    assert store.load("cam") == {"n": 1}
    scratch = store.files_dir("cam")
    assert scratch.is_dir()
    store.close()
    assert not scratch.exists()


class _Row:
    def __init__(self, value: str) -> None:
        self.value = value

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value}


def test_encoded_records_stay_the_list_encoded() -> None:
    """Appends in key order, out of order, a record changed and put again, a drop, a clear."""
    encoded, rows = EncodedRecords(), dict[int, _Row]()

    def kept_is_encoded() -> bool:
        listed = [rows[key].to_dict() for key in sorted(rows)]
        return b"".join(encoded.parts()) == encode_state(listed)

    assert kept_is_encoded()
    for key in (5, 6, 3, 9, 7):
        rows[key] = _Row(f"r{key}\u00e9")
        encoded.put(key, rows[key])
        assert kept_is_encoded()
    rows[6].value = "changed"
    encoded.put(6, rows[6])
    assert kept_is_encoded()
    del rows[9]
    encoded.drop(9)
    encoded.drop(100)  # nothing there
    assert kept_is_encoded()
    rows[11] = _Row("r11")
    encoded.put(11, rows[11])
    assert kept_is_encoded()
    rows.clear()
    encoded.clear()
    assert kept_is_encoded()
    rows[2] = _Row("r2")
    encoded.put(2, rows[2])
    assert kept_is_encoded()


def test_encode_document_is_encode_state_of_the_object() -> None:
    encoded = EncodedRecords()
    encoded.put(1, _Row("one"))
    values = {"zeta": [1, 2], "alpha": {"b": None}, "\u00e9t\u00e9": "x"}
    parts = {key: [encode_state(value)] for key, value in values.items()}
    document = encode_document({**parts, "rows": encoded.parts()})
    assert document == encode_state({**values, "rows": [{"value": "one"}]})
    assert encode_document({}) == encode_state({})
