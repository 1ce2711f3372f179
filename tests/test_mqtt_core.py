"""The farm's MQTT broker machinery (emulators/core/mqtt/) driven by paho-mqtt, the client
the vendor device SDKs wrap, and by raw sockets for what no real client sends."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import queue
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import gmqtt
import paho.mqtt.client as mqtt
import pytest

from emulators import pki
from emulators.core.mqtt import packets
from emulators.core.mqtt.broker import MqttListener
from emulators.core.mqtt.hooks import Action, ConnectInfo, MqttHooks, Refusal
from emulators.core.mqtt.packets import encode_connect, encode_subscribe, encode_unsubscribe
from emulators.core.mqtt.session import MqttSession
from tests.mqtt_clients import close_paho


class Recorder(MqttHooks):
    """Hooks that answer what a test set and remember what they saw."""

    def __init__(self) -> None:
        self.code = packets.ACCEPTED
        self.refused: set[str] = set()
        self.connects: list[ConnectInfo] = []
        self.published: list[tuple[str, str, bytes, int]] = []
        self.subscribed: list[tuple[str, str, int]] = []
        self.disconnects: list[tuple[str, str]] = []
        self.refusals: list[Refusal] = []

    async def authenticate(self, info: ConnectInfo) -> int:
        self.connects.append(info)
        return self.code

    async def authorize(self, session: MqttSession, action: Action, topic: str) -> bool:
        return topic not in self.refused

    async def on_publish(self, session: MqttSession, topic: str, payload: bytes, qos: int,
                         retain: bool) -> None:
        self.published.append((session.client_id, topic, payload, qos))

    async def on_subscribe(self, session: MqttSession, topic_filter: str, qos: int) -> None:
        self.subscribed.append((session.client_id, topic_filter, qos))

    async def on_disconnect(self, session: MqttSession, reason: str) -> None:
        self.disconnects.append((session.client_id, reason))

    async def on_refused(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


async def eventually(check: Callable[[], Any]) -> None:
    """Wait up to 5 s for ``check()`` to hold."""
    for _ in range(250):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in 5 s")


class Paho:
    """A paho-mqtt client as the vendor SDKs configure it (MQTT 3.1.1, clean session), whose
    network loop runs in paho's own thread; no automatic reconnect, so a displaced client
    stays displaced."""

    def __init__(self, client_id: str, *, username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=True)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.connacks: queue.Queue[Any] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnected: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: self.connacks.put(rc)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_disconnect = self._on_disconnect

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        self.disconnected.put(rc)
        client.disconnect()  # stops paho's loop from reconnecting

    async def connect(self, port: int, keepalive: int = 60) -> Any:
        """Connect, start the network loop and return the CONNACK's reason code."""
        await asyncio.to_thread(self.client.connect, "127.0.0.1", port, keepalive)
        self.client.loop_start()
        return await asyncio.to_thread(self.connacks.get, timeout=5)

    async def next(self, box: queue.Queue[Any]) -> Any:
        return await asyncio.to_thread(box.get, timeout=5)

    def close(self) -> None:
        close_paho(self.client)


@contextlib.asynccontextmanager
async def running(hooks: MqttHooks, *, tls: Callable[[], ssl.SSLContext] | None = None,
                  **limits: Any) -> AsyncIterator[MqttListener]:
    """A listener on a free port; ``limits`` set its documented attributes before start."""
    listener = MqttListener(hooks, "127.0.0.1", 0, tls=tls)
    for name, value in limits.items():
        assert hasattr(listener, name)
        setattr(listener, name, value)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


@contextlib.asynccontextmanager
async def paho(client_id: str, **kwargs: Any) -> AsyncIterator[Paho]:
    client = Paho(client_id, **kwargs)
    try:
        yield client
    finally:
        await asyncio.to_thread(client.close)


