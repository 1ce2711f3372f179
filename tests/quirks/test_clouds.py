"""Quirk profiles of the clouds, as a QA engineer lives them: capture a tenant (a stand-in for
Huawei IoTDA or EnOS over TLS with a CA of its own, checking every signature and token) with
``--cafile`` and ``--param``, start the kind with ``quirks: FILE``, and every probe request
is answered as the tenant answered it; drift finds nothing against the tenant or that member
and the differences against the plain one; a capture that cannot be made leaves no file."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkiotda.v5 import (
    AddDevice,
    AddDeviceRequest,
    AddProduct,
    AuthInfo,
    CreateProductRequest,
    IoTDAClient,
    ListDevicesRequest,
    ServiceCapability,
    ShowDeviceRequest,
)

from emulators.capture import load_script
from emulators.core.quirks import format as fmt
from emulators.core.quirks import probe, rawhttp
from emulators.testing import RunningFarm
from tests.quirks.cloud_standins import (
    DEVICE_ID,
    ENOS_APP,
    ENOS_ASSET,
    ENOS_ORG,
    ENOS_SECRET,
    ENOS_SERIAL,
    IOTDA_AK,
    IOTDA_PROJECT,
    IOTDA_SECRET,
    IOTDA_SERIAL,
    IOTDA_SK,
    CloudCA,
    enos_standin,
    iotda_standin,
)
from tests.quirks.standins import HOST, StandIn, emulators
from tests.sdk_clients import close_iotda


@dataclass
class Tenant:
    kind: str
    user: str
    password: str
    params: dict[str, str]
    server: str  # the gateway's Server line: the profile's model
    secrets: tuple[str, ...]  # what the file must not hold
    member: dict[str, Any]  # the scenario entry of a member that holds the same account

    def args(self) -> list[str]:
        params = [a for name, value in self.params.items() for a in ("--param", f"{name}={value}")]
        return ["--user", self.user, "--password", self.password, *params]


TENANTS = {
    "iotda": Tenant("iotda", IOTDA_AK, IOTDA_SK, {"project_id": IOTDA_PROJECT}, "api-gateway",
                    (IOTDA_SK, IOTDA_AK, IOTDA_SECRET, IOTDA_SERIAL),
                    {"credentials": [{"ak": IOTDA_AK, "sk": IOTDA_SK,
                                      "project_id": IOTDA_PROJECT}]}),
    "enos": Tenant("enos", ENOS_APP, ENOS_SECRET, {"org_id": ENOS_ORG, "asset_id": ENOS_ASSET},
                   "nginx", (ENOS_SECRET, ENOS_APP, f'"{ENOS_SERIAL}"'),
                   {"https_port": 0, "orgs": [{"orgId": ENOS_ORG}],
                    "products": [{"orgId": ENOS_ORG, "productKey": "probePk1"}],
                    "devices": [{"orgId": ENOS_ORG, "assetId": ENOS_ASSET,
                                 "productKey": "probePk1", "deviceKey": "probe-device"}],
                    "certificates": [{"assetId": ENOS_ASSET}],
                    "apps": [{"appKey": ENOS_APP, "appSecret": ENOS_SECRET}]}),
}
STANDINS = {"iotda": iotda_standin, "enos": enos_standin}


@dataclass
class Captured:
    tenant: Tenant
    standin: StandIn
    cloud: Any
    cafile: Path
    profile: Path
    stdout: str


@pytest.fixture(scope="module")
def ca() -> CloudCA:
    return CloudCA()


@pytest.fixture(scope="module", params=list(TENANTS))
def captured(request: pytest.FixtureRequest, ca: CloudCA,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    tenant = TENANTS[request.param]
    tmp = tmp_path_factory.mktemp(tenant.kind)
    cafile = ca.write(tmp / "tenant-ca.pem")
    standin, cloud = STANDINS[tenant.kind](ca)
    out = tmp / f"{tenant.kind}.yaml"
    try:
        result = emulators("capture", "--kind", tenant.kind, "--target", standin.url,
                           "--cafile", cafile, *tenant.args(), "--out", out)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        yield Captured(tenant, standin, cloud, cafile, out, result.stdout)
    finally:
        standin.close()


def start_member(captured: Captured, tmp: Path, *, with_profile: bool) -> RunningFarm:
    entry: dict[str, Any] = {"name": "cloud", "kind": captured.tenant.kind, "port": 0,
                             "mqtt_port": None, "mqtts_port": None, **captured.tenant.member}
    if with_profile:
        entry["quirks"] = str(captured.profile)
    return RunningFarm.start({"version": 1, "name": "clouds", "emulators": [entry]}, tmp)


@pytest.fixture(scope="module")
def replaying(captured: Captured,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    farm = start_member(captured, tmp_path_factory.mktemp("replaying"), with_profile=True)
    yield farm
    farm.stop()


@pytest.fixture(scope="module")
def plain(captured: Captured,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    """A member of the same account without the profile."""
    farm = start_member(captured, tmp_path_factory.mktemp("plain"), with_profile=False)
    yield farm
    farm.stop()


def member_target(farm: RunningFarm) -> tuple[str, str | None]:
    """The member's URL (HTTPS where it serves it) and the CA file that verifies it."""
    urls = farm.ready["emulators"][0]["urls"]
    if "https" in urls:
        return urls["https"], farm.ready["ca"]["file"]
    return urls["http"], None


