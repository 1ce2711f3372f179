"""What the AMQP tests share: an application with queues and users, a server running on the
farm's loop that the test thread drives, a proton client as Huawei's sample configures one, and
a raw socket client for what no real client sends (frames encoded with proton's codec)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from proton import SSLDomain
from proton.utils import BlockingConnection

from emulators.core.amqp import sasl
from emulators.core.amqp.hooks import AmqpApplication, Denied, Peer
from emulators.core.amqp.queue import Message, Queue
from emulators.core.amqp.server import AmqpServer
from emulators.testing import LoopThread

PASSWORD = "access-code-1"
USER = "accessKey=AK1|timestamp=1700000000000"


class App(AmqpApplication):
    """Users by name and password, queues by address; remembers who authenticated."""

    def __init__(self) -> None:
        self.users = {USER: PASSWORD}
        self.queues: dict[str, Queue] = {}
        self.peers: list[Peer] = []
        self.dropped: list[tuple[str, Any, str]] = []

    def queue(self, name: str, **options: Any) -> Queue:
        queue = Queue(name, on_drop=lambda q, m, reason: self.dropped.append(
            (q.name, m.body, reason)), **options)
        self.queues[name] = queue
        return queue

    async def authenticate(self, username: str, password: str, peer: Peer) -> Any:
        self.peers.append(peer)
        if self.users.get(username) != password:
            return Denied(f"wrong password for {username!r}")
        return {"user": username}

    def open_queue(self, address: str, principal: Any) -> Queue | None:
        return self.queues.get(address)


@dataclass
class Served:
    """A server on the farm's loop, seen from the test's thread."""

    loop: LoopThread
    server: AmqpServer
    app: App
    ca_file: str | None
    journal: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def put(self, queue: str, *bodies: bytes | str, **sections: Any) -> None:
        def put() -> None:
            for body in bodies:
                assert self.app.queues[queue].put(Message(body, **sections))
        self.loop.call(put)

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.loop.call(fn)

    def queue_state(self, name: str) -> tuple[int, int]:
        """(waiting, unsettled) of the queue ``name``, read on the loop."""
        queue = self.app.queues[name]
        return self.loop.call(lambda: (queue.waiting, queue.unsettled))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in list(self.journal) if name == event]

    def wait_for(self, check: Callable[[], Any], what: str = "condition") -> Any:
        """Wait up to 5 s for ``check()`` to be truthy; its value."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.01)
        raise AssertionError(f"{what} not reached in 5 s")

    def wait_event(self, event: str, test: Callable[[dict[str, Any]], bool] = bool
                   ) -> dict[str, Any]:
        return self.wait_for(lambda: next((f for f in self.events(event) if test(f)), None),
                             f"a {event} entry")


# -- proton as a client ----------------------------------------------------------------------

def ssl_domain(ca_file: str | None) -> SSLDomain:
    """A client domain trusting ``ca_file`` and checking the name, or, without one, trusting
    any server certificate (Huawei's Java sample's TrustManager accepts everything)."""
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    if ca_file is None:
        domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    else:
        domain.set_trusted_ca_db(ca_file)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return domain


@contextmanager
def connected(served: Served, *, user: str = USER, password: str = PASSWORD,
              verify: bool = True, **kwargs: Any) -> Iterator[BlockingConnection]:
    """A proton BlockingConnection with SASL PLAIN, over TLS when the server has it."""
    tls = served.server.protocol == "amqps"
    url = f"{served.server.protocol}://127.0.0.1:{served.port}"
    connection = BlockingConnection(
        url, timeout=5, user=user, password=password, allowed_mechs="PLAIN",
        ssl_domain=ssl_domain(served.ca_file if verify else None) if tls else None, **kwargs)
    try:
        yield connection
    finally:
        connection.close()


def pump_until(connection: BlockingConnection, check: Callable[[], Any]) -> None:
    """Run the client's I/O until ``check()`` holds (5 s at most) when what is waited for
    happens on the server (the client's ``wait`` blocks until its own socket has news)."""
    from proton import Timeout

    deadline = time.monotonic() + 5
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in 5 s")
        try:
            connection.wait(check, timeout=0.02)
        except Timeout:
            pass


def round_trip(connection: BlockingConnection) -> None:
    """Have the server answer something after everything sent before: an attach to an
    address no queue has is answered (and refused) only once the frames before it are
    processed."""
    from proton.utils import LinkDetached

    try:
        connection.create_receiver("round-trip.no-such-queue")
    except LinkDetached:
        return
    raise AssertionError("the round trip's attach was not refused")


