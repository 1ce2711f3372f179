"""param.cgi as the seed documents it: exact replies, logins, settings, bad input, flash."""

from __future__ import annotations

import base64
import re

import pytest

from emulators.testing import single_member_scenario

from .clients import cgi, curl

CRLF = "\r\n"


def seed_reply(*lines: str) -> str:
    return CRLF.join(lines) + CRLF


@pytest.fixture
def camera(emulator_factory):  # type: ignore[no-untyped-def]
    return emulator_factory("instar-camera", ssh_key_bits=1024)


# -- the seed's examples, byte for byte -------------------------------------------------------

def test_getftpattr_defaults_are_the_seeds_first_example(camera) -> None:  # type: ignore[no-untyped-def]
    reply = cgi(camera.url, "cmd=getftpattr")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain"
    assert reply.body == seed_reply(
        'cmd="getftpattr";', 'ft_server="192.168.2.111";', 'ft_port="21";',
        'ft_username="admin";', 'ft_dirname="./hello";', 'ft_dirmode="1";', 'ft_mode="1";',
        'ft_ssl="1";', 'ft_insecure="1";', 'response="200";')


def test_getftpattr_second_example_with_query_login(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera", ssh_key_bits=1024, ftp={
        "ft_server": "192.168.2.110", "ft_port": 22, "ft_username": "ipcamera",
        "ft_password": "password", "ft_dirname": "instar", "ft_dirmode": 0, "ft_mode": 1,
        "ft_ssl": 2, "ft_insecure": 0})
    reply = cgi(camera.url, "cmd=getftpattr", how="query")
    assert reply.body == seed_reply(
        'cmd="getftpattr";', 'ft_server="192.168.2.110";', 'ft_port="22";',
        'ft_username="ipcamera";', 'ft_dirname="instar";', 'ft_dirmode="0";', 'ft_mode="1";',
        'ft_ssl="2";', 'ft_insecure="0";', 'response="200";')


def test_setftpattr_seed_example_then_get_never_shows_the_password(camera) -> None:  # type: ignore[no-untyped-def]
    reply = cgi(camera.url, "cmd=setftpattr&ft_server=192.168.178.1&ft_port=21&"
                "ft_username=ftpuser&ft_password=123456&ft_mode=1&ft_dirname=.%2F&"
                "ft_insecure=1&ft_dirmode=1&ft_ssl=0")
    assert reply.body == seed_reply('cmd="setftpattr";', 'response="200";')
    got = cgi(camera.url, "cmd=getftpattr")
    assert got.values["ft_server"] == "192.168.178.1"
    assert got.values["ft_username"] == "ftpuser"
    assert got.values["ft_dirname"] == "./"
    assert got.values["ft_ssl"] == "0"
    assert "123456" not in got.body and "ft_password" not in got.body
    assert camera.call(lambda m: m.ftp.ft_password) == "123456"


def test_ftp_actions_as_in_the_seed(camera) -> None:  # type: ignore[no-untyped-def]
    assert cgi(camera.url, "cmd=getftpaction").body == seed_reply(
        'cmd="getftpaction";', "enable['rec']=\"0\";", "interval['rec']=\"0\";",
        "enable['snap']=\"0\";", "interval['snap']=\"15\";", "enable['timersnap']=\"0\";",
        "interval['timersnap']=\"820\";", 'response="200";')
    assert cgi(camera.url, "cmd=getftpaction&type=snap", how="query").body == seed_reply(
        'cmd="getftpaction";', 'enable="0";', 'interval="15";', 'response="200";')
    assert cgi(camera.url, "cmd=setftpaction&type=rec&enable=1&interval=60").body == \
        seed_reply('cmd="setftpaction";', 'response="200";')
    assert cgi(camera.url, "cmd=getftpaction&type=rec").values == {
        "cmd": "getftpaction", "enable": "1", "interval": "60", "response": "200"}


def test_snapcount_as_in_the_seed(camera) -> None:  # type: ignore[no-untyped-def]
    assert cgi(camera.url, "cmd=getftpactionattr", how="query").body == seed_reply(
        'cmd="getftpactionattr";', 'snapcount="5";', 'response="200";')
    assert cgi(camera.url, "cmd=setftpactionattr&snapcount=10").body == seed_reply(
        'cmd="setftpactionattr";', 'response="200";')
    assert cgi(camera.url, "cmd=getftpactionattr").values["snapcount"] == "10"


