"""A test suite using the farm's pytest fixtures (quoted verbatim in README.md)."""

import urllib.request

import pytest


def get(url):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


def test_acti_camera_has_no_certificate_yet(emulator_factory):
    camera = emulator_factory("acti-camera", firmware="A1D-310-V4.10")
    reply = get(camera.url + "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER")
    assert reply == b"HTTPS_CER='none'\n"


def test_instar_testftp_really_uploads(farm):  # the default farm, on free ports
    camera = farm["instar-camera"]
    reply = get(camera.url + "/param.cgi?cmd=testftp&user=admin&pwd=instar")
    assert b'result="0";' in reply
    upload = farm.wait_for_upload("ftp", timeout=10)
    assert upload["path"].endswith("Test-Snapshot.jpeg")
    # The server's upload and the camera's request share one correlation id.
    [request] = farm.journal(member="instar-camera", path="/param.cgi")
    assert upload["correlation_id"] == request["correlation_id"]


@pytest.mark.emulators_scenario({"emulators": [
    {"name": "cam", "kind": "instar-camera", "count": 3, "host": "127.0.50.1"}]})
def test_a_fleet_with_a_flaky_member(farm):
    farm.add_fault(fault="vendor_error", member="cam-2", message="213", times=1)
    replies = [get(c.url + "/param.cgi?cmd=getftpactionattr&user=admin&pwd=instar")
               for c in farm.group("cam")]
    assert [r.endswith(b'response="200";\r\n') for r in replies] == [True, False, True]
    assert replies[1].endswith(b'response="213";\r\n')  # the camera's own "busy"


def test_readme_quotes_this_file_verbatim():
    from pathlib import Path

    here = Path(__file__)
    text = here.read_text().split("\n\n\ndef test_readme_quotes_this_file_verbatim")[0]
    readme = (here.parent.parent / "README.md").read_text()
    assert f"```python\n{text}\n```" in readme