# -- raw frames --------------------------------------------------------------------------------

FRAME = sasl.FRAME_HEADER
OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)


def frame(performative: int, fields: list[Any], *, channel: int = 0) -> bytes:
    """An AMQP frame (the one frame encoder is the SASL layer's)."""
    return sasl.frame(performative, fields, frame_type=sasl.AMQP_FRAME, channel=channel)


@dataclass
class Frame:
    kind: int
    channel: int
    code: int | None  # None: an empty frame (a heartbeat)
    fields: list[Any]


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """The whole frames at the start of ``data``, and what follows them."""
    from proton import Data

    frames = []
    while len(data) >= 8:
        size, doff, kind, channel = FRAME.unpack(data[:8])
        if len(data) < size:
            break
        body, data = data[doff * 4:size], data[size:]
        if not body:
            frames.append(Frame(kind, channel, None, []))
            continue
        decoded = Data()
        decoded.decode(body)
        decoded.rewind()
        decoded.next()
        value: Any = decoded.get_object()
        fields = [bytes(f) if isinstance(f, memoryview) else f for f in value.value]
        frames.append(Frame(kind, channel, int(value.descriptor), fields))
    return frames, data


def condition_of(performative: Frame) -> tuple[str, str] | None:
    """(name, description) of the error a close or detach carries."""
    index = {CLOSE: 0, DETACH: 2}[performative.code or 0]
    error = performative.fields[index] if len(performative.fields) > index else None
    if error is None:
        return None
    return str(error.value[0]), str(error.value[1])


class RawClient:
    """A socket (TLS optional) that sends bytes as given and reads what comes back."""

    def __init__(self, port: int, *, tls: bool = False, receive_buffer: int | None = None
                 ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect: the window offered is small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        self.sock = sock
        self.buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send ``data``; a server that answers and closes before taking all of it (an
        oversized frame is judged by its header) ends the send, not the test."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
            pass

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {self.buffer!r}")
            self.buffer += chunk
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def read_to_close(self) -> bytes:
        """Everything until the server closes (5 s at most)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            self.buffer += chunk
        out, self.buffer = self.buffer, b""
        return out

    def frames(self, count: int) -> list[Frame]:
        """The next ``count`` frames."""
        out: list[Frame] = []
        while len(out) < count:
            head = self.read(8)
            size = FRAME.unpack(head)[0]
            frames, _ = parse_frames(head + self.read(size - 8))
            out += frames
        return out

    def sasl_plain(self, user: str = USER, password: str = PASSWORD) -> int:
        """The SASL dialogue with PLAIN; the outcome's code."""
        self.send(sasl.SASL_HEADER)
        assert self.read(8) == sasl.SASL_HEADER
        mechanisms = self.frames(1)[0]
        assert mechanisms.code == sasl.SASL_MECHANISMS
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        self.send(sasl.init_frame("PLAIN", response))
        outcome = self.frames(1)[0]
        assert outcome.code == sasl.SASL_OUTCOME
        return int(outcome.fields[0])

    def open(self, **open_fields: Any) -> Frame:
        """After SASL: the AMQP header and an open; the server's open."""
        from proton import uint

        self.send(sasl.AMQP_HEADER)
        fields: list[Any] = ["raw-client", "default"]
        if "max_frame_size" in open_fields:
            fields.append(uint(open_fields["max_frame_size"]))
        self.send(frame(OPEN, fields))
        assert self.read(8) == sasl.AMQP_HEADER
        opened = self.frames(1)[0]
        assert opened.code == OPEN
        return opened

    def consume(self, address: str, credit: int) -> None:
        """After ``open``: a session and a receiver link on ``address`` with ``credit``."""
        from proton import Described, uint, ulong

        window = uint(2 ** 31)
        self.send(frame(BEGIN, [None, uint(0), window, window]))
        self.send(frame(ATTACH, ["raw-receiver", uint(0), True, None, None,
                                 Described(ulong(0x28), [address]),
                                 Described(ulong(0x29), [])]))
        self.send(frame(FLOW, [uint(0), window, uint(0), window, uint(0), uint(0),
                               uint(credit)]))

    def close_frame(self) -> Frame:
        """Frames until the server's close (empty frames and others skipped)."""
        while True:
            got = self.frames(1)[0]
            if got.code == CLOSE:
                return got