def raw_exchange(port: int, data: bytes, *, until: int | None = None) -> bytes:
    """Send ``data`` and read until the broker closes the connection (or 3 s pass, or
    ``until`` bytes came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(data)
        got = b""
        while until is None or len(got) < until:
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
        return got


# -- plain connections ---------------------------------------------------------------------

async def test_plain_connect_reaches_the_hook_with_what_paho_sent() -> None:
    hooks = Recorder()
    async with running(hooks) as listener, paho("dev-1_0_0_2024010100", username="dev-1",
                                                 password="s3cret") as client:
        rc = await client.connect(listener.port, keepalive=120)
        assert rc == 0
        info = hooks.connects[0]
        assert (info.client_id, info.username, info.password, info.keep_alive,
                info.clean_session, info.protocol_level, info.tls, info.peer_certificate) == (
            "dev-1_0_0_2024010100", "dev-1", b"s3cret", 120, True, 4, False, None)
        assert set(listener.sessions) == {"dev-1_0_0_2024010100"}


@pytest.mark.parametrize(("code", "paho_name"), [
    (packets.ACCEPTED, "Success"),
    (packets.BAD_CREDENTIALS, "Bad user name or password"),
    (packets.NOT_AUTHORIZED, "Not authorized"),
], ids=["accepted-0", "bad-credentials-4", "not-authorized-5"])
async def test_connack_code_comes_from_the_hook(code: int, paho_name: str) -> None:
    hooks = Recorder()
    hooks.code = code
    async with running(hooks) as listener:
        async with paho("dev-1") as client:
            rc = await client.connect(listener.port)
            assert rc.getName() == paho_name
        # The exact bytes on the wire: CONNACK, length 2, session present 0, the code.
        reply = await asyncio.to_thread(raw_exchange, listener.port, encode_connect("raw"),
                                        until=4)
        assert reply == bytes([0x20, 2, 0, code])
        if code != packets.ACCEPTED:
            assert "raw" not in listener.sessions


async def test_publish_reaches_on_publish_and_qos1_is_acknowledged() -> None:
    hooks = Recorder()
    async with running(hooks) as listener, paho("dev-1") as client:
        await client.connect(listener.port)
        info = client.client.publish("$oc/devices/dev-1/sys/properties/report", b'{"a":1}', qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)
        assert info.is_published()  # the PUBACK came back
        client.client.publish("custom/topic", b"zero", qos=0)
        await eventually(lambda: len(hooks.published) == 2)
        assert hooks.published == [
            ("dev-1", "$oc/devices/dev-1/sys/properties/report", b'{"a":1}', 1),
            ("dev-1", "custom/topic", b"zero", 0)]


async def test_refused_publish_and_subscribe() -> None:
    hooks = Recorder()
    hooks.refused = {"$oc/devices/other/sys/messages/up", "$oc/devices/other/#"}
    async with running(hooks) as listener, paho("dev-1") as client:
        await client.connect(listener.port)
        info = client.client.publish("$oc/devices/other/sys/messages/up", b"x", qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)  # acknowledged, then dropped
        granted: queue.Queue[Any] = queue.Queue()
        client.client.on_subscribe = lambda c, u, mid, codes, p: granted.put(codes)
        client.client.subscribe([("$oc/devices/other/#", 1), ("$oc/devices/dev-1/#", 1)])
        codes = await client.next(granted)
        assert [c.value for c in codes] == [0x80, 1]
        assert hooks.published == []
        assert hooks.subscribed == [("dev-1", "$oc/devices/dev-1/#", 1)]
        assert listener.sessions["dev-1"].subscribed("$oc/devices/dev-1/sys/commands/x")


async def test_downstream_send_reaches_a_client_that_did_not_subscribe() -> None:
    hooks = Recorder()
    async with running(hooks) as listener, paho("dev-1") as client:
        await client.connect(listener.port)
        topic = "$oc/devices/dev-1/sys/commands/request_id=42"
        await listener.send("dev-1", topic, b'{"command_name":"reboot"}', qos=1)  # PUBACKed
        message = await client.next(client.messages)
        assert (message.topic, message.payload, message.qos) == (
            topic, b'{"command_name":"reboot"}', 1)
        assert not listener.sessions["dev-1"].subscribed(topic)
        with pytest.raises(LookupError):
            await listener.send("nobody", topic, b"")


async def test_one_session_per_client_id_the_second_displaces_the_first() -> None:
    hooks = Recorder()
    async with running(hooks) as listener, paho("dev-1") as first, paho("dev-1") as second:
        await first.connect(listener.port)
        old = listener.sessions["dev-1"]
        await second.connect(listener.port)
        await first.next(first.disconnected)  # the broker closed the first connection
        await eventually(lambda: hooks.disconnects == [("dev-1", "displaced")])
        assert listener.sessions["dev-1"] is not old and not old.connected
        await listener.send("dev-1", "down", b"to the second", qos=1)
        assert (await second.next(second.messages)).payload == b"to the second"
        assert first.messages.empty()


async def test_oversized_message_closes_the_connection() -> None:
    hooks = Recorder()
    async with running(hooks) as listener, paho("dev-1") as client:
        listener.max_message = 1000
        await client.connect(listener.port)
        first = client.client.publish("up", b"x" * 1000, qos=1)
        await asyncio.to_thread(first.wait_for_publish, 5)  # the broker runs on this loop
        assert first.is_published()  # at the limit: acknowledged
        client.client.publish("up", b"x" * 1001, qos=1)
        await client.next(client.disconnected)
        await eventually(lambda: hooks.disconnects == [("dev-1", "message too large")])
        assert [len(p) for _, _, p, _ in hooks.published] == [1000]


async def test_keep_alive_timeout_ends_a_silent_session() -> None:
    hooks = Recorder()
    async with running(hooks) as listener:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
            sock.sendall(encode_connect("quiet", keep_alive=1))
            assert await asyncio.to_thread(sock.recv, 4) == bytes([0x20, 2, 0, 0])
            await eventually(lambda: hooks.disconnects == [("quiet", "keep-alive timeout")])
            assert await asyncio.to_thread(sock.recv, 4) == b""  # after 1.5 x keep-alive


# -- hostile bytes -------------------------------------------------------------------------

PUBLISH_QOS3 = bytes([0x36, 5, 0, 1, ord("t"), 0, 1])
MALFORMED = [
    pytest.param(b"\xff\xff\xff\xff\xff\xff", None, id="garbage-before-connect"),
    pytest.param(bytes([0x30, 3, 0, 1, ord("t")]), None, id="publish-before-connect"),
    pytest.param(bytes([0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), None, id="length-of-5-bytes"),
    pytest.param(bytes([0x10, 0xFF, 0xFF, 0xFF, 0x7F]), None, id="connect-of-256-MB-declared"),
    pytest.param(encode_connect("x", protocol=b"HTTP"), None, id="unknown-protocol-name"),
    pytest.param(encode_connect("x", flags=0x03), None, id="reserved-connect-flag"),
    pytest.param(encode_connect("x")[:-3], None, id="truncated-connect"),
    pytest.param(encode_connect("\udcff".encode("utf-8", "surrogatepass")),
                 None, id="client-id-not-utf8"),
    pytest.param(encode_connect("x", tail=b"junk"), None, id="bytes-after-connect"),
    pytest.param(encode_connect("s") + bytes([0x80, 5, 0, 1, 0, 1, ord("t")]), "malformed",
                 id="subscribe-with-wrong-flags"),
    pytest.param(encode_connect("s") + bytes([0x82, 2, 0, 1]), "malformed",
                 id="subscribe-without-topic"),
    pytest.param(encode_connect("s") + PUBLISH_QOS3, "malformed", id="publish-qos-3"),
    pytest.param(encode_connect("s") + bytes([0x32, 5, 0, 1, ord("#"), 0, 1]), "malformed",
                 id="publish-to-wildcard"),
    pytest.param(encode_connect("s") + bytes([0x34, 5, 0, 1, ord("t"), 0, 1]), "QoS 2 refused",
                 id="publish-qos-2"),
    pytest.param(encode_connect("s") + bytes([0x20, 2, 0, 0]), "malformed",
                 id="connack-from-a-client"),
    pytest.param(encode_connect("s") + bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]),
                 "message too large", id="publish-of-256-MB-declared"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
async def test_malformed_bytes_close_that_connection_only(data: bytes, reason: str | None) -> None:
    hooks = Recorder()
    async with running(hooks) as listener:
        reply = await asyncio.to_thread(raw_exchange, listener.port, data)
        assert reply in (b"", bytes([0x20, 2, 0, 0]))  # nothing, or the CONNACK of a good CONNECT
        if reason is None:
            assert hooks.connects == []
        else:
            await eventually(lambda: len(hooks.disconnects) == 1)
            assert hooks.disconnects[0][1].startswith(reason)
            assert listener.sessions == {}
        async with paho("after") as client:  # the listener still serves
            assert await client.connect(listener.port) == 0


async def test_unsupported_protocol_level_gets_connack_1() -> None:
    async with running(Recorder()) as listener:
        reply = await asyncio.to_thread(raw_exchange, listener.port, encode_connect("x", level=5))
        assert reply == bytes([0x20, 2, 0, 1])


# Packets MQTT 3.1.1 says close the connection, each after a good CONNECT; the id names the
# normative statement. Before, each was answered (UNSUBACK, SUBACK 0x80, PINGRESP) or taken.
VIOLATIONS = [
    pytest.param(bytes([0xA2, 2, 0, 1]), id="MQTT-3.10.3-2-unsubscribe-without-topic"),
    pytest.param(encode_subscribe(1, ("t", 3)), id="MQTT-3.8.3-4-subscribe-qos-3"),
    pytest.param(bytes([0xC1, 0]), id="MQTT-2.2.2-2-pingreq-reserved-flags"),
    pytest.param(bytes([0x42, 2, 0, 1]), id="MQTT-2.2.2-2-puback-reserved-flags"),
    pytest.param(bytes([0xE2, 0]), id="MQTT-3.14.1-1-disconnect-reserved-flags"),
    pytest.param(encode_subscribe(0, ("t", 1)), id="MQTT-2.3.1-1-subscribe-packet-id-0"),
    pytest.param(encode_unsubscribe(0, "t"), id="MQTT-2.3.1-1-unsubscribe-packet-id-0"),
    pytest.param(bytes([0x32, 5, 0, 1, ord("t"), 0, 0]), id="MQTT-2.3.1-1-publish-packet-id-0"),
    pytest.param(bytes([0x38, 4, 0, 1, ord("t"), ord("x")]), id="MQTT-3.3.1-2-dup-on-qos-0"),
]


@pytest.mark.parametrize("packet", VIOLATIONS)
async def test_protocol_violations_close_the_connection_unanswered(packet: bytes) -> None:
    """MQTT-4.8.0-1: a protocol violation closes the network connection; nothing answers it,
    the hooks see none of it, and the session ends as ``malformed: ...``."""
    hooks = Recorder()
    async with running(hooks) as listener:
        reply = await asyncio.to_thread(raw_exchange, listener.port, encode_connect("v") + packet)
        assert reply == bytes([0x20, 2, 0, 0])  # the CONNACK, then the close
        await eventually(lambda: len(hooks.disconnects) == 1)
        assert hooks.disconnects[0][0] == "v"
        assert hooks.disconnects[0][1].startswith("malformed: ")
        assert hooks.published == [] and hooks.subscribed == []
        async with paho("after") as client:
            assert await client.connect(listener.port) == 0


async def test_password_without_a_user_name_closes_without_a_connack() -> None:
    """MQTT-3.1.2-22 (user name flag 0: password flag 0), and MQTT-3.1.4-1: a CONNECT that
    does not conform is closed without a CONNACK; the refusal is reported."""
    hooks = Recorder()
    async with running(hooks) as listener:
        reply = await asyncio.to_thread(raw_exchange, listener.port, encode_connect(
            "p", flags=0x42, tail=b"\x00\x06s3cret"))
        assert reply == b""
        await eventually(lambda: hooks.refusals)
        assert [(r.code, r.reason) for r in hooks.refusals] == [
            (None, "malformed: password without a user name")]
        assert hooks.connects == []


# -- protocol levels -----------------------------------------------------------------------

def mosquitto_pub(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=30, check=False)


async def test_mosquitto_pub_in_mqtt5_mode_hears_unsupported_protocol_version() -> None:
    """MQTT-3.1.2-2: CONNACK 0x01 and a close for a protocol level not served. Before, the
    MQTT 5 CONNECT was parsed as 3.1.1, failed on its properties, and the client got
    silence."""
    hooks = Recorder()
    async with running(hooks) as listener:
        done = await asyncio.to_thread(mosquitto_pub, listener.port, "-V", "mqttv5",
                                       "-i", "dev-5", "-u", "user-5", "-t", "up", "-m", "x")
        # What mosquitto_pub 2.0.11 prints for a 3.1.1 CONNACK 1 to its MQTT 5 CONNECT.
        assert done.stderr.startswith("Connection error: Unsupported Protocol Version. Try "
                                      "connecting to an MQTT v5 broker, or use MQTT v3.x mode.")
        assert done.returncode != 0
        await eventually(lambda: hooks.refusals)
        refusal = hooks.refusals[0]
        assert (refusal.code, refusal.protocol, refusal.protocol_level, refusal.client_id,
                refusal.username) == (packets.UNACCEPTABLE_PROTOCOL, "MQTT", 5, "dev-5", "user-5")
        assert refusal.reason.startswith("unacceptable protocol version: MQTT level 5 (MQTT 5.0)")
        assert hooks.connects == [] and listener.sessions == {}


async def test_gmqtt_falls_back_from_mqtt5_then_publishes_and_receives_as_311() -> None:
    """gmqtt speaks MQTT 5 by default; on CONNACK 1 it connects again as 3.1.1."""
    hooks = Recorder()
    async with running(hooks) as listener:
        client = gmqtt.Client("gm-1")
        client.set_config({"reconnect_delay": 0})  # its retry after the downgrade, at once
        received: asyncio.Future[tuple[str, bytes, int]] = (
            asyncio.get_running_loop().create_future())

        def on_message(c: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
            if not received.done():
                received.set_result((topic, payload, qos))
            return 0

        client.on_message = on_message
        await asyncio.wait_for(client.connect("127.0.0.1", listener.port), 30)
        try:
            assert [(r.code, r.protocol_level) for r in hooks.refusals] == [(1, 5)]
            assert [(i.client_id, i.protocol_level) for i in hooks.connects] == [("gm-1", 4)]
            client.publish("up/gm", b"from gmqtt", qos=1)
            await eventually(lambda: hooks.published)
            assert hooks.published == [("gm-1", "up/gm", b"from gmqtt", 1)]
            await listener.send("gm-1", "down/gm", b"to gmqtt", qos=1)  # its PUBACK came
            assert await asyncio.wait_for(received, 10) == ("down/gm", b"to gmqtt", 1)
        finally:
            await client.disconnect()


async def test_mqtt31_is_served_as_311_unless_switched_off() -> None:
    """MQIsdp level 3 (MQTT 3.1, which IoTDA documents) is served; a listener whose
    ``protocol_levels`` leaves it out answers it CONNACK 1."""
    hooks = Recorder()
    async with running(hooks) as listener:
        done = await asyncio.to_thread(mosquitto_pub, listener.port, "-V", "mqttv31",
                                       "-i", "dev-31", "-q", "1", "-t", "up/31", "-m", "hello")
        assert done.returncode == 0, done.stderr
        await eventually(lambda: hooks.published)
        assert [i.protocol_level for i in hooks.connects] == [3]
        assert hooks.published == [("dev-31", "up/31", b"hello", 1)]
    hooks = Recorder()
    async with running(hooks, protocol_levels=frozenset({4})) as listener:
        done = await asyncio.to_thread(mosquitto_pub, listener.port, "-V", "mqttv31",
                                       "-i", "dev-31", "-t", "up/31", "-m", "hello")
        assert "Connection Refused: unacceptable protocol version" in done.stderr
        assert [(r.code, r.protocol, r.protocol_level) for r in hooks.refusals] == [
            (1, "MQIsdp", 3)]


# -- what a client costs before it logs in ------------------------------------------------

async def test_connect_over_the_cap_is_refused_from_its_header_unread() -> None:
    """A CONNECT declaring more than ``max_connect`` bytes is closed at once, without waiting
    for (or buffering) its body; one of exactly ``max_connect`` bytes (a will fills it) is
    served."""
    hooks = Recorder()
    # The connect timeout is not what closes it.
    async with running(hooks, connect_timeout=120.0) as listener:
        cap = listener.max_connect
        assert cap == 8 * 1024

        def header_only() -> bytes:
            with socket.create_connection(("127.0.0.1", listener.port), timeout=60) as sock:
                sock.sendall(bytes([0x10]) + packets.remaining_length(cap + 1))
                return sock.recv(10)

        assert await asyncio.to_thread(header_only) == b""
        assert [(r.code, r.reason) for r in hooks.refusals] == [
            (None, f"CONNECT too large: {cap + 1} bytes declared, at most {cap} are read "
                   "before authentication")]
        # 10 bytes of protocol name, level, flags and keep-alive; the client id "big" (5), the
        # will topic "w" (3) and the will payload's length (2): the payload fills the rest.
        will = b"\x00\x01w" + struct.pack("!H", cap - 20) + b"w" * (cap - 20)
        packet = encode_connect("big", flags=0x06, tail=will)
        assert len(packet) == 1 + 2 + cap
        reply = await asyncio.to_thread(raw_exchange, listener.port, packet, until=4)
        assert reply == bytes([0x20, 2, 0, 0])
        assert hooks.connects[0].will_payload == b"w" * (cap - 20)


async def test_a_hook_that_raises_costs_its_connection_only() -> None:
    class Broken(Recorder):
        async def authenticate(self, info: ConnectInfo) -> int:
            raise RuntimeError("a bug in a vendor hook")

    async with running(Broken()) as listener:
        reply = await asyncio.to_thread(raw_exchange, listener.port, encode_connect("x"))
        assert reply == bytes([0x20, 2, 0, packets.SERVER_UNAVAILABLE])


# -- TLS -----------------------------------------------------------------------------------

class Pki:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.server_ca_key = pki.ec_key()
        self.server_ca = pki.make_ca(pki.name(CN="farm server CA"), self.server_ca_key)
        key = pki.ec_key()
        cert = pki.issue(key.public_key(), pki.name(CN="127.0.0.1"), self.server_ca,
                         self.server_ca_key, ip_addresses=["127.0.0.1"], server=True)
        self.server_pem = pki.cert_pem(cert), pki.key_pem(key)
        self.cas: dict[str, tuple[Any, Any]] = {}
        for name in ("ca-1", "ca-2"):
            ca_key = pki.ec_key()
            self.cas[name] = (pki.make_ca(pki.name(CN=name), ca_key), ca_key)

    def device(self, name: str, ca: str) -> ssl.SSLContext:
        """The client context of a device whose certificate ``ca`` issued (TLS 1.2, as the
        IoTDA SDK sets it)."""
        ca_cert, ca_key = self.cas[ca]
        key = pki.ec_key()
        cert = pki.issue(key.public_key(), pki.name(CN=name), ca_cert, ca_key, client=True)
        (self.tmp / f"{name}.pem").write_text(pki.cert_pem(cert))
        (self.tmp / f"{name}.key").write_text(pki.key_pem(key))
        ctx = pki.client_context(pki.cert_pem(self.server_ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tmp / f"{name}.pem", self.tmp / f"{name}.key")
        return ctx

    def server_factory(self, trusted: list[str]) -> Callable[[], ssl.SSLContext]:
        """A context per handshake, trusting the client CAs named in ``trusted`` right now."""
        def make() -> ssl.SSLContext:
            ctx = pki.server_context(*self.server_pem)
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(
                cadata="".join(pki.cert_pem(self.cas[n][0]) for n in trusted))
            return ctx
        return make


async def handshake_refused(port: int, ctx: ssl.SSLContext) -> None:
    """The server ends the handshake (paho is not used here: it leaves its socket open when
    its handshake fails)."""
    def attempt() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                ctx.wrap_socket(sock, server_hostname="127.0.0.1").close()
    await asyncio.to_thread(attempt)


async def test_tls_client_certificate_checked_against_a_ca_set_that_changes(
        tmp_path: Path) -> None:
    keys = Pki(tmp_path)
    trusted = ["ca-1"]
    hooks = Recorder()
    async with running(hooks, tls=keys.server_factory(trusted)) as listener:
        async with paho("dev-1", tls=keys.device("dev-1", "ca-1")) as one:
            assert await one.connect(listener.port) == 0
        cert = hooks.connects[0].peer_certificate
        assert cert is not None and pki.load_cert(
            ssl.DER_cert_to_PEM_cert(cert)).subject == pki.name(CN="dev-1")
        assert hooks.connects[0].tls
        await handshake_refused(listener.port, keys.device("dev-2", "ca-2"))

        trusted[:] = ["ca-2"]  # the next handshake trusts ca-2 only; the listener runs on
        async with paho("dev-2", tls=keys.device("dev-2b", "ca-2")) as two:
            assert await two.connect(listener.port) == 0
        await handshake_refused(listener.port, keys.device("dev-1b", "ca-1"))
        assert [i.client_id for i in hooks.connects] == ["dev-1", "dev-2"]


async def test_tls_without_client_certificate_is_refused_in_the_handshake(
        tmp_path: Path) -> None:
    keys = Pki(tmp_path)
    async with running(Recorder(), tls=keys.server_factory(["ca-1"])) as listener:
        ctx = pki.client_context(pki.cert_pem(keys.server_ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        await handshake_refused(listener.port, ctx)


def half_open_closed(port: int) -> bool:
    """A TCP connection that never sends a ClientHello: whether the server closed it (within
    a minute; the handshake timeout the test set is far shorter)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            return sock.recv(10) == b""
        except ConnectionResetError:
            return True