def by_step(profile: fmt.Profile) -> dict[str, fmt.Exchange]:
    return {e.step: e for e in profile.exchanges}


# -- capture --------------------------------------------------------------------------------------
def test_the_capture_holds_the_tenants_replies_redacted(captured: Captured) -> None:
    tenant = captured.tenant
    text = captured.profile.read_text()
    pems = (captured.cafile.read_text(), captured.cloud.ca.device_pem)
    for secret in (*tenant.secrets, HOST, *(pem.splitlines()[1] for pem in pems)):
        assert secret not in text, secret
    for token in getattr(captured.cloud, "tokens", ()):
        assert token not in text
    profile = fmt.load(captured.profile)
    p = profile.provenance
    assert (p.model, p.firmware, p.probe_script) == (tenant.server, None, f"{tenant.kind}/1")
    assert p.params == tenant.params  # not secrets: drift's defaults
    assert p.checksum == fmt.checksum(profile.exchanges)
    for exchange in profile.exchanges:
        # Per-request signatures are never recorded: they differ on every request.
        names = {n.lower() for n, _ in exchange.request.headers}
        assert not names & {"authorization", "x-sdk-date", "apim-signature", "apim-timestamp"}
        for reply in exchange.replies:
            assert ("Date", "<date>") in reply.headers


def test_iotda_capture_signed_every_request_as_the_sdk_does(ca: CloudCA, tmp_path: Path) -> None:
    """The stand-in checks each signature with huaweicloudsdkcore's own Signer: the reads pass,
    the wrong secret and the unsigned request are refused, and the profile says so."""
    standin, _ = iotda_standin(ca)
    out = tmp_path / "iotda.yaml"
    try:
        result = emulators("capture", "--kind", "iotda", "--target", standin.url, "--cafile",
                           ca.write(tmp_path / "ca.pem"), *TENANTS["iotda"].args(), "--out", out)
    finally:
        standin.close()
    assert result.returncode == 0, result.stderr
    assert "model api-gateway" in result.stdout
    steps = by_step(fmt.load(out))
    for name in ("list-devices", "show-device", "show-device-shadow", "list-device-messages",
                 "show-product", "list-certificates", "show-certificate",
                 "list-server-certificates", "show-server-certificate"):
        assert steps[name].replies[0].status == 200, name
        assert steps[name].request.credentials == "right"
    assert steps["show-device"].request.path == \
        f"/v5/iot/{IOTDA_PROJECT}/devices/{DEVICE_ID}"  # from list-devices' JSON
    wrong, unsigned = steps["wrong-secret-key"], steps["no-authorization"]
    assert (wrong.request.credentials, unsigned.request.credentials) == ("wrong", "none")
    assert wrong.replies[0].body == (
        b'{"error_msg":"Incorrect IAM authentication information: verify aksk signature fail,'
        b' Access:<user>","error_code":"APIGW.0301","request_id":"<request-id>"}')
    assert b"Authorization not found" in unsigned.replies[0].body
    reply = steps["show-device"].replies[0]
    assert [n for n, _ in reply.headers] == [
        "Server", "Date", "Content-Type", "Content-Length", "Connection", "X-Request-Id",
        "Strict-Transport-Security"]
    assert ("X-Request-Id", "<request-id>") in reply.headers
    assert b'"secret":"<secret>"' in reply.body and steps["show-device"].merge == "json"
    assert b'"serial_number":"<serial>"' in steps["show-certificate"].replies[0].body
    assert b'"certificate_pem":"<pem>"' in steps["show-server-certificate"].replies[0].body
    assert steps["limit-not-a-number"].request.query == (("limit", "abc"),)
    assert [r.method for r in standin.received] == ["GET"] * len(standin.received)


