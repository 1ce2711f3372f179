"""The front door: README's command 1 on a fresh machine.

A new virtual environment (nothing installed), the project installed with no extras, the
default farm started as a new user starts it, on its documented ports, and every member and
server asked one real question with a real client: HTTP, FTP, FTPS, SFTP and the control
plane. Then SIGTERM: exit status 0 and no traceback. Twice: from a wheel (``pip install .``,
run from a folder outside the checkout) and from README's editable install, exactly as the
README writes it. The Docker path is checked the same way where a Docker daemon runs.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkiotda.v5 import IoTDAClient, ListCertificatesRequest

from emulators.core.mqtt.packets import encode_connect
from emulators.enos.models.access import Login as EnosLogin
from emulators.enos.models.access import signature as enos_signature
from tests.sdk_clients import DEFAULT_FARM_DEVICE_CAS, close_iotda

_default_https = ssl._create_default_https_context
from poseidon import poseidon  # noqa: E402 - it switches TLS checks off for the process

ssl._create_default_https_context = _default_https

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DEFAULT = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
# pip on a machine that has fetched the dependencies before takes seconds; on a new one it
# downloads them first.
INSTALL_TIMEOUT = 600
READY_TIMEOUT = 60


def readme_command(number: int) -> str:
    """README's numbered command, as the README writes it (its comment cut off)."""
    block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        if comment.strip().startswith(f"{number}."):
            return command.strip()
    raise AssertionError(f"README has no command {number}")


def documented_ports() -> list[int]:
    """Every TCP port of scenarios/default.yaml (docker-compose.yml publishes the same)."""
    ports = [DEFAULT["control"]["port"]]
    for entry in DEFAULT["servers"] + DEFAULT["emulators"]:
        for key, value in entry.items():
            if key == "port" or key.endswith("_port"):
                ports.append(value)
            elif key == "passive_ports":
                ports.extend(range(value[0], value[1] + 1))
    return ports