async def test_tls_handshakes_over_the_bound_wait_for_a_slot(tmp_path: Path) -> None:
    """With ``max_handshakes`` in flight a new connection waits, its ClientHello unread, and
    is served once a slot frees."""
    keys = Pki(tmp_path)
    hooks = Recorder()
    async with running(hooks, tls=keys.server_factory(["ca-1"]), max_handshakes=1) as listener:
        holder = socket.create_connection(("127.0.0.1", listener.port))  # never says hello
        try:
            await eventually(lambda: listener.acceptor._handshakes == 1)
            ctx = keys.device("dev-1", "ca-1")
            handshaken = threading.Event()

            def late_client() -> bytes:
                with socket.create_connection(("127.0.0.1", listener.port), timeout=60) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                        handshaken.set()
                        sock.sendall(encode_connect("late"))
                        return sock.recv(4)

            late = asyncio.ensure_future(asyncio.to_thread(late_client))
            await asyncio.sleep(0.5)
            assert not handshaken.is_set()  # waiting behind the half-open one
        finally:
            holder.close()  # its handshake ends: the slot is free
        assert await late == bytes([0x20, 2, 0, 0])
        assert [i.client_id for i in hooks.connects] == ["late"]


async def test_half_open_tls_connections_are_closed_at_the_handshake_timeout(
        tmp_path: Path) -> None:
    """One in a slot and one waiting for it: both closed (real clock, a short timeout), and
    the listener then serves a real TLS client."""
    keys = Pki(tmp_path)
    hooks = Recorder()
    async with running(hooks, tls=keys.server_factory(["ca-1"]), max_handshakes=1,
                       handshake_timeout=0.5) as listener:
        closed = await asyncio.gather(asyncio.to_thread(half_open_closed, listener.port),
                                      asyncio.to_thread(half_open_closed, listener.port))
        assert closed == [True, True]
        assert listener.acceptor._handshakes == 0
        async with paho("dev-1", tls=keys.device("dev-1", "ca-1")) as client:
            assert await client.connect(listener.port) == 0


