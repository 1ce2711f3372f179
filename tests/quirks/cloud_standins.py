"""Stand-ins for the real clouds in the cloud capture tests: a Huawei IoTDA tenant and an EnOS
tenant behind their gateways, over TLS with a test CA of their own, answering with what the
emulators have no option for (their own header lines and order, a chunked reply, their own
error bodies, an HTML 404, a device secret, a serial number, a certificate, request ids).
Both check credentials for real: IoTDA's signature by the vendor SDK's own signer, EnOS's
token request and signed calls by the documented digests computed here."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from emulators import pki
from tests.quirks.standins import HOST, Request, StandIn

# -- the test CA and the clouds' TLS identity --------------------------------------------------


@dataclass
class CloudCA:
    """A CA of the test's own (no system trusts it) and a server certificate for HOST."""

    key: Any = field(default_factory=pki.ec_key)

    def __post_init__(self) -> None:
        self.cert = pki.make_ca(pki.name(CN="Probe Cloud Test CA", O="Tests"), self.key)
        self.pem = pki.cert_pem(self.cert)
        server_key = pki.ec_key()
        server = pki.issue(server_key.public_key(), pki.name(CN=HOST), self.cert, self.key,
                           server=True, ip_addresses=[HOST])
        self.server = pki.server_context(pki.cert_pem(server), pki.key_pem(server_key))
        # What a device certificate in a reply carries (a PEM the capture must redact).
        device_key = pki.ec_key()
        self.device_pem = pki.cert_pem(pki.issue(device_key.public_key(),
                                                 pki.name(CN="probe-device"), self.cert,
                                                 self.key, client=True))

    def write(self, path: Path) -> Path:
        path.write_text(self.pem)
        return path


def _head(status: str, lines: list[tuple[str, str]]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines)
            + "\r\n").encode("latin-1")


def _now_http() -> str:
    return formatdate(usegmt=True)


# -- Huawei IoTDA ------------------------------------------------------------------------------
IOTDA_AK = "HPUAPROBE7K3M9QX2ZLW"
IOTDA_SK = "Zq7LwR2xTb9mNc4VfKd8sHj3GpYe6Ua1WoXi5Er0"
IOTDA_PROJECT = "5f6e1a2b3c4d40e8a9b7c6d5e4f3a2b1"
IOTDA_SECRET = "TenantDeviceSecret77"  # a device's secret in ShowDevice
IOTDA_SERIAL = "4FA2C19B77E0D3A1"  # a device CA's serial number
DEVICE_ID = "66f0c2e5a1_probe-cam-01"
PRODUCT_ID = "66f0c2e5a1"
CA_ID = "b8e9c6b2a1f04c3d9e8f7a6b"
SERVER_CA_ID = "7c2e9a41d3b54f60a1b2c3d4"


