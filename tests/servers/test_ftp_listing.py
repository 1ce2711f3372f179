"""Machine listings (MLSD / MLST, RFC 3659) as real clients read them: lftp's ``cls -l`` and
raw MLSD lines before and after ``OPTS MLST``."""

from __future__ import annotations

import io
import os
import re
import subprocess

import pytest

from tests.servers.clients import ftp_login, require_tools


@pytest.fixture
def listed_server(ftp_server):
    server = ftp_server()
    with ftp_login(server) as client:
        client.storbinary("STOR snap.jpg", io.BytesIO(b"jpeg!"))
        client.mkd("alarm")
    root = server.call(lambda m: m.user_root("cam"))
    os.chmod(root / "snap.jpg", 0o644)  # whatever the umask said
    os.chmod(root / "alarm", 0o755)
    return server


def _mlsd(client) -> dict[str, dict[str, str]]:
    lines: list[str] = []
    client.retrlines("MLSD", lines.append)
    listing = {}
    for line in lines:
        facts, _, name = line.partition(" ")
        listing[name] = dict(fact.split("=", 1) for fact in facts.rstrip(";").split(";") if fact)
    return listing


DEFAULT_FACTS = {"type", "perm", "size", "modify", "unique"}


@pytest.mark.parametrize(("opts", "reply", "facts"), [
    pytest.param(None, None, DEFAULT_FACTS, id="before-opts"),
    pytest.param("type;size;UNIX.mode;", "200 MLST OPTS type;size;unix.mode;",
                 {"type", "size", "unix.mode"}, id="lftp-style-case"),
    pytest.param("unix.mode;", "200 MLST OPTS unix.mode;", {"unix.mode"}, id="mode-only"),
    pytest.param("type;perm;size;modify;unix.mode;unix.uid;unix.gid;",
                 "200 MLST OPTS type;perm;size;modify;unix.mode;unix.uid;unix.gid;",
                 {"type", "perm", "size", "modify", "unix.mode", "unix.uid", "unix.gid"},
                 id="what-lftp-asks"),
    pytest.param("type;nonsense;size;", "200 MLST OPTS type;size;", {"type", "size"},
                 id="unknown-fact-ignored"),
    pytest.param("", "200 MLST OPTS ", set(), id="no-facts"),
])
def test_mlsd_facts_follow_opts_mlst_and_mode_is_rfc_octal(listed_server, opts, reply, facts):
    with ftp_login(listed_server) as client:
        if opts is not None:
            assert client.sendcmd(f"OPTS MLST {opts}".rstrip()) == reply
        for _round in range(2):  # the same facts listing after listing (RFC 3659 7.9)
            listing = _mlsd(client)
            assert set(listing) == {"snap.jpg", "alarm"}
            for entry in listing.values():
                assert set(entry) == facts
            if "unix.mode" in facts:
                assert listing["snap.jpg"]["unix.mode"] == "0644"
                assert listing["alarm"]["unix.mode"] == "0755"
        lines = client.sendcmd("MLST snap.jpg").splitlines()
        assert lines[0].startswith("250-") and lines[-1] == "250 End MLST."
        assert lines[1].startswith(" ")  # RFC 3659 7.2: one space, then [facts] SP pathname
        facts_text, _, name = lines[1][1:].partition(" ")
        assert name == "/snap.jpg"
        mlst = dict(f.split("=", 1) for f in facts_text.rstrip(";").split(";") if f)
        assert set(mlst) == facts
        if "unix.mode" in facts:
            assert mlst["unix.mode"] == "0644"


def test_feat_marks_the_facts_opts_selected(listed_server):
    with ftp_login(listed_server) as client:
        assert " MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;" in (
            client.sendcmd("FEAT").splitlines())
        client.sendcmd("OPTS MLST type;UNIX.mode;")
        assert " MLST type*;perm;size;modify;unique;unix.mode*;unix.uid;unix.gid;" in (
            client.sendcmd("FEAT").splitlines())


def test_a_name_that_looks_like_a_fact_is_left_alone(ftp_server):
    server = ftp_server()
    with ftp_login(server) as client:
        client.storbinary("STOR unix.mode=0o777;x", io.BytesIO(b"x"))
        client.sendcmd("OPTS MLST unix.mode;")
        assert set(_mlsd(client)) == {"unix.mode=0o777;x"}


def test_lftp_cls_shows_modes_and_names(listed_server):
    require_tools("lftp", package="lftp")
    script = (f"set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; "
              f"open -u cam,s3cret ftp://127.0.0.1:{listed_server.port}; cls -l")
    done = subprocess.run(["lftp", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    modes = {line.split()[-1]: line.split()[0] for line in done.stdout.splitlines()}
    assert modes == {"alarm/": "drwxr-xr-x", "snap.jpg": "-rw-r--r--"}
    assert not re.search(r"^-{10}", done.stdout, re.M)