def test_enos_capture_gets_a_token_and_signs_its_calls(ca: CloudCA, tmp_path: Path) -> None:
    standin, cloud = enos_standin(ca)
    out = tmp_path / "enos.yaml"
    try:
        result = emulators("capture", "--kind", "enos", "--target", standin.url, "--cafile",
                           ca.write(tmp_path / "ca.pem"), *TENANTS["enos"].args(), "--out", out)
    finally:
        standin.close()
    assert result.returncode == 0, result.stderr
    steps = by_step(fmt.load(out))
    token = steps["token"]
    assert token.request.body == \
        '{"appKey":"<user>","encryption":"<encryption>","timestamp":<timestamp>}'
    assert token.request.headers == (("Content-Type", "application/json;charset=UTF-8"),)
    reply = token.replies[0]
    assert ("Transfer-Encoding", "chunked") in reply.headers
    assert reply.body == (b'{"status":0,"msg":"Success","business":"apim-token-service",'
                          b'"data":{"accessToken":"<token>","expire":7199}}')
    listed = steps["list-certificates"]
    assert listed.request.headers == (("apim-accesstoken", "<token>"),)  # the token, redacted
    assert listed.request.query == (("action", "list"), ("orgId", ENOS_ORG),
                                    ("assetId", ENOS_ASSET))
    body = listed.replies[0].body
    assert body.startswith(b'{"code":0,"msg":"OK","requestId":"<request-id>","data":[{'
                           b'"certSN":"<serial>","cert":"<pem>","certStatus":0,')
    assert b"Signature check failed" not in out.read_bytes()  # every signed call passed
    assert steps["token-wrong-secret"].replies[0].body == (
        b'{"status":1003,"msg":"Encryption check failed.","business":"apim-token-service"}')
    assert b"Unknown access token." in steps["list-made-up-token"].replies[0].body
    assert steps["ca-cert-rsa"].replies[0].body == b"<pem>\n"
    assert steps["unknown-path"].replies[0].body.startswith(b"<<html>\r\n<<head>")
    methods = {(r.method, r.path) for r in standin.received}
    assert methods <= {("POST", "/apim-token-service/v2.0/token/get")} | {
        ("GET", r.path) for r in standin.received}
    assert len(cloud.tokens) == 1  # the one token, reused by every call


@pytest.mark.parametrize("kind", list(TENANTS))
def test_a_tenant_that_cannot_be_captured_leaves_one_line_exit_2_and_no_file(
        kind: str, ca: CloudCA, tmp_path: Path) -> None:
    tenant = TENANTS[kind]
    cafile = ca.write(tmp_path / "ca.pem")
    out = tmp_path / "out" / "cloud.yaml"
    out.parent.mkdir()
    standin, _ = STANDINS[kind](ca)
    try:
        wrong = emulators("capture", "--kind", kind, "--target", standin.url, "--cafile",
                          cafile, *tenant.args()[:3], "not-the-secret", *tenant.args()[4:],
                          "--out", out)
        untrusted = emulators("capture", "--kind", kind, "--target", standin.url,
                              *tenant.args(), "--out", out)
    finally:
        standin.close()
    with socket.socket() as probe_socket:
        probe_socket.bind((HOST, 0))
        port = probe_socket.getsockname()[1]
    unreachable = emulators("capture", "--kind", kind, "--target", f"https://{HOST}:{port}",
                            "--cafile", cafile, *tenant.args(), "--out", out)
    assert "refused the credentials" in wrong.stderr
    assert "does not verify" in untrusted.stderr and "--cafile" in untrusted.stderr
    assert f"cannot reach https://{HOST}:{port}: " in unreachable.stderr
    for result in (wrong, untrusted, unreachable):
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("emulators capture: ")
        assert result.stderr.count("\n") == 1
    assert list(out.parent.iterdir()) == []


def test_a_param_the_script_needs_is_asked_for(tmp_path: Path) -> None:
    result = emulators("capture", "--kind", "enos", "--target", "https://127.0.0.1:9",
                       "--param", "org_id=o1", "--out", tmp_path / "x.yaml")
    assert result.returncode == 2
    assert "needs --param asset_id=VALUE" in result.stderr
    unknown = emulators("capture", "--kind", "iotda", "--target", "http://127.0.0.1:9",
                        "--param", "region=x", "--out", tmp_path / "x.yaml")
    assert unknown.returncode == 2 and "takes no --param region" in unknown.stderr
    assert list(tmp_path.iterdir()) == []


