"""The farm's MQTT broker machinery (emulators/core/mqtt.py) driven by paho-mqtt, the client
the vendor device SDKs wrap, and by raw sockets for what no real client sends."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from emulators import pki
from emulators.core import mqtt as broker
from emulators.core.mqtt import ConnectInfo, MqttHooks, MqttListener, MqttSession


class Recorder(MqttHooks):
    """Hooks that answer what a test set and remember what they saw."""

    def __init__(self) -> None:
        self.code = broker.ACCEPTED
        self.refused: set[str] = set()
        self.connects: list[ConnectInfo] = []
        self.published: list[tuple[str, str, bytes, int]] = []
        self.subscribed: list[tuple[str, str, int]] = []
        self.disconnects: list[tuple[str, str]] = []

    async def authenticate(self, info: ConnectInfo) -> int:
        self.connects.append(info)
        return self.code

    async def authorize(self, session: MqttSession, action: broker.Action, topic: str) -> bool:
        return topic not in self.refused

    async def on_publish(self, session: MqttSession, topic: str, payload: bytes, qos: int,
                         retain: bool) -> None:
        self.published.append((session.client_id, topic, payload, qos))

    async def on_subscribe(self, session: MqttSession, topic_filter: str, qos: int) -> None:
        self.subscribed.append((session.client_id, topic_filter, qos))

    async def on_disconnect(self, session: MqttSession, reason: str) -> None:
        self.disconnects.append((session.client_id, reason))


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
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes the wake-up socket pair loop_start() made only when loop_stop() finds
        # its thread running; after the broker ended the session (a refusal, a displacement,
        # a stop) the thread has already gone, and the pair is left to the garbage collector
        # (a ResourceWarning in whichever test collects next). Close it (paho 2.2 names).
        for name in ("_sockpairR", "_sockpairW"):
            pair = getattr(self.client, name, None)
            if pair is not None:
                pair.close()
                setattr(self.client, name, None)


@contextlib.asynccontextmanager
async def running(hooks: MqttHooks, **kwargs: Any) -> AsyncIterator[MqttListener]:
    listener = MqttListener(hooks, "127.0.0.1", 0, **kwargs)
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


def connect_packet(client_id: str, *, flags: int = 0x02, keep_alive: int = 60,
                   protocol: bytes = b"MQTT", level: int = 4, tail: bytes = b"") -> bytes:
    body = (struct.pack("!H", len(protocol)) + protocol + bytes([level, flags])
            + struct.pack("!H", keep_alive) + struct.pack("!H", len(client_id))
            + client_id.encode() + tail)
    return bytes([0x10]) + broker.remaining_length(len(body)) + body


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
    (broker.ACCEPTED, "Success"),
    (broker.BAD_CREDENTIALS, "Bad user name or password"),
    (broker.NOT_AUTHORIZED, "Not authorized"),
], ids=["accepted-0", "bad-credentials-4", "not-authorized-5"])
async def test_connack_code_comes_from_the_hook(code: int, paho_name: str) -> None:
    hooks = Recorder()
    hooks.code = code
    async with running(hooks) as listener:
        async with paho("dev-1") as client:
            rc = await client.connect(listener.port)
            assert rc.getName() == paho_name
        # The exact bytes on the wire: CONNACK, length 2, session present 0, the code.
        reply = await asyncio.to_thread(raw_exchange, listener.port, connect_packet("raw"),
                                        until=4)
        assert reply == bytes([0x20, 2, 0, code])
        if code != broker.ACCEPTED:
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
            sock.sendall(connect_packet("quiet", keep_alive=1))
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
    pytest.param(connect_packet("x", protocol=b"HTTP"), None, id="unknown-protocol-name"),
    pytest.param(connect_packet("x", flags=0x03), None, id="reserved-connect-flag"),
    pytest.param(connect_packet("x")[:-3], None, id="truncated-connect"),
    pytest.param(connect_packet("\udcff".encode("utf-8", "surrogatepass").decode("latin-1")),
                 None, id="client-id-not-utf8"),
    pytest.param(connect_packet("x", tail=b"junk"), None, id="bytes-after-connect"),
    pytest.param(connect_packet("s") + bytes([0x80, 5, 0, 1, 0, 1, ord("t")]), "malformed",
                 id="subscribe-with-wrong-flags"),
    pytest.param(connect_packet("s") + bytes([0x82, 2, 0, 1]), "malformed",
                 id="subscribe-without-topic"),
    pytest.param(connect_packet("s") + PUBLISH_QOS3, "malformed", id="publish-qos-3"),
    pytest.param(connect_packet("s") + bytes([0x32, 5, 0, 1, ord("#"), 0, 1]), "malformed",
                 id="publish-to-wildcard"),
    pytest.param(connect_packet("s") + bytes([0x34, 5, 0, 1, ord("t"), 0, 1]), "QoS 2 refused",
                 id="publish-qos-2"),
    pytest.param(connect_packet("s") + bytes([0x20, 2, 0, 0]), "malformed",
                 id="connack-from-a-client"),
    pytest.param(connect_packet("s") + bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]),
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
        reply = await asyncio.to_thread(raw_exchange, listener.port, connect_packet("x", level=5))
        assert reply == bytes([0x20, 2, 0, 1])


async def test_a_hook_that_raises_costs_its_connection_only() -> None:
    class Broken(Recorder):
        async def authenticate(self, info: ConnectInfo) -> int:
            raise RuntimeError("a bug in a vendor hook")

    async with running(Broken()) as listener:
        reply = await asyncio.to_thread(raw_exchange, listener.port, connect_packet("x"))
        assert reply == bytes([0x20, 2, 0, broker.SERVER_UNAVAILABLE])


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
            assert listener._transports == set() and listener._connections == set()
    finally:
        await asyncio.to_thread(client.close)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=1).close()