# -- a client that stops reading -----------------------------------------------------------

async def test_a_client_that_stops_reading_is_closed_at_the_write_timeout() -> None:
    """Downstream messages to a client that reads nothing fill the buffers; the write that
    waits ``write_timeout`` for room ends the session, its sender gets ConnectionError, and
    the end is reported as ``write timeout: ...``."""
    hooks = Recorder()
    async with running(hooks, write_timeout=0.5) as listener:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            await asyncio.to_thread(sock.connect, ("127.0.0.1", listener.port))
            await asyncio.to_thread(sock.sendall, encode_connect("stuck", keep_alive=0))
            assert await asyncio.to_thread(sock.recv, 4) == bytes([0x20, 2, 0, 0])

            async def flood() -> None:
                for _ in range(100):  # 100 MB at most: the buffers fill long before
                    await listener.send("stuck", "down", b"x" * 1024 * 1024, qos=0)

            # From here the client reads nothing.
            with pytest.raises(ConnectionError):
                await flood()
            await eventually(lambda: hooks.disconnects)
            assert hooks.disconnects[0][0] == "stuck"
            assert hooks.disconnects[0][1].startswith("write timeout: ")
            assert listener.sessions == {}


# -- stop ----------------------------------------------------------------------------------

async def test_stop_closes_the_listener_and_every_connection() -> None:
    """The leak check of tests/conftest.py then finds no socket left open."""
    hooks = Recorder()
    listener = MqttListener(hooks, "127.0.0.1", 0)
    await listener.start()
    client = Paho("dev-1")
    try:
        await client.connect(listener.port)
        idle = socket.create_connection(("127.0.0.1", listener.port))  # never sends CONNECT
        with idle:
            await asyncio.sleep(0.1)
            await listener.stop()
            assert hooks.disconnects == [("dev-1", "stopped")]
            await client.next(client.disconnected)
            assert await asyncio.to_thread(idle.recv, 10) == b""  # the broker closed its side
            assert listener.acceptor._transports == set() and listener.acceptor._connections == set()
    finally:
        await asyncio.to_thread(client.close)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=1).close()