def ports_in_use(ports: list[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment a new user's shell has: the venv first on PATH, none of this test
    process's Python settings (pytest's own paths must not reach the fresh install)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST", "COV_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.update(extra)
    return env


def run(command: list[str] | str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(command, cwd=cwd, env=env, shell=isinstance(command, str),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --- one real question to every member, with the client a user would use -------------------


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=15) as reply:
        return reply.read()


def mqtt_connect(client_id: str, username: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with a user name and password, clean session, keep-alive 120."""
    return encode_connect(client_id, username=username, password=password, keep_alive=120)


def member(ready: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [m for m in ready["emulators"] + ready["servers"] if m["name"] == name]
    return found


def ask_every_member(ready: dict[str, Any], scratch: Path,
                     document: dict[str, Any] | None = None) -> None:
    """``ready`` says where to reach each member; ``document`` is what the control plane
    serves as the ready document (the same, unless a container rewrote the addresses)."""
    control = ready["control"]["api"]
    assert json.loads(get(control + "/farm")) == (document or ready)
    # The dashboard's page ships in the package (package data, no network).
    assert b"<title>Emulator farm</title>" in get(control.removesuffix("/v1") + "/ui")

    acti = member(ready, "acti-camera")
    creds = acti["credentials"]
    url = f"{acti['urls']['http']}/cgi-bin/update?USER={creds['user']}&PWD={creds['password']}"
    assert get(url + "&HTTPS_CER") == b"HTTPS_CER='none'\n"  # seed 000

    # testftp makes the camera upload a snapshot to the ftp member over FTPS, verifying the
    # farm CA's certificate (the default scenario's ft_insecure 0): pyOpenSSL at run time.
    instar = member(ready, "instar-camera")
    creds = instar["credentials"]
    reply = get(f"{instar['param_cgi']}?cmd=testftp&user={creds['user']}&pwd={creds['password']}")
    assert reply.startswith(b'cmd="testftp";\r\nresult="0";\r\n'), reply

    enos = member(ready, "enos")
    query = urllib.parse.urlencode({"action": "list", "orgId": enos["orgs"][0],
                                    "assetId": "zBrjuW7q"})
    # enos-poseidon as published, nothing pointed at the farm but the URL.
    listed = poseidon.urlopen(enos["credentials"]["appKey"], enos["credentials"]["appSecret"],
                              f"{enos['urls']['http']}/connect-service/v2.0/certificates?{query}")
    assert listed["code"] == 0 and len(listed["data"]) == 1, listed  # the bound certificate

    # Its device access: the default one-way meter logs in on 11883 with its secret.
    ts = "1700000000000"
    host, port = enos["urls"]["mqtt"].removeprefix("mqtt://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as plain_mqtt:
        plain_mqtt.sendall(mqtt_connect(
            f"meter01|securemode=2,signmethod=hmacsha256,timestamp={ts}|", "meter01&Pl4inPrd",
            enos_signature(EnosLogin("meter01", 2, "hmacsha256", ts), "meter01", "Pl4inPrd",
                           "MeterSecret01")))
        assert plain_mqtt.recv(4) == bytes([0x20, 2, 0, 0])

    iotda = member(ready, "iotda")
    creds = iotda["credentials"]
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    client = (IoTDAClient.new_builder()
              .with_credentials(BasicCredentials(creds["ak"], creds["sk"], creds["project_id"]))
              .with_endpoints([iotda["urls"]["http"]]).with_http_config(config).build())
    try:
        assert [c.cn_name for c in client.list_certificates(
            ListCertificatesRequest()).certificates] == DEFAULT_FARM_DEVICE_CAS
    finally:
        close_iotda(client)
    # Its device access: MQTT over TLS on 8883 (the farm CA's certificate) answers a CONNECT;
    # a device the default scenario does not register is refused as unknown (4).
    host, port = iotda["urls"]["mqtts"].removeprefix("mqtts://").rsplit(":", 1)
    tls = ssl.create_default_context(cadata=ready["ca"]["pem"])
    tls.check_hostname = False  # as the vendor device SDK (tls_insecure_set)
    with socket.create_connection((host, int(port)), timeout=15) as raw, \
            tls.wrap_socket(raw) as mqtts:
        mqtts.sendall(mqtt_connect("nobody_0_0_2026120300", "nobody", "password"))
        assert mqtts.recv(4) == bytes([0x20, 2, 0, 4])

    ftp = member(ready, "ftp")
    user = ftp["credentials"]["users"][0]
    with ftplib.FTP() as plain:  # plain FTP stays allowed on the explicit-TLS server
        plain.connect(ftp["host"], ftp["port"], timeout=15)
        plain.login(user["name"], user["password"])
        plain.storbinary("STOR plain.txt", io.BytesIO(b"over plain FTP"))
    context = ssl.create_default_context(cadata=ready["ca"]["pem"])
    with ftplib.FTP_TLS(context=context) as secure:
        secure.connect(ftp["host"], ftp["port"], timeout=15)
        secure.login(user["name"], user["password"])  # AUTH TLS first, verified by the CA
        secure.prot_p()
        secure.storbinary("STOR secure.txt", io.BytesIO(b"over FTPS"))
        assert {"plain.txt", "secure.txt"} <= set(secure.nlst())

    sftp = member(ready, "sftp")
    user = sftp["credentials"]["users"][0]
    known = scratch / "known_hosts"
    known.write_text(f"[{sftp['host']}]:{sftp['port']} {sftp['host_key']['line']}\n")

    async def sftp_put() -> None:
        async with asyncssh.connect(sftp["host"], sftp["port"], username=user["name"],
                                    password=user["password"], known_hosts=str(known)) as conn, \
                conn.start_sftp_client() as client:
            async with client.open("hello.txt", "wb") as remote:
                await remote.write(b"over SFTP")

    asyncio.run(sftp_put())

    # The control plane saw all of it, and the upload servers received what was sent.
    journal = json.loads(get(control + "/journal"))["entries"]
    requested = {e["member"] for e in journal if e["event"] == "request"}
    assert requested == {"acti-camera", "instar-camera", "enos", "iotda"}
    refused = [e for e in journal if e["member"] == "iotda" and e["event"] == "refused"]
    assert refused and refused[0]["protocol"] == "mqtts", refused
    uploads = {(e["member"], e["path"].rsplit("/", 1)[-1]) for e in journal
               if e["event"] == "upload"}
    assert {("ftp", "Test-Snapshot.jpeg"), ("ftp", "plain.txt"), ("ftp", "secure.txt"),
            ("sftp", "hello.txt")} <= uploads, uploads


# --- a farm process started as a user starts it -----------------------------------------------


class FarmProcess:
    def __init__(self, command: list[str] | str, cwd: Path, env: dict[str, str],
                 ready_file: Path, logs: Path) -> None:
        self.ready_file = ready_file
        self.out_path, self.err_path = logs / "stdout.txt", logs / "stderr.txt"
        self.out, self.err = self.out_path.open("w"), self.err_path.open("w")
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, shell=isinstance(command, str),
                                     stdout=self.out, stderr=self.err, start_new_session=True)

    def wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + INSTALL_TIMEOUT + READY_TIMEOUT
        while not self.ready_file.exists():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.output()}"
            assert time.monotonic() < deadline, f"no ready file: {self.output()}"
            time.sleep(0.05)
        return json.loads(self.ready_file.read_text())

    def stop(self, pid: int) -> int:
        """SIGTERM to the farm (``pid``, from its ready document), as a service manager sends
        it; the status is the farm's (a shell running README's line exits with it)."""
        os.kill(pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.out.close()
            self.err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.out.close()
        self.err.close()

    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()


def drive_default_farm(command: list[str] | str, cwd: Path, env: dict[str, str],
                       scratch: Path) -> None:
    busy = ports_in_use(documented_ports())
    assert not busy, (f"the default farm's documented ports {busy} are in use on 127.0.0.1: "
                      "stop whatever holds them (another `emulators run`?) and run again")
    scratch.mkdir()
    ready_file = scratch / "ready.json"
    farm = FarmProcess(command, cwd, {**env, "EMULATORS_READY_FILE": str(ready_file)},
                       ready_file, scratch)
    try:
        ready = farm.wait_ready()
        assert ready["scenario"] == "default"
        assert ready["control"]["url"] == f"http://127.0.0.1:{DEFAULT['control']['port']}"
        assert {m["name"]: m["port"] for m in ready["emulators"] + ready["servers"]} == {
            e["name"]: e["port"] for e in DEFAULT["emulators"] + DEFAULT["servers"]}
        ask_every_member(ready, scratch)
    except BaseException:
        farm.kill()
        raise
    status = farm.stop(ready["pid"])
    output = farm.output()
    assert status == 0, output
    assert "Traceback" not in output, output
    assert "emulators: stopped" in output
    # The document printed on stdout is the ready file's; the file is gone once stopped.
    stdout = farm.out_path.read_text()
    assert json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1]) == ready
    assert not ready_file.exists()


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120,
                   env=clean_env(venv))
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


def test_readme_opens_with_the_two_commands() -> None:
    assert readme_command(1) == "python -m pip install -e . && emulators run"
    assert readme_command(2) == "python -m pip install -e '.[test]' && python -m pytest"


# The suite's per-test timeout (120 s, for hangs) is shorter than an install from the package
# registry can take on a loaded machine (over 120 s once, with both cores busy); these tests
# bound every step themselves (INSTALL_TIMEOUT, READY_TIMEOUT), so the hang guard is theirs.
VENV_TEST_TIMEOUT = INSTALL_TIMEOUT + READY_TIMEOUT + 120


@pytest.mark.timeout(VENV_TEST_TIMEOUT)
def test_a_wheel_installed_with_no_extras_runs_the_default_farm(fresh_venv: Path,
                                                                 tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"  # nowhere near the checkout: only the wheel is there
    outside.mkdir()
    env = clean_env(fresh_venv)
    run([str(fresh_venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        outside, env, INSTALL_TIMEOUT)
    installed = run([str(fresh_venv / "bin" / "python"), "-c",
                     "import emulators; print(emulators.__file__)"], outside, env, 60)
    assert not installed.startswith(str(ROOT)), installed
    # No test extra came with it, and every built-in scenario's kinds import without one.
    listing = run([str(fresh_venv / "bin" / "python"), "-m", "pip", "list"], outside, env, 60)
    assert "pytest" not in listing.lower()
    scenarios = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
    validated = run(["emulators", "validate", *scenarios], outside, env, 60)
    assert validated.count(": ok (") == len(scenarios), validated
    drive_default_farm(["emulators", "run"], outside, env, tmp_path / "farm")


@pytest.mark.timeout(VENV_TEST_TIMEOUT)
def test_readme_command_1_exactly_in_a_fresh_venv(fresh_venv: Path, tmp_path: Path) -> None:
    # After the wheel test the venv holds the dependencies; README's editable install
    # replaces the wheel. On its own (`-k exactly`) it installs everything itself.
    drive_default_farm(readme_command(1), ROOT, clean_env(fresh_venv), tmp_path / "farm")
    located = run(["python", "-c", "import emulators; print(emulators.__file__)"], tmp_path,
                  clean_env(fresh_venv), 60)
    assert located.strip() == str(ROOT / "emulators" / "__init__.py")


def docker_daemon() -> str | None:
    """Why the Docker path cannot be checked here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return "no Docker daemon on this machine (docker info: cannot connect)"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if compose.returncode != 0:
        return "no docker compose plugin on this machine"
    return None


@pytest.mark.timeout(1200)  # compose up --build alone may take 900 s
def test_the_documented_docker_path_runs_the_default_farm(tmp_path: Path) -> None:
    why = docker_daemon()
    if why is not None:
        pytest.skip(f"Docker path not checked: {why}")
    busy = ports_in_use(documented_ports())
    assert not busy, f"the default farm's documented ports {busy} are in use on 127.0.0.1"
    project = ["docker", "compose", "--project-directory", str(ROOT), "-p", "emulators-ci"]
    subprocess.run([*project, "up", "--build", "--detach", "--wait"], check=True, timeout=900)
    try:
        ready_text = subprocess.run([*project, "exec", "-T", "farm", "cat", "/state/ready.json"],
                                    capture_output=True, text=True, check=True, timeout=60)
        ready = json.loads(ready_text.stdout)
        # Inside the container members listen on 0.0.0.0; the host reaches them on loopback.
        published = json.loads(json.dumps(ready).replace("0.0.0.0", "127.0.0.1"))
        ask_every_member(published, tmp_path, document=ready)
    finally:
        stop = subprocess.run([*project, "stop", "--timeout", "15"], capture_output=True,
                              text=True, timeout=120)
        logs = subprocess.run([*project, "logs", "--no-color"], capture_output=True, text=True,
                              timeout=60).stdout
        state = subprocess.run([*project, "ps", "--all", "--format", "json"],
                               capture_output=True, text=True, timeout=60).stdout
        subprocess.run([*project, "down", "--volumes"], capture_output=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert "Traceback" not in logs, logs
    assert '"ExitCode":0' in state.replace(" ", ""), state
