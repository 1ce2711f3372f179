"""An upload server's state file is exactly ``encode_state(dump_state())`` although the two
long lists (what arrived, the last 1,000 events) are kept encoded between saves: after
uploads, after more events than are kept, after loading a saved state and after a reset."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulators.core.state import encode_state
from emulators.servers.common import MAX_EVENTS
from tests.servers.clients import FTP_USER, SFTP_USER


@pytest.mark.parametrize("kind", ["ftp", "sftp"])
def test_the_saved_file_is_the_state_encoded(farm_factory, tmp_path: Path, kind: str) -> None:
    user = FTP_USER if kind == "ftp" else SFTP_USER
    farm = farm_factory({"name": "state-file", "servers": [
        {"name": "up", "kind": kind, "users": [user]}]}, tmp_path, control=False)
    member, run, call = farm["up"].member, farm.loop.run, farm.loop.call

    def saved() -> bytes:
        run(member.save())
        return (tmp_path / "up.json").read_bytes()

    def expected() -> bytes:
        return call(lambda: encode_state(member.dump_state()))

    for n in range(3):
        run(member.record_upload(user=user["name"], path=f"file-{n}.jpg", size=n,
                                 sha256=f"{n:064x}", protocol=kind, remote="127.0.0.1:1"))
    assert saved() == expected()

    def emit_many() -> None:
        for i in range(MAX_EVENTS + 5):
            member.emit("login", protocol=kind, user=user["name"], remote=f"127.0.0.1:{i}")

    call(emit_many)  # the oldest events drop out of the kept 1,000
    assert len(call(member.events)) == MAX_EVENTS
    assert saved() == expected()

    call(lambda: member.load_state(member.dump_state()))  # loaded back: the same bytes
    assert saved() == expected()
    run(member.record_upload(user=user["name"], path="after-load.jpg", size=1,
                             sha256="f" * 64, protocol=kind))
    assert saved() == expected()

    farm["up"].reset()
    assert call(member.received_files) == []
    assert saved() == expected()
