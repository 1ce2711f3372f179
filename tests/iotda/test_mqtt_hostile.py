"""Hostile input on IoTDA's MQTT listeners: raw bytes no real client sends, TLS handshakes with
``openssl s_client``, certificates that must not let a device in. Each is refused cleanly and
the broker goes on serving the next device; no session is left behind."""

from __future__ import annotations

import concurrent.futures
import os
import select
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkiotda.v5 import (
    CreateCommandRequest,
    DeviceCommandRequest,
    ResetFingerprint,
    ResetFingerprintRequest,
    ShowDeviceRequest,
)

from emulators.core.mqtt.packets import (
    encode_connect,
    encode_publish,
    encode_subscribe,
    remaining_length,
)
from emulators.testing import MemberHandle

from .clients import (
    CA,
    DEVICE,
    MQTT_OPTIONS,
    SECRET,
    SdkDevice,
    add_cert_device,
    device_files,
    mqtt_port,
    sdk_password,
    sdk_timestamp,
    upload_ca,
)


@pytest.fixture
def iotda(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    # A short write timeout: a device that stops reading is closed 3 s into a stuck write.
    return emulator_factory("iotda", **MQTT_OPTIONS, mqtt_write_timeout=3)


PLAIN = "camera_cam-plain"  # secure_access false: the plain listener takes it
# The API reference's error table, row IOTDA.014111 (status 200).
TIMEOUT_MSG = ("Command request timed out. Check whether the device returns a response within "
               "the specified time after receiving the request.")


def connect_packet(client_id: str, **fields: Any) -> bytes:
    """A CONNECT with a keep-alive in IoTDA's range (30..1200 s) unless ``fields`` say."""
    return encode_connect(client_id, **{"keep_alive": 120, **fields})


def good_connect() -> bytes:
    timestamp = sdk_timestamp()
    return connect_packet(f"{DEVICE}_0_1_{timestamp}", username=DEVICE,
                          password=sdk_password(SECRET, timestamp))


def exchange(iotda: MemberHandle, ca: Path, data: bytes, *, until: int | None = None) -> bytes:
    """Over TLS to the member's 8883 listener: send ``data`` and read until the broker closes
    the connection (or 3 s pass, or ``until`` bytes came)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    raw = socket.create_connection((iotda.host, mqtt_port(iotda, "mqtts")), timeout=3)
    with ctx.wrap_socket(raw) as sock:
        sock.sendall(data)
        got = b""
        while until is None or len(got) < until:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            got += chunk
        return got


def sessions(iotda: MemberHandle) -> list[str]:
    return iotda.call(lambda m: sorted(m.access.by_identity))


def still_serving(devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    device.close()


@pytest.mark.parametrize(("data", "what"), [
    (b"\x30\x05\x00\x03a/b", "PUBLISH before CONNECT"),
    (b"\x10\xff\xff\xff\xff\x7f", "remaining length of five bytes"),
    (b"\x10\x04\x00\x04MQ", "CONNECT shorter than its fields"),
    (connect_packet("x", protocol=b"HTTP"), "another protocol's name"),
    (encode_connect("", flags=0x03),
     "reserved CONNECT flag"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "an HTTP request"),
], ids=["publish-first", "long-length", "short-connect", "protocol-name", "reserved-flag",
        "http"])
def test_malformed_packets_close_that_connection_only(iotda: MemberHandle, ca_file: Path,
                                                      devices: Callable[..., SdkDevice],
                                                      data: bytes, what: str) -> None:
    assert exchange(iotda, ca_file, data) == b""  # closed with no CONNACK
    assert sessions(iotda) == []
    still_serving(devices)


def test_wrong_protocol_level_gets_connack_1(iotda: MemberHandle, ca_file: Path) -> None:
    reply = exchange(iotda, ca_file, connect_packet("x", level=5), until=4)
    assert reply == bytes([0x20, 2, 0, 1])


def test_oversized_message_closes_the_session(iotda: MemberHandle, ca_file: Path,
                                              devices: Callable[..., SdkDevice]) -> None:
    topic = f"$oc/devices/{DEVICE}/sys/messages/up"
    payload = b"x" * (1024 * 1024 + 1)  # one byte over the documented 1 MB
    publish = encode_publish(topic, payload)
    reply = exchange(iotda, ca_file, good_connect() + publish)
    assert reply == bytes([0x20, 2, 0, 0])  # accepted, then closed without a PUBACK
    entries = iotda.farm.journal(member=iotda.name, event="disconnect")
    assert entries[-1]["detail"]["reason"] == "message too large"
    assert sessions(iotda) == []
    still_serving(devices)


def test_qos2_publish_and_will_are_refused(iotda: MemberHandle, ca_file: Path) -> None:
    topic = f"$oc/devices/{DEVICE}/sys/messages/up"
    reply = exchange(iotda, ca_file, good_connect() + encode_publish(topic, b"{}", 2, 1))
    assert reply == bytes([0x20, 2, 0, 0])  # QoS 2: no PUBREC, the connection closed
    assert sessions(iotda) == []


def test_subscribing_to_another_devices_topics_is_refused(iotda: MemberHandle,
                                                          ca_file: Path) -> None:
    subscribe = encode_subscribe(7, ("$oc/devices/camera_cam-plain/sys/#", 1),
                                 (f"$oc/devices/{DEVICE}/sys/#", 1))
    reply = exchange(iotda, ca_file, good_connect() + subscribe, until=4 + 6)
    assert reply == bytes([0x20, 2, 0, 0]) + bytes([0x90, 4, 0, 7, 0x80, 1])


def openssl_connect(iotda: MemberHandle, ca_file: Path, *args: str,
                    data: bytes = b"") -> tuple[bytes, bytes]:
    """``openssl s_client`` (TLS 1.2, the CA file, optionally ``-cert``/``-key``) sends
    ``data``; returns (the first 4 bytes the broker answered, or fewer when it closed,
    openssl's stderr)."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"{iotda.host}:{mqtt_port(iotda, 'mqtts')}",
         "-CAfile", str(ca_file), "-tls1_2", "-quiet", "-verify_return_error", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    got = b""
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while len(got) < 4 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4 - len(got))
                if not chunk:
                    break
                got += chunk
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return got, err


def test_tls_without_a_client_certificate_is_served_and_secret_devices_get_in(
        iotda: MemberHandle, ca_file: Path) -> None:
    reply, _ = openssl_connect(iotda, ca_file, data=good_connect())
    assert reply == bytes([0x20, 2, 0, 0])  # the CONNACK, through openssl


def test_certificate_device_without_a_certificate_over_openssl_is_connack_5(
        iotda: MemberHandle, ca_file: Path, client: Any) -> None:
    device_id = add_cert_device(client, "bare-1")
    timestamp = sdk_timestamp()
    reply, _ = openssl_connect(iotda, ca_file, data=connect_packet(
        f"{device_id}_0_1_{timestamp}", username=device_id))
    assert reply == bytes([0x20, 2, 0, 5])


def test_certificate_of_a_ca_never_uploaded_fails_the_handshake(
        iotda: MemberHandle, ca_file: Path, client: Any, tmp_path: Path,
        devices: Callable[..., SdkDevice]) -> None:
    upload_ca(client, CA("Uploaded CA"))
    stranger = CA("Stranger CA")
    device_id = add_cert_device(client, "stranger-1")
    cert_file, key_file, _ = device_files(stranger, tmp_path, "stranger-1", days=30)
    reply, err = openssl_connect(iotda, ca_file, "-cert", str(cert_file), "-key",
                                 str(key_file), data=connect_packet(
                                     f"{device_id}_0_0_{sdk_timestamp()}", username=device_id))
    # No CONNACK: the server ends the handshake when the client's certificate chains to none
    # of its CAs (asyncio closes the connection without sending the alert).
    assert reply == b""
    assert b"eof" in err.lower() or b"alert" in err.lower()
    assert sessions(iotda) == []
    still_serving(devices)


def test_expired_and_revoked_certificates_are_refused(
        iotda: MemberHandle, ca_file: Path, client: Any, tmp_path: Path,
        devices: Callable[..., SdkDevice]) -> None:
    import datetime as dt

    ca = CA("Revocation CA")
    upload_ca(client, ca)
    expired_id = add_cert_device(client, "old-1")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    old_cert, old_key, _ = device_files(ca, tmp_path, "old-1", days=30, not_before=long_ago)
    # Expired by the real clock too: OpenSSL's own date check is off, the farm clock decides.
    assert devices(expired_id, cert_file=old_cert, key_file=old_key).connect() == 5
    revoked_id = add_cert_device(client, "rev-1")
    cert_file, key_file, _ = device_files(ca, tmp_path, "rev-1", days=30)
    first = devices(revoked_id, cert_file=cert_file, key_file=key_file)
    assert first.connect() == 0
    first.close()
    # "Revoking" the recorded fingerprint: ResetFingerprint to another certificate's.
    _, _, other = device_files(ca, tmp_path, "rev-other", days=30)
    client.reset_fingerprint(ResetFingerprintRequest(
        device_id=revoked_id, body=ResetFingerprint(fingerprint=other, force_disconnect=True)))
    assert devices(revoked_id, cert_file=cert_file, key_file=key_file).connect() == 5
    time.sleep(0.1)
    assert sessions(iotda) == []


def test_garbage_after_a_good_connect_ends_the_session_cleanly(
        iotda: MemberHandle, ca_file: Path, devices: Callable[..., SdkDevice]) -> None:
    reply = exchange(iotda, ca_file, good_connect() + b"\xf0\x00")  # packet type 15
    assert reply == bytes([0x20, 2, 0, 0])
    reason = iotda.farm.journal(member=iotda.name, event="disconnect")[-1]["detail"]["reason"]
    assert reason.startswith("malformed")
    assert sessions(iotda) == []
    still_serving(devices)


# -- the broker's own refusals, journalled ---------------------------------------------------

def test_mosquitto_pub_mqtt5_is_refused_with_connack_1_and_journalled(iotda: MemberHandle
                                                                       ) -> None:
    """IoTDA documents MQTT 5.0 (its features on the enterprise edition only); the farm
    speaks 3.1.1 and 3.1 and answers MQTT 5 as a 3.1.1 server must [MQTT-3.1.2-2]."""
    timestamp = sdk_timestamp()
    login = ["-h", iotda.host, "-p", str(mqtt_port(iotda, "mqtt")),
             "-i", f"{PLAIN}_0_1_{timestamp}", "-u", PLAIN,
             "-P", sdk_password(SECRET, timestamp), "-k", "120",
             "-t", f"$oc/devices/{PLAIN}/sys/messages/up", "-m", "{}", "-q", "1"]
    done = subprocess.run(["mosquitto_pub", "-V", "mqttv5", *login], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.stderr.startswith("Connection error: Unsupported Protocol Version.")
    refused = iotda.farm.journal(member=iotda.name, event="refused")
    assert [(e["protocol"], e["status"], e["detail"]["protocol_level"],
             e["detail"]["client_id"], e["user"]) for e in refused] == [
        ("mqtt", 1, 5, f"{PLAIN}_0_1_{timestamp}", PLAIN)]
    assert refused[0]["detail"]["reason"].startswith("unacceptable protocol version: MQTT "
                                                     "level 5 (MQTT 5.0)")
    # The same login in 3.1.1 gets in and its message is taken.
    done = subprocess.run(["mosquitto_pub", "-V", "mqttv311", *login], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert [e["path"] for e in iotda.farm.journal(member=iotda.name, event="publish")] == [
        f"$oc/devices/{PLAIN}/sys/messages/up"]


def test_oversized_connect_is_refused_unread_and_journalled(iotda: MemberHandle,
                                                            ca_file: Path) -> None:
    header = bytes([0x10]) + remaining_length(1024 * 1024)  # 1 MB declared, none sent
    assert exchange(iotda, ca_file, header) == b""
    entry = iotda.farm.journal(member=iotda.name, event="refused")[-1]
    assert (entry["protocol"], entry.get("status"), entry["detail"]["code"],
            entry["detail"]["reason"]) == (
        "mqtts", None, None, "CONNECT too large: 1048576 bytes declared, at most 8192 are read "
                       "before authentication")


def test_unsubscribe_without_a_topic_closes_the_session(iotda: MemberHandle, ca_file: Path,
                                                        devices: Callable[..., SdkDevice]
                                                        ) -> None:
    """MQTT-3.10.3-2: an UNSUBSCRIBE with no topic filter is a protocol violation: closed,
    not answered with an UNSUBACK."""
    reply = exchange(iotda, ca_file, good_connect() + bytes([0xA2, 2, 0, 1]))
    assert reply == bytes([0x20, 2, 0, 0])
    entry = iotda.farm.journal(member=iotda.name, event="disconnect")[-1]
    assert entry["detail"]["reason"] == "malformed: UNSUBSCRIBE without a topic filter"
    still_serving(devices)


# -- a device that stops reading ---------------------------------------------------------------

def test_a_device_that_stops_reading_gets_014111_and_its_session_closed(
        iotda: MemberHandle, make_client: Callable[..., Any]) -> None:
    """A device subscribes to its commands, then reads nothing (a small receive buffer). Two
    commands of 1.9 MB each, sent at once, fill every buffer (the kernel's send buffer takes
    about 3 MB on loopback). Both CreateCommands answer IOTDA.014111 at the command timeout
    (2 s here), not at the REST request's deadline; the stuck session is closed at the write
    timeout and journalled, and the device shows OFFLINE."""
    timestamp = sdk_timestamp()
    clients = [make_client(), make_client()]

    def command(client: Any) -> Any:
        return client.create_command(CreateCommandRequest(
            device_id=PLAIN, body=DeviceCommandRequest(
                service_id="Ptz", command_name="move", paras={"blob": "x" * 1_900_000})))

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect((iotda.host, mqtt_port(iotda, "mqtt")))
        sock.sendall(connect_packet(f"{PLAIN}_0_1_{timestamp}", username=PLAIN,
                                    password=sdk_password(SECRET, timestamp)))
        assert sock.recv(4) == bytes([0x20, 2, 0, 0])
        sock.sendall(encode_subscribe(1, (f"$oc/devices/{PLAIN}/sys/commands/#", 1)))
        assert sock.recv(5) == bytes([0x90, 3, 0, 1, 1])
        # From here the device reads nothing.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(command, clients))
        assert [(a.error_code, a.error_msg) for a in answers] == [
            ("IOTDA.014111", TIMEOUT_MSG)] * 2
        entry = iotda.farm.wait_for(member=iotda.name, event="disconnect", timeout=30)
        assert entry["detail"]["reason"].startswith("write timeout: ")
        assert entry["detail"]["identity"] == PLAIN
        assert clients[0].show_device(ShowDeviceRequest(device_id=PLAIN)).status == "OFFLINE"
    assert sessions(iotda) == []
