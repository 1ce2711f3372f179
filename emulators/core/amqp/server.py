"""The farm's AMQP 1.0 server: a listener (``core/acceptor.py``: TLS per handshake, bounded
handshakes), the SASL PLAIN layer (``sasl.py``) asking the application who a client is, then
one proton engine per connection (``connection.py``) serving the application's queues. It
names no vendor: an application (``hooks.AmqpApplication``) says who may connect and which
address is which queue, and a journal hook hears what happened.

Why proton's engine and not a whole proton server (its ``Container`` listening): the
Container runs its own selector loop in its own thread, where the farm runs everything on one
asyncio loop; and its SASL cannot check PLAIN without Cyrus, which the PyPI build lacks. The
engine (``Transport``, ``Connection``, ``Collector``) is a pure state machine fed with bytes,
which fits the loop, and SASL is done here before it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...pki import server_context
from ..acceptor import Accepted, Acceptor
from .connection import AmqpConnection, shut
from .hooks import CONNECTION_FORCED, AmqpApplication, Denied, JournalHook, Peer
from .options import AmqpOptions
from .sasl import (
    AMQP_HEADER,
    SASL_HEADER,
    Code,
    Credentials,
    SaslError,
    WrongHeader,
    describe_header,
    dialogue,
    outcome_frame,
)

if TYPE_CHECKING:
    from ..farm_ca import FarmCA

log = logging.getLogger("emulators.amqp")


class AmqpServer:
    """An AMQP 1.0 server on ``host:port`` for ``app``: TLS when ``tls`` gives a context per
    handshake (``farm_tls`` makes one from the farm CA), plain otherwise."""

    def __init__(self, app: AmqpApplication, host: str = "127.0.0.1", port: int = 0, *,
                 tls: Callable[[], ssl.SSLContext] | None = None,
                 journal: JournalHook | None = None,
                 options: AmqpOptions | None = None) -> None:
        self.app = app
        self.journal = journal
        self.options = options = options or AmqpOptions()
        self.acceptor = Acceptor(self._serve, host, port, tls=tls, name="AMQP")
        self.acceptor.handshake_timeout = options.handshake_timeout
        self.acceptor.max_handshakes = options.max_handshakes
        self.connections: set[AmqpConnection] = set()

    @property
    def protocol(self) -> str:
        return "amqps" if self.acceptor.tls is not None else "amqp"

    @property
    def host(self) -> str:
        return self.acceptor.host

    @property
    def port(self) -> int:
        return self.acceptor.port

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"

    async def start(self) -> tuple[str, int]:
        return await self.acceptor.start()

    async def stop(self) -> None:
        """Close every connection (``amqp:connection:forced``), stop listening."""
        for connection in list(self.connections):
            connection.close(CONNECTION_FORCED, "the server is stopping")
        for _ in range(2):  # the close frames reach the sockets
            await asyncio.sleep(0)
        await self.acceptor.stop()

    def record(self, event: str, **fields: Any) -> None:
        if self.journal is None:
            return
        try:
            self.journal(self.protocol, event, **fields)
        except Exception:  # a journal's bug must not end a connection
            log.exception("the AMQP journal hook failed on %s", event)

    # -- one connection up to proton -------------------------------------------------------
    async def _serve(self, accepted: Accepted) -> None:
        options = self.options
        client = f"{accepted.peer[0]}:{accepted.peer[1]}"
        reader, writer = accepted.reader, accepted.writer
        phase = "header"
        try:
            async with asyncio.timeout_at(accepted.accepted_at + options.handshake_timeout):
                header = await reader.readexactly(8)
                self.record("connect", client=client, detail={"header": _kind(header)})
                if header != SASL_HEADER:
                    raise WrongHeader(header)
                phase = "SASL"
                credentials = await dialogue(reader, writer, limit=options.max_sasl_frame)
                peer = Peer(accepted.peer, accepted.tls, accepted.certificate,
                            credentials.hostname, credentials.authzid)
                code, principal, reason = await self._authenticate(credentials, peer)
                writer.write(outcome_frame(code))
                self.record("sasl", client=client, user=credentials.username or None,
                            status=int(code), detail={
                                "mechanism": credentials.mechanism, "reason": reason,
                                "authzid": credentials.authzid,
                                "hostname": credentials.hostname})
                if code is not Code.OK:
                    await self._shut(writer)
                    return
                phase = "AMQP header"
                header = await reader.readexactly(8)
                if header != AMQP_HEADER:
                    writer.write(AMQP_HEADER)  # AMQP 1.0 2.2: a supported header, then close
                    self._refused(client, f"after SASL, {describe_header(header)}")
                    await self._shut(writer)
                    return
        except TimeoutError:
            if phase != "header":
                self._refused(client, f"handshake timeout: no {phase} within "
                                      f"{options.handshake_timeout:g} s of connecting")
            return
        except asyncio.IncompleteReadError:
            if phase != "header":
                self._refused(client, f"the connection was closed during the {phase}")
            return
        except WrongHeader as exc:
            writer.write(SASL_HEADER)  # AMQP 1.0 2.2 and 5.3.1: ours, then close
            self._refused(client, describe_header(exc.header))
            await self._shut(writer)
            return
        except SaslError as exc:
            self._refused(client, f"SASL: {exc}")
            return
        except ConnectionError:
            return
        connection = AmqpConnection(self, accepted, credentials.username, principal, peer)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def _authenticate(self, credentials: Credentials, peer: Peer
                            ) -> tuple[Code, Any, str]:
        """(sasl-code, principal, reason for the journal)."""
        limit = self.options.max_connections
        if self.acceptor.open_connections > limit:
            return Code.SYS_TEMP, None, f"too many connections (at most {limit})"
        if credentials.problem is not None:
            return Code.AUTH, None, credentials.problem
        try:
            principal = self.app.authenticate(credentials.username, credentials.password, peer)
            if inspect.isawaitable(principal):
                principal = await principal
        except Exception:
            log.exception("the AMQP application's authenticate failed for %s", peer.client)
            return Code.SYS, None, "authenticate failed (an error of the server's)"
        if principal is None:
            return Code.AUTH, None, "the credentials were refused"
        if isinstance(principal, Denied):
            return Code.AUTH, None, principal.reason
        return Code.OK, principal, ""

    def _refused(self, client: str, reason: str) -> None:
        self.record("refused", client=client, detail={"reason": reason})

    async def _shut(self, writer: asyncio.StreamWriter) -> None:
        """Close after what was written is sent (an outcome or a header must arrive)."""
        await shut(writer, self.options.close_grace)

    def info(self) -> list[dict[str, Any]]:
        """The open connections, for the control plane."""
        return sorted((c.info() for c in self.connections), key=lambda i: i["client"])


def _kind(header: bytes) -> str:
    if header == SASL_HEADER:
        return "sasl"
    if header == AMQP_HEADER:
        return "amqp"
    return "other"


async def farm_tls(ca: FarmCA, host: str) -> Callable[[], ssl.SSLContext]:
    """A TLS context factory for a server on ``host``: a farm-CA certificate for that address
    (made off the loop), TLS 1.2 and later, no client certificate asked for."""
    is_ip = host.replace(".", "").isdigit()
    chain, key = await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(ca.issue_server, host, ip_addresses=(host,) if is_ip else ()))
    context = server_context(chain, key)
    return lambda: context
