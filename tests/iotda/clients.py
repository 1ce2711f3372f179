"""Helpers for the IoTDA tests: the accounts and options, raw HTTP with curl, real X.509."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import queue
import ssl
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from huaweicloudsdkiotda.v5 import (
    AddCertificateRequest,
    AddDevice,
    AddDeviceRequest,
    AuthInfo,
    CheckCertificateRequest,
    CreateCertificateDTO,
    IoTDAClient,
    VerifyCertificateDTO,
)
from paho.mqtt.enums import CallbackAPIVersion

from emulators import pki
from emulators.testing import MemberHandle, RemoteMember, ShardedFarm
from tests.mqtt_clients import close_paho

AK = "IOTDAEMULATORAK00001"
SK = "IotdaEmulatorSecretKey000000000000000001"
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OTHER_AK = "OTHERACCOUNTAK000002"
OTHER_SK = "OtherAccountSecretKey0000000000000000002"
OTHER_PROJECT = "ffeeddccbbaa99887766554433221100"
TOKEN = "MIIEmulatorTokenForTests"
INSTANCE = "9c1a5f2e-7b3d-4e6f-8a9b-0c1d2e3f4a5b"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "iotda"


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


OPTIONS: dict[str, Any] = {
    "credentials": [
        {"ak": AK, "sk": SK, "project_id": PROJECT},
        {"ak": OTHER_AK, "sk": OTHER_SK, "project_id": OTHER_PROJECT},
    ],
    "tokens": [{"token": TOKEN, "project_id": PROJECT}],
    "instances": [INSTANCE],
}


ClientFactory = Callable[..., IoTDAClient]


# -- raw HTTP --------------------------------------------------------------------------------------

def curl(url: str, *args: str) -> tuple[int, dict[str, str], Any]:
    """curl with the test token; returns status, headers (lower-case names) and JSON body."""
    done = subprocess.run(
        ["curl", "-sS", "-D", "-", "-H", f"X-Auth-Token: {TOKEN}", *args, url],
        capture_output=True, text=True, timeout=20, check=True)
    # text mode turns the header block's CRLFs into plain newlines
    head, _, body = done.stdout.partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


# -- certificates ---------------------------------------------------------------------------------

class CA:
    """A CA made in-process (the openssl-CLI flow lives in test_device_cas.py)."""

    def __init__(self, cn: str = "Device Root CA", *, key: pki.PrivateKey | None = None) -> None:
        self.key = key or pki.ec_key()
        self.cert = pki.make_ca(pki.name(CN=cn, O="Emulator Farm", C="CN"), self.key)
        self.pem = pki.cert_pem(self.cert)

    def sign(self, cn: str, *, key: pki.PrivateKey | None = None) -> x509.Certificate:
        subject_key = key or pki.ec_key()
        return pki.issue(subject_key.public_key(), pki.name(CN=cn), self.cert, self.key, days=30)


def server_identity(cn: str = "iotda-app.example.com", *, days: float = 365
                    ) -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.ec_key()
    issuer = CA("Huawei Cloud Core Network Product CA")
    start = dt.datetime(2025, 12, 12, 12, 12, 12, tzinfo=dt.UTC)
    cert = pki.issue(key.public_key(), pki.name(CN=cn, O="Huawei", C="CN"), issuer.cert,
                     issuer.key, not_before=start, days=days, server=True,
                     dns_names=[cn])
    return cert, key


# -- a device over MQTT ---------------------------------------------------------------------------

def sdk_password(secret: str, timestamp: str) -> str:
    """iot_device_sdk_python/utils/iot_util.py: ``sha256_mac(secret, timestamp)``."""
    return hmac.new(timestamp.encode("utf-8"), secret.encode("utf-8"),
                    digestmod=hashlib.sha256).hexdigest()


def sdk_timestamp(when: float | None = None) -> str:
    """``get_timestamp()``: the UTC hour, ``time.strftime("%Y%m%d%H", time.gmtime(...))``."""
    return time.strftime("%Y%m%d%H", time.gmtime(time.time() if when is None else when))


CONNACK_BY_NAME = {"Success": 0, "Unsupported protocol version": 1,
                   "Client identifier not valid": 2, "Server unavailable": 3,
                   "Bad user name or password": 4, "Not authorized": 5}


class SdkDevice:
    """paho-mqtt configured exactly as the vendor's Python device SDK configures it
    (``iot_device_sdk_python/transport/mqtt/mqtt_connection.py``, ``__connect`` and
    ``_ssl_connect_config``): client id ``{device_id}_0_{check_timestamp}_{YYYYMMDDHH}``,
    ``clean_session=True``, user name the device id, password the HMAC for a secret device and
    none for a certificate device, TLS 1.2 with the CA file (plus the device's certificate and
    key), ``cert_reqs=CERT_OPTIONAL``, no host name check, keep-alive 120 s. The SDK turns TLS
    on when the port is 8883; ``tls`` says the same for a test listener on another port."""

    def __init__(self, device_id: str, host: str, port: int, *, secret: str | None = None,
                 ca_file: Path | None = None, cert_file: Path | None = None,
                 key_file: Path | None = None, tls: bool | None = None,
                 check_timestamp: str = "1", timestamp: str | None = None,
                 client_id: str | None = None, username: str | None = None,
                 keep_alive: int = 120) -> None:
        self.device_id = device_id
        self.host, self.port, self.keep_alive = host, port, keep_alive
        timestamp = timestamp or sdk_timestamp()
        self.client_id = client_id or f"{device_id}_0_{check_timestamp}_{timestamp}"
        self.client = mqtt.Client(client_id=self.client_id, clean_session=True,
                                  callback_api_version=CallbackAPIVersion.VERSION2)
        self.client._reconnect_on_failure = False  # the SDK sets it so, and reconnects itself
        self.client.max_inflight_messages_set(20)
        user = device_id if username is None else username
        if secret is not None:
            self.client.username_pw_set(user, sdk_password(secret, timestamp))
        else:
            self.client.username_pw_set(user)
        if tls if tls is not None else port == 8883:
            # The SDK passes ssl.PROTOCOL_TLSv1_2, which Python 3.11 reports deprecated.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.client.tls_set(ca_certs=str(ca_file) if ca_file else None,
                                    certfile=str(cert_file) if cert_file else None,
                                    keyfile=str(key_file) if key_file else None,
                                    cert_reqs=ssl.CERT_OPTIONAL,
                                    tls_version=ssl.PROTOCOL_TLSv1_2)
            self.client.tls_insecure_set(True)
        self.connacks: queue.Queue[Any] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.acks: queue.Queue[int] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: self.connacks.put(rc)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.put(mid)
        self.started = False

    def connect(self, timeout: float = 10) -> int:
        """Connect and return the CONNACK return code (an int, as the SDK's on_connect
        compares it)."""
        self.client.connect(self.host, self.port, keepalive=self.keep_alive)
        self.client.loop_start()
        self.started = True
        rc = self.connacks.get(timeout=timeout)
        # paho 2 reports an MQTT 3.1.1 CONNACK code as its MQTT 5 reason code; back to the
        # byte on the wire (table 3.1) by name.
        return CONNACK_BY_NAME[rc.getName()]

    def publish(self, topic: str, doc: Any, qos: int = 1) -> mqtt.MQTTMessageInfo:
        payload = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
        return self.client.publish(topic, payload, qos)

    def report(self, services: list[dict[str, Any]]) -> None:
        """DeviceClient.report_properties: ``{"services": [...]}`` on sys/properties/report,
        and the PUBACK waited for."""
        info = self.publish(f"$oc/devices/{self.device_id}/sys/properties/report",
                            {"services": services})
        info.wait_for_publish(timeout=10)

    def next_message(self, timeout: float = 10) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        close_paho(self.client, started=self.started)


# -- the MQTT tests' member ------------------------------------------------------------------------

SECRET = "CameraSecret01"
DEVICE = "camera_cam-1"
OFFLINE = (403, "IOTDA.014016", "Operation not allowed. The device is not online.")
MQTT_OPTIONS: dict[str, Any] = {
    **OPTIONS,
    "products": [{"product_id": "camera", "name": "Camera"}],
    "devices": [
        {"node_id": "cam-1", "product_id": "camera",
         "auth_info": {"auth_type": "SECRET", "secret": SECRET}},
        {"node_id": "cam-plain", "product_id": "camera",
         "auth_info": {"auth_type": "SECRET", "secret": SECRET, "secure_access": False}},
    ],
    "command_timeout": 2,
}


def mqtt_port(iotda: MemberHandle, label: str) -> int:
    return int(iotda.urls[label].rsplit(":", 1)[1])


def wait_for(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def upload_ca(client: Any, ca: CA, *, verified: bool = True) -> str:
    """AddCertificate, and (``verified``) CheckCertificate with the proof seed 003 asks for."""
    record = client.add_certificate(AddCertificateRequest(body=CreateCertificateDTO(
        content=ca.pem)))
    if verified:
        proof = pki.cert_pem(ca.sign(record.verify_code))
        client.check_certificate(CheckCertificateRequest(
            certificate_id=record.certificate_id, action_id="verify",
            body=VerifyCertificateDTO(verify_content=proof)))
    return str(record.certificate_id)


def device_files(ca: CA, tmp_path: Path, name: str, **kwargs: Any) -> tuple[Path, Path, str]:
    """A device certificate of ``ca`` and its key as files; and its SHA-1 fingerprint."""
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN=name), ca.cert, ca.key, **kwargs)
    cert_file = tmp_path / f"{name}.crt"
    key_file = tmp_path / f"{name}.key"
    cert_file.write_text(pki.cert_pem(cert))
    key_file.write_text(pki.key_pem(key))
    return cert_file, key_file, cert.fingerprint(hashes.SHA1()).hex()


def add_cert_device(client: Any, node_id: str, fingerprint: str | None = None) -> str:
    made = client.add_device(AddDeviceRequest(body=AddDevice(
        node_id=node_id, product_id="camera",
        auth_info=AuthInfo(auth_type="CERTIFICATES", fingerprint=fingerprint))))
    return str(made.device_id)


def fresh_member(farm: ShardedFarm, name: str = "iotda") -> RemoteMember:
    """A module farm's member back at its scenario state (no devices added, no sessions, no
    rules), the farm clock at real time, no fault rules, an empty journal."""
    farm.reset_clock()
    farm.clear_faults()
    farm.clear_journal()
    handle = farm[name]
    handle.reset()
    return handle
