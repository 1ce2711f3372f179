"""deploy/kubernetes/: rendered offline (`kubectl kustomize`, no cluster), every object
validated against the Kubernetes 1.32 API schemas (kubernetes-validate, pinned in the test
extra), and the same topology run here: one process per pod, each started with the rendered
pod's own command, the control plane finding the shards at the address pattern it would use
in the cluster."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from emulators import scenario as scenario_mod
from emulators.core.member import fixed_ports
from emulators.shards.partition import slices

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.32.0"  # the API version the objects are checked against


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render deploy/kubernetes (.ci/run installs Debian's "
                    "kubernetes-client)")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(objects: list[dict[str, Any]], kind: str, name_start: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind
               and o["metadata"]["name"].startswith(name_start)]
    return found


def test_every_object_is_valid_against_the_pinned_api(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "NetworkPolicy", "Service",
                     "Service", "StatefulSet"]
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises on any error


def test_the_objects_agree_with_each_other(rendered: list[dict[str, Any]]) -> None:
    shards = one(rendered, "StatefulSet", "farm-shard")
    headless = one(rendered, "Service", "farm-shard")
    control = one(rendered, "Deployment", "farm-control")
    config = one(rendered, "ConfigMap", "farm-scenario")
    assert shards["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == shards["spec"]["template"]["metadata"]["labels"]
    shard_cmd = shards["spec"]["template"]["spec"]["containers"][0]["command"]
    front_cmd = control["spec"]["template"]["spec"]["containers"][0]["command"]
    replicas = shards["spec"]["replicas"]
    assert arg(shard_cmd, "--count") == arg(front_cmd, "--count") == str(replicas)
    assert "--index-from-hostname" in shard_cmd
    assert arg(front_cmd, "--shards-at") == (f"http://{shards['metadata']['name']}-{{i}}."
                                             f"{headless['metadata']['name']}:"
                                             f"{arg(shard_cmd, '--control-port')}")
    assert shards["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    # the ConfigMap holds the scenario file as it is, and it is a valid scenario
    assert config["data"]["scenario.yaml"] == (DEPLOY / "scenario.yaml").read_text()
    loaded = scenario_mod.load(DEPLOY / "scenario.yaml")
    assert all(m.port for m in loaded.members), "pods need fixed ports"
    assert [len(part) for part in slices(loaded, replicas)] == [101, 100, 100, 100]


def arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def args(command: list[str], flag: str) -> list[str]:
    """Every value of a repeatable flag."""
    return [command[i + 1] for i, word in enumerate(command) if word == flag]


def pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each workload's pod template spec, by workload name."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_no_token_ships_in_the_manifests(rendered: list[dict[str, Any]]) -> None:
    """Both tokens come from a Secret the user makes (README.md here); nothing rendered holds
    a token, and there is no well-known default to forget to replace."""
    assert not [o for o in rendered if o["kind"] == "Secret"]
    text = yaml.safe_dump_all(rendered)
    assert "change-me" not in text
    for name, pod in pods(rendered).items():
        for container in pod["containers"]:
            for variable, entry in env_of(container).items():
                if "TOKEN" in variable:
                    assert "value" not in entry, (name, variable)
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "farm-tokens"
            assert env_of(container)["EMULATORS_SHARD_TOKEN"]["valueFrom"]["secretKeyRef"][
                "key"] == "shard-token"
    front = pods(rendered)["farm-control"]["containers"][0]
    # the front's control plane requires the control token, a key of its own (the shard
    # token opens the shards' CA keys: it never leaves the farm's pods)
    variable = arg(front["command"], "--control-token-env")
    assert env_of(front)[variable]["valueFrom"]["secretKeyRef"] == {
        "name": "farm-tokens", "key": "control-token"}
    readme = (DEPLOY / "README.md").read_text()
    assert ("kubectl create secret generic farm-tokens "
            "--from-literal=shard-token=\"$(openssl rand -hex 32)\" "
            "--from-literal=control-token=\"$(openssl rand -hex 32)\"") in readme


def test_the_front_answers_its_service_names(rendered: list[dict[str, Any]]) -> None:
    service = one(rendered, "Service", "farm-control")["metadata"]["name"]
    front = pods(rendered)["farm-control"]["containers"][0]
    assert args(front["command"], "--allow-host") == [
        service, f"{service}.$(POD_NAMESPACE)", f"{service}.$(POD_NAMESPACE).svc",
        f"{service}.$(POD_NAMESPACE).svc.cluster.local"]
    # $(POD_NAMESPACE) is the kubelet's expansion of this variable: the pod's namespace
    assert env_of(front)["POD_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}}


DOCKER_USER = 10001


def test_every_pod_runs_locked_down(rendered: list[dict[str, Any]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {DOCKER_USER}:{DOCKER_USER}" in dockerfile.splitlines()
    workloads = {o["metadata"]["name"]: o for o in rendered
                 if o["kind"] in ("Deployment", "StatefulSet")}
    for name, pod in pods(rendered).items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == context["runAsGroup"] == DOCKER_USER, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, name
            assert own["readOnlyRootFilesystem"] is True, name
            assert own["capabilities"] == {"drop": ["ALL"]}, name
            assert "livenessProbe" in container and "readinessProbe" in container, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            # where the farm writes (the ready file, scratch files, the state directory) is
            # a writable volume: the root file system is not
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            command = container["command"]
            writes = {"/tmp", str(Path(arg(command, "--ready-file")).parent)}
            if "--state-dir" in command:
                writes.add(arg(command, "--state-dir"))
            for path in writes:
                assert path in mounts and not mounts[path].get("readOnly"), (name, path)
                volume = volumes.get(mounts[path]["name"])
                claims = [c["metadata"]["name"] for c in
                          workloads[name]["spec"].get("volumeClaimTemplates", [])]
                assert (volume is not None and "emptyDir" in volume) or (
                    mounts[path]["name"] in claims), (name, path)


def policy_ports(rule: dict[str, Any]) -> set[int]:
    out: set[int] = set()
    for port in rule["ports"]:
        assert port["protocol"] == "TCP"
        out.update(range(port["port"], port.get("endPort", port["port"]) + 1))
    return out


def test_network_policies_open_only_the_front_and_the_members(
        rendered: list[dict[str, Any]]) -> None:
    control = one(rendered, "NetworkPolicy", "farm-control")["spec"]
    shard = one(rendered, "NetworkPolicy", "farm-shard")["spec"]
    front_pod = one(rendered, "Deployment", "farm-control")["spec"]["template"]["metadata"]
    shard_pod = one(rendered, "StatefulSet", "farm-shard")["spec"]["template"]["metadata"]
    assert control["podSelector"]["matchLabels"] == front_pod["labels"]
    assert shard["podSelector"]["matchLabels"] == shard_pod["labels"]
    assert control["policyTypes"] == shard["policyTypes"] == ["Ingress", "Egress"]
    # the front: its control port from anywhere, nothing else
    [front_in] = control["ingress"]
    assert "from" not in front_in and policy_ports(front_in) == {8700}
    # the shards: the members' ports from anywhere, exactly those the scenario listens on...
    open_rules = [r for r in shard["ingress"] if "from" not in r]
    [members] = open_rules
    loaded = scenario_mod.load(DEPLOY / "scenario.yaml")
    expected: set[int] = set()
    for m in loaded.members:
        expected.update(port for _, port in fixed_ports(m))
        passive = getattr(m.options, "passive_ports", None)
        if passive:
            expected.update(range(passive[0], passive[1] + 1))
    assert policy_ports(members) == expected
    # ... and their control planes (the shard token's API) from the front and the shards only
    [inside] = [r for r in shard["ingress"] if "from" in r]
    shard_cmd = pods(rendered)["farm-shard"]["containers"][0]["command"]
    assert policy_ports(inside) == {int(arg(shard_cmd, "--control-port"))}
    assert [p["podSelector"]["matchLabels"] for p in inside["from"]] == [
        front_pod["labels"], shard_pod["labels"]]
    # egress: the front reaches the shards' control planes, the shards each other, both DNS
    dns = {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "k8s-app": "kube-dns"}}}], "ports": [{"protocol": "UDP", "port": 53},
                                            {"protocol": "TCP", "port": 53}]}
    assert control["egress"] == [
        {"to": [{"podSelector": {"matchLabels": shard_pod["labels"]}}],
         "ports": [{"protocol": "TCP", "port": int(arg(shard_cmd, "--control-port"))}]}, dns]
    assert shard["egress"] == [{"to": [{"podSelector": {"matchLabels": shard_pod["labels"]}}]},
                               dns]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local(command: list[str], swaps: dict[str, str]) -> list[str]:
    """A pod's command as this machine runs it: the image's `emulators` is this Python's,
    cluster names and paths swapped for local ones."""
    out = [sys.executable, "-m", "emulators"]
    for word in command[1:]:
        for old, new in swaps.items():
            word = word.replace(old, new)
        out.append(word)
    return out


class Topology:
    """The rendered pods as local processes: shard i on control port base+i."""

    def __init__(self, rendered: list[dict[str, Any]], tmp: Path) -> None:
        shards = one(rendered, "StatefulSet", "farm-shard")
        control = one(rendered, "Deployment", "farm-control")
        config = one(rendered, "ConfigMap", "farm-scenario")
        scenario_file = tmp / "scenario.yaml"
        scenario_file.write_text(config["data"]["scenario.yaml"])
        # the Secret README.md's command makes: a token each, made here
        self.control_token = secrets.token_hex(32)
        self.env = {**os.environ, "EMULATORS_SHARD_TOKEN": secrets.token_hex(32),
                    "EMULATORS_CONTROL_TOKEN": self.control_token}
        self.count = shards["spec"]["replicas"]
        self.base = 19400
        self.tmp = tmp
        self.shard_cmd = shards["spec"]["template"]["spec"]["containers"][0]["command"]
        self.front_cmd = control["spec"]["template"]["spec"]["containers"][0]["command"]
        self.scenario_file = scenario_file
        self.shards: dict[int, subprocess.Popen[bytes]] = {}
        for i in range(self.count):
            self.start_shard(i)
        self.front_port = free_port()
        self.ready_file = tmp / "front-ready.json"
        front = local(self.front_cmd, {
            "/config/scenario.yaml": str(scenario_file), "/tmp/ready.json": str(self.ready_file),
            "farm-shard-{i}.farm-shard:9000": f"127.0.0.1:{self.base // 10}{{i}}",
            "0.0.0.0": "127.0.0.1", "8700": str(self.front_port),
            "$(POD_NAMESPACE)": "default"})
        with (tmp / "front.err").open("wb") as err:  # the child keeps its own copy
            self.front = subprocess.Popen(front, env=self.env, stdout=subprocess.DEVNULL,
                                          stderr=err)
        deadline = time.monotonic() + 120
        while not self.ready_file.exists():
            assert self.front.poll() is None, (tmp / "front.err").read_text()
            assert time.monotonic() < deadline, "the front did not find its shards"
            time.sleep(0.1)
        self.ready = json.loads(self.ready_file.read_text())
        self.api = self.ready["control"]["api"]

    def start_shard(self, i: int) -> None:
        """Pod farm-shard-<i>: its command with --index-from-hostname as the kubelet's host
        name would give it (this machine's host name is not farm-shard-<i>)."""
        command = local(self.shard_cmd, {
            "/config/scenario.yaml": str(self.scenario_file),
            "/state": str(self.tmp / f"shard-{i}"),
            "/tmp/ready.json": str(self.tmp / f"shard-{i}.ready"),
            "farm-shard-0.farm-shard:9000": f"127.0.0.1:{self.base}",
            "farm-shard-0.farm-shard": "127.0.0.1", "0.0.0.0": "127.0.0.1",
            "9000": str(self.base + i)})
        at = command.index("--index-from-hostname")
        command[at:at + 1] = ["--index", str(i)]
        with (self.tmp / f"shard-{i}.err").open("ab") as err:
            self.shards[i] = subprocess.Popen(command, env=self.env,
                                              stdout=subprocess.DEVNULL, stderr=err)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.api + path, headers=self.auth)
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.load(reply)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.control_token}"}

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(self.api + path, data=json.dumps(body).encode(),
                                         method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **self.auth})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.load(reply)

    def camera(self, name: str) -> str:
        return next(m["urls"]["http"] for m in self.ready["emulators"] if m["name"] == name)

    def stop(self) -> None:
        for process in (self.front, *self.shards.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.front, *self.shards.values()):
            process.wait(60)