# -- replay -----------------------------------------------------------------------------------
def probe_replies(kind: str, url: str, cafile: str | Path | None, tenant: Tenant
                  ) -> dict[str, rawhttp.RawReply]:
    """Every step of the kind's probe script sent to ``url``, signed, its references filled
    from the replies before it: the reply of each, by step."""
    script = load_script(kind)

    async def run() -> dict[str, rawhttp.RawReply]:
        runner = probe.Runner(rawhttp.Target.parse(url, str(cafile) if cafile else None),
                              probe.Credentials(tenant.user, tenant.password), 20.0,
                              tenant.params, script.signer)
        replies = {}
        for step in script.steps:
            reply = await runner.send(runner.prepare(step))
            runner.remember(step.name, reply)
            replies[step.name] = reply
        return replies

    return asyncio.run(run())


_PLACEHOLDER = re.compile(r"<<|<[a-z-]+>")


def template(recorded: str) -> re.Pattern[str]:
    """The recorded text as a pattern: its bytes exactly, a placeholder any run of them."""
    pattern = ""
    at = 0
    for match in _PLACEHOLDER.finditer(recorded):
        pattern += re.escape(recorded[at:match.start()])
        pattern += re.escape("<") if match[0] == "<<" else ".+?"
        at = match.end()
    return re.compile(pattern + re.escape(recorded[at:]), re.DOTALL)


def test_the_member_answers_every_probe_request_as_the_tenant_did(
        captured: Captured, replaying: RunningFarm) -> None:
    tenant = captured.tenant
    tenant_replies = probe_replies(tenant.kind, captured.standin.url, captured.cafile, tenant)
    url, cafile = member_target(replaying)
    member_replies = probe_replies(tenant.kind, url, cafile, tenant)
    profile = fmt.load(captured.profile)
    identical = 0
    for exchange in profile.exchanges:
        recorded, = exchange.replies
        ours, theirs = member_replies[exchange.step], tenant_replies[exchange.step]
        step = exchange.step
        assert (ours.version, ours.status, ours.reason, ours.line_ending) == (
            theirs.version, theirs.status, theirs.reason, theirs.line_ending), step
        assert [n for n, _ in ours.headers] == [n for n, _ in theirs.headers], step
        for (name, value), (_, theirs_value), (_, pattern) in zip(
                ours.headers, theirs.headers, recorded.headers, strict=True):
            if name.lower() in ("date", "content-length"):
                continue
            if "<" in pattern:  # redacted: the member's own of the same shape
                assert template(pattern).fullmatch(value), (step, name, value)
            else:
                assert value == theirs_value, (step, name)
        recorded_body = recorded.body.decode()
        if _PLACEHOLDER.search(recorded_body.replace("<<", "")):
            assert template(recorded_body).fullmatch(ours.body.decode()), (step, ours.body)
            assert ours.body != theirs.body  # the tenant's secrets are not handed out
        else:
            assert ours.body == theirs.body, step
            identical += 1
    assert identical >= 6
    assert set(member_replies) == {e.step for e in profile.exchanges}  # nothing skipped


def test_replayed_secrets_are_the_members_own(captured: Captured,
                                             replaying: RunningFarm) -> None:
    """A redacted value takes the member's own where it has one: EnOS's token is one its
    gateway issued (the signed calls after it pass the gateway's own check), the device
    certificate and root are the member's, the request ids fresh."""
    url, cafile = member_target(replaying)
    replies = probe_replies(captured.tenant.kind, url, cafile, captured.tenant)
    member = replaying["cloud"]
    if captured.tenant.kind == "enos":
        token = re.search(rb'"accessToken":"([^"]+)"', replies["token"].body)
        assert token is not None
        assert token[1].decode() in member.call(lambda m: set(m.tokens.tokens))
        assert b'"code":0' in replies["list-certificates"].body  # its gateway let it in
        root = member.call(lambda m: m.roots["RSA"].pem)
        assert replies["ca-cert-rsa"].body.decode().startswith(root.rstrip("\n"))
    else:
        first = replies["list-devices"].header("X-Request-Id")
        again = replies["show-device"].header("X-Request-Id")
        assert first and again and first != again


# -- drift ------------------------------------------------------------------------------------
def drift(captured: Captured, url: str, cafile: str | Path | None,
          *extra: str) -> Any:
    args = ["drift", "--profile", captured.profile, "--target", url, "--user",
            captured.tenant.user, "--password", captured.tenant.password, *extra]
    return emulators(*args, *(["--cafile", cafile] if cafile else []))