def test_snapshot_schedule_as_in_the_seed(camera) -> None:  # type: ignore[no-untyped-def]
    assert cgi(camera.url, "cmd=getsnapschedftpattr").body == seed_reply(
        'cmd="getsnapschedftpattr";', 'mode="0";', 'prefix="0";', 'name="snapshot";',
        'enable="0";', 'times="0-1";', 'response="200";')
    assert cgi(camera.url, "cmd=setsnapschedftpattr&mode=1&prefix=1&enable=1").body == \
        seed_reply('cmd="setsnapschedftpattr";', 'response="200";')
    cgi(camera.url, "cmd=setsnapschedftpattr&times=36000-67,43200-127")
    assert cgi(camera.url, "cmd=getsnapschedftpattr", how="query").body == seed_reply(
        'cmd="getsnapschedftpattr";', 'mode="1";', 'prefix="1";', 'name="snapshot";',
        'enable="1";', 'times="36000-67,43200-127";', 'response="200";')


def test_snapshot_timer_names_as_in_the_seed(camera) -> None:  # type: ignore[no-untyped-def]
    assert cgi(camera.url, "cmd=getsnaptimerftpattr").body == seed_reply(
        'cmd="getsnaptimerftpattr";', 'mode="1";', 'prefix="1";', 'name="test";',
        'response="200";')
    assert cgi(camera.url, "cmd=setsnaptimerftpattr&name=instar").body == seed_reply(
        'cmd="setsnaptimerftpattr";', 'response="200";')
    assert cgi(camera.url, "cmd=getsnaptimerftpattr", how="query").values["name"] == "instar"


def test_getpubkey_is_a_4096_bit_ssh_rsa_key_like_the_seeds(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera")  # the default key size
    reply = cgi(camera.url, "cmd=getpubkey")
    match = re.fullmatch(r'cmd="getpubkey";\r\npublickey="ssh-rsa (AAAAB3Nz[A-Za-z0-9+/]+==)";'
                         r'\r\nresponse="200";\r\n', reply.body)
    assert match, reply.body
    blob = base64.b64decode(match[1])
    modulus_len = int.from_bytes(blob[18:22], "big")  # after "ssh-rsa" and e=65537
    assert modulus_len == 513  # 4096 bits plus the sign byte
    assert cgi(camera.url, "cmd=getpubkey").body == reply.body  # the same key every time


# -- logging in -------------------------------------------------------------------------------

@pytest.mark.parametrize(("how", "user", "password"), [
    pytest.param("basic", "admin", "wrong", id="basic-wrong-password"),
    pytest.param("basic", "root", "instar", id="basic-unknown-user"),
    pytest.param("query", "admin", "wrong", id="query-wrong-password"),
    pytest.param("query", "", "", id="query-empty"),
])
def test_wrong_login_gets_a_basic_challenge(camera, how, user, password) -> None:  # type: ignore[no-untyped-def]
    reply = cgi(camera.url, "cmd=getftpattr", user=user, password=password, how=how)
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Basic realm="INSTAR"'
    assert "ft_server" not in reply.body


def test_no_login_at_all_gets_a_basic_challenge(camera) -> None:  # type: ignore[no-untyped-def]
    reply = curl(f"{camera.url}/param.cgi?cmd=getftpattr")
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Basic realm="INSTAR"'


def test_garbage_basic_header_gets_a_challenge(camera) -> None:  # type: ignore[no-untyped-def]
    reply = curl(f"{camera.url}/param.cgi?cmd=getftpattr", "-H", "Authorization: Basic %%%")
    assert reply.status == 401


def test_password_with_special_characters_url_encoded(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera", ssh_key_bits=1024,
                              users=[{"name": "admin", "password": "p&ss=w+rd#1"}])
    assert cgi(camera.url, "cmd=getftpactionattr", password="p&ss=w+rd#1",
               how="query").response == "200"
    assert cgi(camera.url, "cmd=getftpactionattr", password="p&ss=w+rd#1").response == "200"


def test_auth_failure_switch_answers_211(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera", ssh_key_bits=1024,
                              profile={"auth_failure": "response-211"})
    reply = cgi(camera.url, "cmd=getftpattr", password="nope")
    assert (reply.status, reply.body) == (200, seed_reply('cmd="getftpattr";',
                                                          'response="211";'))


def test_a_user_may_read_but_not_change(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera", ssh_key_bits=1024, users=[
        {"name": "admin", "password": "instar"},
        {"name": "viewer", "password": "view", "role": "user"}])
    assert cgi(camera.url, "cmd=getftpattr", user="viewer", password="view").response == "200"
    reply = cgi(camera.url, "cmd=setftpattr&ft_port=2121", user="viewer", password="view")
    assert reply.body == seed_reply('cmd="setftpattr";', 'response="211";')
    assert cgi(camera.url, "cmd=getftpattr").values["ft_port"] == "21"


# -- bad input --------------------------------------------------------------------------------