# -- the one codec ------------------------------------------------------------------------------

@pytest.mark.parametrize(("length", "encoded"), [
    # MQTT 3.1.1 table 2.4, "Size of Remaining Length field": each field size's bounds.
    (0, b"\x00"), (127, b"\x7f"),
    (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length_is_the_specs_table(length: int, encoded: bytes) -> None:
    assert packets.remaining_length(length) == encoded


def test_connect_encoder_writes_what_the_spec_shows() -> None:
    # MQTT 3.1.1 figure 3.6 (protocol name, level 4) with the flags of a clean session with
    # user name and password (0xC2) and keep-alive 120, then the payload's three strings.
    assert encode_connect("c", username="u", password="p", keep_alive=120) == (
        b"\x10\x13\x00\x04MQTT\x04\xc2\x00\x78\x00\x01c\x00\x01u\x00\x01p")


@pytest.mark.parametrize("vendor", ["iotda", "enos"])
def test_every_topic_table_row_names_a_handler(vendor: str) -> None:
    """A row whose handler name is misspelt would fail only when a device sends that topic."""
    topics = importlib.import_module(f"emulators.{vendor}.topics")
    access = importlib.import_module(f"emulators.{vendor}.access")
    cls = {"iotda": "IotdaAccess", "enos": "EnosAccess"}[vendor]
    missing = {n for n in topics.HANDLERS.names()
               if not callable(getattr(getattr(access, cls), n, None))}
    assert topics.HANDLERS.names() and not missing