@dataclass
class IotdaCloud:
    """A tenant of one project behind Huawei's API gateway (``Server: api-gateway``, its
    header order, ``X-Request-Id`` last but one, HSTS, ``error_msg`` before ``error_code``)."""

    ca: CloudCA
    ak: str = IOTDA_AK
    sk: str = IOTDA_SK

    def reply(self, status: str, doc: Any, request_id: str) -> bytes:
        body = json.dumps(doc, separators=(",", ":")).encode()
        return _head(status, [
            ("Server", "api-gateway"), ("Date", _now_http()),
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Connection", "keep-alive"), ("X-Request-Id", request_id),
            ("Strict-Transport-Security", "max-age=31536000; includeSubdomains;")]) + body

    def signed(self, request: Request) -> str | None:
        """None when the request's Authorization is the one the vendor SDK's signer makes for
        it, else why not."""
        authorization = request.header("Authorization")
        if authorization is None:
            return "Authorization not found"
        try:
            listed = authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
        except IndexError:
            return "malformed Authorization"
        lines = {name: value for name, value in request.headers if name.lower() in listed}
        sdk = SdkRequest(request.method, "https", request.header("Host"), request.path,
                         query_params=[(k, v or "") for k, v in request.query],
                         header_params=lines, body=request.body)
        Signer(BasicCredentials(self.ak, self.sk)).sign(sdk)
        if sdk.header_params["Authorization"] != authorization:
            access = authorization.split("Access=", 1)[-1].split(",", 1)[0]
            return f"verify aksk signature fail, Access:{access}"
        return None

    def __call__(self, request: Request) -> bytes:
        request_id = uuid.uuid4().hex
        problem = self.signed(request)
        if problem is not None:
            return self.reply("401 Unauthorized", {
                "error_msg": f"Incorrect IAM authentication information: {problem}",
                "error_code": "APIGW.0301", "request_id": request_id}, request_id)
        base = f"/v5/iot/{IOTDA_PROJECT}/"
        if not request.path.startswith("/v5/iot/"):
            return self.not_found(request_id)
        if not request.path.startswith(base):
            return self.reply("403 Forbidden", {
                "error_code": "IOTDA.000024",
                "error_msg": "The project does not belong to the account."}, request_id)
        found = self.resource(request.path[len(base):], request)
        if found is None:
            return self.not_found(request_id)
        status, doc = found
        return self.reply(status, doc, request_id)

    def not_found(self, request_id: str) -> bytes:
        return self.reply("404 Not Found", {
            "error_msg": "The API does not exist or has not been published in the "
                         "environment", "error_code": "APIGW.0101",
            "request_id": request_id}, request_id)

    def resource(self, rest: str, request: Request) -> tuple[str, Any] | None:
        device = {"app_id": "a1b2c3", "app_name": "DefaultApp_cn-north-4", "device_id": DEVICE_ID,
                  "node_id": "probe-cam-01", "gateway_id": DEVICE_ID, "device_name": "Probe Cam",
                  "node_type": "GATEWAY", "product_id": PRODUCT_ID, "product_name": "ProbeCam",
                  "status": "OFFLINE", "fw_version": "1.0.3", "tags": []}
        if rest == "devices":
            limit = request.get("limit")
            if limit is not None and not limit.isdigit():
                return "400 Bad Request", {"error_code": "IOTDA.000006",
                                           "error_msg": "Invalid input data. limit must be a "
                                                        "number."}
            if limit is not None and not 1 <= int(limit) <= 50:
                return "400 Bad Request", {"error_code": "IOTDA.000006",
                                           "error_msg": "Invalid input data. limit is out of "
                                                        "range [1,50]."}
            return "200 OK", {"devices": [device],
                              "page": {"count": 1, "marker": "66f0c2e5a1b2c3d4e5f60718"}}
        if rest == f"devices/{DEVICE_ID}":
            return "200 OK", {**device, "auth_info": {
                "auth_type": "SECRET", "secret": IOTDA_SECRET, "secure_access": True,
                "timeout": 0}, "create_time": "20240315T080910Z"}
        if rest == f"devices/{DEVICE_ID}/shadow":
            return "200 OK", {"device_id": DEVICE_ID, "shadow": [{
                "service_id": "Battery", "desired": {"properties": {"batteryLevel": 80},
                                                     "event_time": "20240315T081000Z"},
                "reported": {"properties": {"batteryLevel": 76},
                             "event_time": "20240315T081500Z"}, "version": 7}]}
        if rest == f"devices/{DEVICE_ID}/messages":
            return "200 OK", {"device_id": DEVICE_ID, "messages": []}
        if rest.startswith("devices/"):
            return "404 Not Found", {"error_code": "IOTDA.014000",
                                     "error_msg": f"The device does not exist. device_id: "
                                                  f"{rest.split('/')[1]}"}
        if rest == f"products/{PRODUCT_ID}":
            return "200 OK", {"app_id": "a1b2c3", "product_id": PRODUCT_ID, "name": "ProbeCam",
                              "device_type": "Camera", "protocol_type": "MQTT",
                              "data_format": "json", "manufacturer_name": "Acme",
                              "service_capabilities": [{"service_id": "Battery",
                                                        "service_type": "Battery"}],
                              "create_time": "20240301T000000Z"}
        if rest.startswith("products/"):
            return "404 Not Found", {"error_code": "IOTDA.014003",
                                     "error_msg": "The product does not exist."}
        ca = {"certificate_id": CA_ID, "cn_name": "Probe Device CA", "owner": "Probe Device CA",
              "status": True, "verify_code": "3b1f0e7c9d2a4b6e", "provision_enable": False,
              "create_date": "20240301T000000Z", "effective_date": "20240301T000000Z",
              "expiry_date": "20340301T000000Z"}
        if rest == "certificates":
            return "200 OK", {"certificates": [ca], "page": {"count": 1, "marker": CA_ID}}
        if rest == f"certificates/{CA_ID}":
            return "200 OK", {**ca, "serial_number": IOTDA_SERIAL}
        server = {"server_certificate_id": SERVER_CA_ID, "common_name": "iot.probe.example",
                  "effective_date": "20240301T000000Z", "expiry_date": "20250301T000000Z",
                  "certificate_owner": "iot.probe.example",
                  "certificate_issuer": "Probe Cloud Test CA"}
        if rest == "server-certificates":
            return "200 OK", {"server_certificates": [server],
                              "page": {"count": 1, "marker": SERVER_CA_ID}}
        if rest == f"server-certificates/{SERVER_CA_ID}":
            return "200 OK", {**server, "certificate_pem": self.ca.device_pem}
        return None


def iotda_standin(ca: CloudCA) -> tuple[StandIn, IotdaCloud]:
    cloud = IotdaCloud(ca)
    return StandIn(cloud, tls=ca.server), cloud


# -- EnOS --------------------------------------------------------------------------------------
ENOS_APP = "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
ENOS_SECRET = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0ff"
ENOS_ORG = "o16000000000001"
ENOS_ASSET = "Qx7Tn2Lp"
ENOS_SERIAL = "887766"


