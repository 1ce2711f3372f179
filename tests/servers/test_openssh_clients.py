"""The SFTP server driven by OpenSSH's own ``scp`` and ``sftp``: a key authorised through the
scenario's ``authorized_keys``, the host key pinned in a known_hosts file, and exit status 0
after a successful transfer (the session ends with ``exit-status``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import asyncssh
import pytest

from tests.servers.clients import SFTP_USER, require_tools

CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519")
CLIENT_LINE = " ".join(CLIENT_KEY.export_public_key().decode().split()[:2])
PAYLOAD = b"\x00\x00\x00\x18ftypmp42" + os.urandom(40_000)


@pytest.fixture
def openssh(sftp_server, tmp_path: Path):
    """A server with the client's key authorised, and the OpenSSH options that use only that
    key and that pinned host key (never the tester's own ~/.ssh)."""
    require_tools("ssh", "scp", "sftp", package="openssh-client")
    server = sftp_server(users=[{**SFTP_USER, "authorized_keys": [CLIENT_LINE]}])
    key = tmp_path / "id_ed25519"
    key.write_bytes(CLIENT_KEY.export_private_key("openssh"))
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {server.description['host_key']['line']}\n")
    options = ["-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
               "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
               "-P", str(server.port)]
    source = tmp_path / "clip.mp4"
    source.write_bytes(PAYLOAD)
    return server, options, source


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          **kwargs)


def _assert_arrived(server, name: str) -> None:
    records = server.call(lambda m: m.received_files())
    assert [(r["path"], r["size"], r["sha256"]) for r in records] == [
        (name, len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest())]


@pytest.mark.parametrize("protocol", [["-s"], []], ids=["scp-s", "scp-default"])
def test_scp_upload_exits_0(openssh, protocol):
    server, options, source = openssh
    done = _run(["scp", *protocol, *options, str(source), f"{SFTP_USER['name']}@127.0.0.1:clip.mp4"])
    assert done.returncode == 0, done.stderr
    _assert_arrived(server, "clip.mp4")


def test_scp_reports_the_servers_exit_status(openssh):
    server, options, source = openssh
    done = _run(["scp", "-v", "-s", *options, str(source),
                 f"{SFTP_USER['name']}@127.0.0.1:clip.mp4"])
    assert done.returncode == 0, done.stderr
    assert "Exit status 0" in done.stderr
    assert "Exit status -1" not in done.stderr


@pytest.mark.parametrize("batch", [
    pytest.param("put {source} clip.mp4\n", id="put"),
    pytest.param("mkdir 2026\nput {source} 2026/clip.mp4\nls -l 2026\n", id="mkdir-put-ls"),
    pytest.param("put {source} clip.mp4\nrename clip.mp4 final.mp4\nbye\n", id="put-rename-bye"),
])
def test_sftp_batch_exits_0(openssh, tmp_path, batch):
    server, options, source = openssh
    script = tmp_path / "batch"
    script.write_text(batch.format(source=source))
    done = _run(["sftp", "-b", str(script), *options, f"{SFTP_USER['name']}@127.0.0.1"])
    assert done.returncode == 0, done.stderr
    assert server.call(lambda m: m.received_files())[0]["size"] == len(PAYLOAD)


def test_scp_download_exits_0(openssh, tmp_path):
    server, options, source = openssh
    assert _run(["scp", "-s", *options, str(source),
                 f"{SFTP_USER['name']}@127.0.0.1:clip.mp4"]).returncode == 0
    back = tmp_path / "back.mp4"
    done = _run(["scp", "-s", *options, f"{SFTP_USER['name']}@127.0.0.1:clip.mp4", str(back)])
    assert done.returncode == 0, done.stderr
    assert back.read_bytes() == PAYLOAD