BAD = [
    ("cmd=nosuchcmd", "nosuchcmd", "204"),
    ("cmd=", "", "204"),
    ("cmd=getftpattr&bogus=1", "getftpattr", "201"),
    ("cmd=setftpattr&ft_srever=1.2.3.4", "setftpattr", "201"),
    ("cmd=setftpattr", "setftpattr", "208"),
    ("cmd=setftpattr&ft_port=0", "setftpattr", "202"),
    ("cmd=setftpattr&ft_port=65536", "setftpattr", "202"),
    ("cmd=setftpattr&ft_port=abc", "setftpattr", "202"),
    ("cmd=setftpattr&ft_port=-21", "setftpattr", "202"),
    ("cmd=setftpattr&ft_port=", "setftpattr", "202"),
    ("cmd=setftpattr&ft_ssl=3", "setftpattr", "202"),
    ("cmd=setftpattr&ft_mode=2", "setftpattr", "202"),
    ("cmd=setftpattr&ft_insecure=yes", "setftpattr", "202"),
    ("cmd=setftpattr&ft_autocreatedir=-1", "setftpattr", "202"),
    ("cmd=setftpattr&ft_dirmode=10", "setftpattr", "202"),
    ("cmd=setftpattr&ft_server=bad%20host", "setftpattr", "202"),
    ("cmd=setftpattr&ft_username=a%22b", "setftpattr", "202"),
    ("cmd=setftpattr&ft_dirname=a%0Ab", "setftpattr", "202"),
    ("cmd=setftpattr&ft_password=" + "x" * 64, "setftpattr", "202"),
    ("cmd=setftpattr&ft_username=%FF%FE", "setftpattr", "202"),
    ("cmd=setftpattr&ft_username=caf%C3%A9", "setftpattr", "202"),
    ("cmd=setftpaction&enable=1", "setftpaction", "208"),
    ("cmd=setftpaction&type=rec", "setftpaction", "208"),
    ("cmd=setftpaction&type=video&enable=1", "setftpaction", "202"),
    ("cmd=setftpaction&type=snap&enable=2", "setftpaction", "202"),
    ("cmd=setftpaction&type=snap&interval=0", "setftpaction", "202"),
    ("cmd=setftpaction&type=snap&interval=3601", "setftpaction", "202"),
    ("cmd=getftpaction&type=video", "getftpaction", "202"),
    ("cmd=setftpactionattr", "setftpactionattr", "208"),
    ("cmd=setftpactionattr&snapcount=0", "setftpactionattr", "202"),
    ("cmd=setftpactionattr&snapcount=11", "setftpactionattr", "202"),
    ("cmd=setftpactionattr&snapcount=five", "setftpactionattr", "202"),
    ("cmd=setsnapschedftpattr&times=86400-1", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&times=36030-1", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&times=36000-0", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&times=36000-128", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&times=36000", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&times=", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&times=" + ",".join(["0-1"] * 25), "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&name=..%2Fescape", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&name=", "setsnapschedftpattr", "202"),
    ("cmd=setsnapschedftpattr&enable=on", "setsnapschedftpattr", "202"),
    ("cmd=setsnaptimerftpattr&mode=5", "setsnaptimerftpattr", "202"),
    ("cmd=setsnaptimerftpattr&name=a%2Fb", "setsnaptimerftpattr", "202"),
    ("cmd=testftp&sethost=not-a-key", "testftp", "202"),
    # The seed's warning: an unencoded "+" arrives as a space and breaks the key.
    ("cmd=testftp&sethost=AAAAC3NzaC1lZDI1NTE5AAAAIHzXGgltq4a8PS6QH9u334FGdxJmEzQ0klKtUw+1iSle",
     "testftp", "202"),
    ("cmd=testftp&sethost=AAAAB3NzaC1yc2EAAAADAQAB", "testftp", "202"),
    ("cmd=getpubkey&x=1", "getpubkey", "201"),
]


@pytest.mark.parametrize(("query", "cmd", "code"), [
    pytest.param(q, c, code, id=q.removeprefix("cmd=")[:60]) for q, c, code in BAD])
def test_bad_parameters_get_the_documented_code(camera, query, cmd, code) -> None:  # type: ignore[no-untyped-def]
    before = camera.state()
    reply = cgi(camera.url, query)
    assert reply.status == 200
    assert reply.body == seed_reply(f'cmd="{cmd}";', f'response="{code}";')
    after = camera.state()
    for key in ("ftp", "actions", "snapcount", "snap_schedule", "snap_timer",
                "pinned_hostkey"):
        assert after[key] == before[key], f"{key} changed although the command failed"


def test_head_and_post_run_nothing(camera) -> None:  # type: ignore[no-untyped-def]
    host = camera.url.removeprefix("http://")
    for method in (["-I"], ["-X", "POST"]):
        reply = curl(f"http://admin:instar@{host}/param.cgi?cmd=setftpactionattr&snapcount=2",
                     *method)
        assert reply.status == 405
    assert cgi(camera.url, "cmd=getftpactionattr").values["snapcount"] == "5"


def test_missing_cmd_answers_208_without_a_cmd_line(camera) -> None:  # type: ignore[no-untyped-def]
    reply = cgi(camera.url, "foo=1")
    assert (reply.status, reply.body) == (200, seed_reply('response="208";'))


def test_a_bad_value_changes_nothing_else_in_the_same_request(camera) -> None:  # type: ignore[no-untyped-def]
    reply = cgi(camera.url, "cmd=setftpattr&ft_server=10.0.0.1&ft_port=99999")
    assert reply.response == "202"
    assert cgi(camera.url, "cmd=getftpattr").values["ft_server"] == "192.168.2.111"


def test_cache_buster_and_first_duplicate(camera) -> None:  # type: ignore[no-untyped-def]
    assert cgi(camera.url, "cmd=getftpattr&_=1700000000").response == "200"
    cgi(camera.url, "cmd=setftpattr&ft_port=2121&ft_port=2222")
    assert cgi(camera.url, "cmd=getftpattr").values["ft_port"] == "2121"


def test_autocreatedir_is_settable_and_listed_only_by_the_switch(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera", ssh_key_bits=1024,
                              profile={"getftpattr_lists_autocreatedir": True})
    cgi(camera.url, "cmd=setftpattr&ft_autocreatedir=1")
    lines = cgi(camera.url, "cmd=getftpattr").lines
    assert lines[4:6] == ['ft_dirname="./hello";', 'ft_autocreatedir="1";']


# -- flash ------------------------------------------------------------------------------------

def test_settings_key_and_pin_survive_a_farm_restart(farm_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    scenario = single_member_scenario("instar-camera", "cam", ssh_key_bits=1024,
                                      connect_timeout=0.5)
    first = farm_factory(scenario, tmp_path, control=False)["cam"]
    pin = "AAAAC3NzaC1lZDI1NTE5AAAAIHzXGgltq4a8PS6QH9u334FGdxJmEzQ0klKtUw%2B1iSle"
    for query in ("cmd=setftpattr&ft_server=10.1.2.3&ft_port=2121&ft_password=s3cret",
                  "cmd=setftpaction&type=snap&enable=1&interval=30",
                  "cmd=setftpactionattr&snapcount=7",
                  "cmd=setsnapschedftpattr&enable=1&times=36000-127&name=door",
                  "cmd=setsnaptimerftpattr&name=yard"):
        assert cgi(first.url, query).response == "200"
    cgi(first.url, f"cmd=testftp&sethost={pin}")  # pins, then fails to reach 10.1.2.3
    key = cgi(first.url, "cmd=getpubkey").body
    first._farm.stop()

    second = farm_factory(scenario, tmp_path, control=False)["cam"]
    got = cgi(second.url, "cmd=getftpattr").values
    assert (got["ft_server"], got["ft_port"]) == ("10.1.2.3", "2121")
    assert second.call(lambda m: m.ftp.ft_password) == "s3cret"
    assert cgi(second.url, "cmd=getftpaction&type=snap").values["interval"] == "30"
    assert cgi(second.url, "cmd=getftpactionattr").values["snapcount"] == "7"
    sched = cgi(second.url, "cmd=getsnapschedftpattr").values
    assert (sched["enable"], sched["times"], sched["name"]) == ("1", "36000-127", "door")
    assert cgi(second.url, "cmd=getsnaptimerftpattr").values["name"] == "yard"
    assert cgi(second.url, "cmd=getpubkey").body == key
    assert second.state()["pinned_hostkey"] == pin.replace("%2B", "+")


def test_reset_restores_settings_but_keeps_the_cameras_key(camera) -> None:  # type: ignore[no-untyped-def]
    key = cgi(camera.url, "cmd=getpubkey").body
    cgi(camera.url, "cmd=setftpactionattr&snapcount=2")
    camera.reset()
    assert cgi(camera.url, "cmd=getftpactionattr").values["snapcount"] == "5"
    assert cgi(camera.url, "cmd=getpubkey").body == key


def test_sethost_pins_and_an_empty_sethost_forgets(emulator_factory, silent_server) -> None:  # type: ignore[no-untyped-def]
    camera = emulator_factory("instar-camera", ssh_key_bits=1024, connect_timeout=0.3, ftp={
        "ft_server": "127.0.0.1", "ft_port": silent_server.port, "ft_ssl": 2})
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIHzXGgltq4a8PS6QH9u334FGdxJmEzQ0klKtUw%2B1iSle"
    assert cgi(camera.url, f"cmd=testftp&sethost={key}").values["result"] == "-4"
    assert camera.state()["pinned_hostkey"] == key.replace("%2B", "+")
    assert cgi(camera.url, "cmd=testftp&sethost=").values["result"] == "-4"
    assert camera.state()["pinned_hostkey"] is None
