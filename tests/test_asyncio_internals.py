"""The private asyncio names of emulators/core/asyncio_internals.py still exist and still do
what they bought: a TLS connection's read buffer is shrunk, and the connection still carries
a message larger than the new buffer."""

from __future__ import annotations

import asyncio
import ssl

from emulators import pki
from emulators.core import asyncio_internals


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server's TLS context for 127.0.0.1, and a client's that trusts its CA."""
    key = pki.ec_key()
    ca_key = pki.ec_key()
    ca = pki.make_ca(pki.name(CN="test CA"), ca_key)
    cert = pki.issue(key.public_key(), pki.name(CN="127.0.0.1"), ca, ca_key, server=True,
                     ip_addresses=("127.0.0.1",))
    client_ctx = pki.client_context(pki.cert_pem(ca))
    client_ctx.check_hostname = False
    return pki.server_context(pki.cert_pem(cert), pki.key_pem(key)), client_ctx


async def test_a_tls_connections_read_buffer_shrinks_and_still_reads_large_messages() -> None:
    server_ctx, client_ctx = contexts()
    shrunk: list[bool] = []
    received = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        shrunk.append(asyncio_internals.shrink_tls_read_buffer(transport))
        protocol = transport._ssl_protocol  # type: ignore[attr-defined]
        assert len(protocol._ssl_buffer) == asyncio_internals.TLS_READ_BUFFER
        received.set_result(await reader.readexactly(300_000))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
    writer.write(b"x" * 300_000)
    await writer.drain()
    assert await asyncio.wait_for(received, 10) == b"x" * 300_000
    writer.close()
    server.close()
    await server.wait_closed()
    assert shrunk == [True], "asyncio.sslproto no longer has the names shrinking relies on"


async def test_a_handshake_starts_with_the_small_read_buffer() -> None:
    """``start_tls_small`` relies on ``start_tls`` setting its SSLProtocol on the transport
    before its first await: the swap must have been made before the handshake read a byte."""
    server_ctx, client_ctx = contexts()
    loop = asyncio.get_running_loop()
    shrunk: list[bool] = []
    done: asyncio.Future[asyncio.Transport | None] = loop.create_future()

    async def handshake(transport: asyncio.Transport) -> None:
        tls = await asyncio_internals.start_tls_small(
            transport, asyncio.Protocol(), server_ctx, handshake_timeout=10, shrunk=shrunk)
        done.set_result(tls)

    class Hold(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()
            self.task = loop.create_task(handshake(transport))

    server = await loop.create_server(Hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
    tls = await asyncio.wait_for(done, 10)
    assert shrunk == [True], "asyncio's start_tls no longer sets its protocol before awaiting"
    assert tls is not None
    protocol = tls._ssl_protocol  # type: ignore[attr-defined]
    assert len(protocol._ssl_buffer) == asyncio_internals.TLS_READ_BUFFER
    writer.close()
    tls.close()
    server.close()
    await server.wait_closed()