@pytest.fixture(scope="module")
def topology(rendered: list[dict[str, Any]],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    running = Topology(rendered, tmp_path_factory.mktemp("kubernetes"))
    try:
        yield running
    finally:
        running.stop()


def test_the_local_topology_serves_the_whole_fleet(topology: Topology) -> None:
    names = [m["name"] for m in topology.get("/emulators")["emulators"]]
    assert len(names) == 400 and names[:2] == ["cam-001", "cam-002"]
    assert [s["status"] for s in topology.get("/farm")["shards"]] == ["ok"] * topology.count
    # cam-002 runs on shard 1; it uploads to the FTPS server on shard 0 by the peer name
    reply = subprocess.run(["curl", "-sS", topology.camera("cam-002")
                            + "/param.cgi?cmd=testftp&user=admin&pwd=instar"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert 'result="0"' in reply
    [request] = topology.get("/journal?member=cam-002")["entries"]
    chain = topology.get(f"/journal?correlation_id={request['correlation_id']}")["entries"]
    assert {(e["member"], e["event"]) for e in chain} >= {("ftp", "login"), ("ftp", "upload")}


def test_the_front_requires_its_token_but_its_probe_route_does_not(
        topology: Topology, rendered: list[dict[str, Any]]) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(topology.api + "/farm", timeout=30)
    with refused.value as reply:
        assert reply.code == 401
    assert topology.get("/farm")["control"]["token_required"] is True
    front = pods(rendered)["farm-control"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = front[probe]["httpGet"]["path"]
        url = topology.ready["control"]["url"] + path  # as the kubelet asks: no token
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert reply.status == 200, probe


def test_a_pod_that_restarts_is_found_again_with_its_state(topology: Topology) -> None:
    at = 1893456000.0
    topology.post("/clock/freeze", {"time": at})
    try:
        cam = topology.camera("cam-003")  # shard 2
        subprocess.run(["curl", "-sS", cam + "/param.cgi?cmd=setftpattr&ft_port=2121"
                        "&user=admin&pwd=instar"], check=True, capture_output=True, timeout=30)
        topology.shards[2].send_signal(signal.SIGKILL)
        topology.shards[2].wait(30)
        deadline = time.monotonic() + 20
        while topology.get("/farm")["shards"][2]["status"] == "ok":
            assert time.monotonic() < deadline, "the front never saw the shard go"
            time.sleep(0.2)
        # while it is down, a call that needs every shard says so instead of answering half
        with pytest.raises(urllib.error.HTTPError) as down:
            topology.get("/emulators")
        with down.value as reply:
            assert (reply.code, json.load(reply)["error"]["code"]) == (503, "shard_unavailable")
        topology.start_shard(2)  # as the kubelet restarts the pod, with its volume
        deadline = time.monotonic() + 60
        while topology.get("/farm")["shards"][2]["status"] != "ok":
            assert time.monotonic() < deadline, topology.get("/farm")["shards"]
            time.sleep(0.2)
        reply = subprocess.run(["curl", "-sS", cam + "/param.cgi?cmd=getftpattr"
                                "&user=admin&pwd=instar"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
        assert 'ft_port="2121"' in reply  # its saved state
        events = [e for e in topology.get("/journal")["entries"]
                  if e["member"] == "shard-2"]
        assert [e["event"] for e in events] == ["shard_failed", "shard_restarted"]
        [latest] = topology.get("/journal?member=cam-003&path=/param.cgi")["entries"][-1:]
        assert latest["time"] == at  # the restarted shard was given the farm's clock
    finally:
        topology.post("/clock/reset", {})


def test_a_shard_takes_its_index_from_the_pod_name() -> None:
    """--index-from-hostname: the number ending the host name (farm-shard-3 -> 3)."""
    script = ("import socket, sys; socket.gethostname = lambda: 'farm-shard-3'; "
              "from emulators import cli; sys.exit(cli.main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", script, "shard", str(DEPLOY / "scenario.yaml"),
                          "--count", "2", "--index-from-hostname", "--state-dir", "/nonexistent",
                          "--peer-host", "127.0.0.1"],
                         env={**os.environ, "EMULATORS_SHARD_TOKEN": "t"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "index 3 is not below --count 2" in out.stderr