def test_no_drift_against_the_tenant_or_the_member_that_replays_it(
        captured: Captured, replaying: RunningFarm) -> None:
    # The params come from the profile: drift asks for none again.
    result = drift(captured, captured.standin.url, captured.cafile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("no drift:")
    member = drift(captured, *member_target(replaying))
    assert member.returncode == 0, member.stdout + member.stderr


def test_the_plain_member_drifts_from_the_tenant(captured: Captured,
                                                 plain: RunningFarm) -> None:
    result = drift(captured, *member_target(plain))
    assert result.returncode == 1, result.stdout + result.stderr
    first = next(e.step for e in fmt.load(captured.profile).exchanges)
    assert f"step {first}: header names\n  profile:\n" in result.stdout
    assert "difference(s) between" in result.stdout


def test_a_capture_of_the_member_itself_has_no_drift(captured: Captured, plain: RunningFarm,
                                                     tmp_path: Path) -> None:
    """The member as a tenant: EnOS over its HTTPS listener, trusted through the CA file the
    farm's ready file names (``ca.file``)."""
    url, cafile = member_target(plain)
    assert (cafile is not None) == (captured.tenant.kind == "enos")
    out = tmp_path / "member.yaml"
    result = emulators("capture", "--kind", captured.tenant.kind, "--target", url,
                       *(["--cafile", cafile] if cafile else []), *captured.tenant.args(),
                       "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    again = emulators("drift", "--profile", out, "--target", url,
                      *(["--cafile", cafile] if cafile else []), "--user",
                      captured.tenant.user, "--password", captured.tenant.password)
    assert again.returncode == 0, again.stdout + again.stderr


def test_drift_against_an_unreachable_tenant_exits_2(captured: Captured) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind((HOST, 0))
        port = probe_socket.getsockname()[1]
    result = drift(captured, f"https://{HOST}:{port}", captured.cafile)
    assert result.returncode == 2
    assert result.stderr.startswith(f"emulators drift: cannot reach https://{HOST}:{port}: ")


# -- the vendor SDK against a member with a profile --------------------------------------------
def test_the_iotda_sdk_still_works_against_a_member_with_a_profile(
        ca: CloudCA, tmp_path_factory: pytest.TempPathFactory) -> None:
    """huaweicloudsdkiotda, unmodified: ListDevices is a probe request (the tenant's recorded
    reply, which the SDK reads as the tenant's device); the calls no exchange records (a new
    product and device, ShowDevice of it, ListDevices with a limit) get the member's own."""
    tmp = tmp_path_factory.mktemp("sdk")
    standin, _ = iotda_standin(ca)
    profile = tmp / "iotda.yaml"
    try:
        result = emulators("capture", "--kind", "iotda", "--target", standin.url, "--cafile",
                           ca.write(tmp / "ca.pem"), *TENANTS["iotda"].args(), "--out", profile)
        assert result.returncode == 0, result.stderr
    finally:
        standin.close()
    captured = Captured(TENANTS["iotda"], standin, None, tmp / "ca.pem", profile, "")
    farm = start_member(captured, tmp / "farm", with_profile=True)
    client = (IoTDAClient.new_builder()
              .with_credentials(BasicCredentials(IOTDA_AK, IOTDA_SK, IOTDA_PROJECT))
              .with_endpoints([farm.ready["emulators"][0]["urls"]["http"]]).build())
    try:
        recorded = client.list_devices(ListDevicesRequest())
        assert [d.device_id for d in recorded.devices] == [DEVICE_ID]
        client.create_product(CreateProductRequest(body=AddProduct(
            product_id="sdkprod", name="SDK product", device_type="Camera",
            protocol_type="MQTT", data_format="json", service_capabilities=[
                ServiceCapability(service_id="Battery", service_type="Battery")])))
        made = client.add_device(AddDeviceRequest(body=AddDevice(
            node_id="sdk-node", product_id="sdkprod",
            auth_info=AuthInfo(auth_type="SECRET", secret="SdkSecret01"))))
        shown = client.show_device(ShowDeviceRequest(device_id=made.device_id))
        assert (shown.device_id, shown.node_id) == ("sdkprod_sdk-node", "sdk-node")
        own = client.list_devices(ListDevicesRequest(limit=5))
        assert [d.device_id for d in own.devices] == ["sdkprod_sdk-node"]
    finally:
        close_iotda(client)
        farm.stop()