def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class EnosCloud:
    """A tenant behind nginx and the APIM gateway: a chunked token reply, ``msg`` wording of
    its own, and an HTML 404 for a path no API serves."""

    ca: CloudCA
    tokens: set[str] = field(default_factory=set)

    def json(self, doc: Any, *, chunked: bool = False) -> bytes:
        body = json.dumps(doc, separators=(",", ":")).encode()
        lines = [("Server", "nginx"), ("Date", _now_http()),
                 ("Content-Type", "application/json;charset=UTF-8")]
        if chunked:
            half = len(body) // 2
            framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
            return _head("200 OK", [*lines, ("Transfer-Encoding", "chunked"),
                                    ("Vary", "Accept-Encoding")]) + framed + b"0\r\n\r\n"
        return _head("200 OK", [*lines, ("Content-Length", str(len(body))),
                                ("Vary", "Accept-Encoding")]) + body

    def __call__(self, request: Request) -> bytes:
        if request.path == "/apim-token-service/v2.0/token/get":
            return self.token(request)
        if request.path == "/enos/CA/cacert/RSA":
            body = self.ca.pem.encode()
            return _head("200 OK", [("Server", "nginx"), ("Date", _now_http()),
                                    ("Content-Type", "application/x-x509-ca-cert"),
                                    ("Content-Length", str(len(body)))]) + body
        if request.path.startswith("/enos/CA/"):
            return self.not_found()  # no ECC root in this environment
        refusal = self.gateway(request)
        if refusal is not None:
            return self.json(refusal)
        if request.path != "/connect-service/v2.0/certificates":
            return self.not_found()
        return self.json(self.certificates(request))

    def not_found(self) -> bytes:
        body = (b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
                b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
                b"</body>\r\n</html>\r\n")
        return _head("404 Not Found", [("Server", "nginx"), ("Date", _now_http()),
                                       ("Content-Type", "text/html"),
                                       ("Content-Length", str(len(body)))]) + body

    def token(self, request: Request) -> bytes:
        try:
            body = json.loads(request.body)
        except ValueError:
            body = {}
        if not body.get("appKey") or not body.get("encryption") or not body.get("timestamp"):
            return self.json({"status": 1202, "msg": "Parameter can not be empty.",
                              "business": "apim-token-service"})
        wanted = sha256hex(ENOS_APP + str(body["timestamp"]) + ENOS_SECRET)
        if body["appKey"] != ENOS_APP or body["encryption"] != wanted:
            return self.json({"status": 1003, "msg": "Encryption check failed.",
                              "business": "apim-token-service"})
        token = "APIM" + secrets.token_hex(24).upper()
        self.tokens.add(token)
        return self.json({"status": 0, "msg": "Success", "business": "apim-token-service",
                          "data": {"accessToken": token, "expire": 7199}}, chunked=True)

    def gateway(self, request: Request) -> dict[str, Any] | None:
        token = request.header("apim-accesstoken")
        if not token:
            return {"status": 1202, "msg": "Access token is missing.", "business": "apim-gateway",
                    "apim_status": 4012}
        if token not in self.tokens:
            return {"status": 1004, "msg": "Unknown access token.", "business": "apim-gateway",
                    "apim_status": 4012}
        timestamp = request.header("apim-timestamp") or ""
        params = "".join(k + (v or "") for k, v in sorted((k, v or "") for k, v in request.query))
        wanted = sha256hex(token + params + request.body.decode() + timestamp + ENOS_SECRET)
        if request.header("apim-signature") != wanted:
            return {"status": 1003, "msg": "Signature check failed.", "business": "apim-gateway"}
        return None

    def certificates(self, request: Request) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        action, org = request.get("action"), request.get("orgId")
        if action != "list":
            return {"code": 99400, "msg": f"Unsupported action: {action}",
                    "requestId": request_id, "data": None}
        if not org:
            return {"code": 99400, "msg": "Invalid Argument orgId:orgId is missing",
                    "requestId": request_id, "data": None}
        if org != ENOS_ORG or request.get("assetId") != ENOS_ASSET:
            return {"code": 11404, "msg": "Device cannot be found", "requestId": request_id,
                    "data": None}
        sign = int(dt.datetime(2024, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
        return {"code": 0, "msg": "OK", "requestId": request_id, "data": [{
            "certSN": ENOS_SERIAL, "cert": self.ca.device_pem, "certStatus": 0,
            "issuer": "CN=Probe Cloud Test CA, O=Tests", "subject": "CN=probe-device",
            "signDate": sign, "effetiveDate": sign, "expireDate": sign + 365 * 86400000,
            "revoker": None, "revokerReason": None, "isEnosCert": True,
            "issueAuthority": "RSA"}]}


def enos_standin(ca: CloudCA) -> tuple[StandIn, EnosCloud]:
    cloud = EnosCloud(ca)
    return StandIn(cloud, tls=ca.server), cloud

