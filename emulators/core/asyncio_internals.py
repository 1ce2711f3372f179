"""Every private asyncio name the package uses, why, and what it bought; pinned by
tests/test_asyncio_internals.py (a Python whose asyncio moved them fails there, not in a
benchmark).

- ``asyncio.sslproto.SSLProtocol.max_size``, ``._ssl_buffer``, ``._ssl_buffer_view`` (Python
  3.11): the TLS transport reads the socket through a buffer of its own, allocated and zeroed
  per connection at 256 KiB. 10,000 idle MQTT sessions over TLS held 2.5 GB in them
  (bench/mqtt.py: 296 KB per session before, 48 KB after). ``shrink_tls_read_buffer`` gives a
  connection a 16 KiB one once its handshake is done: a TLS record is at most 16 KiB of
  plaintext, so a large message only takes more reads.
- The order of ``BaseEventLoop.start_tls`` (Python 3.11): it builds the ``SSLProtocol`` and
  sets it on the transport before its first ``await``, and schedules ``connection_made`` and
  ``resume_reading`` with ``call_soon``. A callback scheduled just before calling it therefore
  runs after the protocol is set and before the first read: ``start_tls_small`` shrinks the
  buffer there, so a connection that never finishes its handshake (a half-open MQTTS client)
  holds 16 KiB, not 256 KiB, while it waits (bench/mqtt.py --only halfopen).
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import Any

TLS_READ_BUFFER = 16 * 1024


def shrink_tls_read_buffer(transport: asyncio.Transport) -> bool:
    """Swap a TLS transport's read buffer for ``TLS_READ_BUFFER`` bytes; False (and nothing
    done) where asyncio's names are not what Python 3.11's ``sslproto`` has. Safe between
    reads: the socket transport asks ``get_buffer`` for the buffer before every read, and
    ``get_buffer`` never grows it past ``max_size``."""
    return _shrink(getattr(transport, "_ssl_protocol", None))


def _shrink(found: object) -> bool:
    if not isinstance(found, sslproto.SSLProtocol):
        return False
    protocol: Any = found
    if (getattr(protocol, "max_size", 0) <= TLS_READ_BUFFER
            or not isinstance(getattr(protocol, "_ssl_buffer", None), bytearray)):
        return False
    protocol.max_size = TLS_READ_BUFFER
    protocol._ssl_buffer = bytearray(TLS_READ_BUFFER)
    protocol._ssl_buffer_view = memoryview(protocol._ssl_buffer)
    return True


async def start_tls_small(transport: asyncio.Transport, protocol: asyncio.BaseProtocol,
                          context: ssl.SSLContext, *, handshake_timeout: float,
                          shrunk: list[bool] | None = None) -> asyncio.Transport | None:
    """``loop.start_tls(..., server_side=True)`` whose read buffer is ``TLS_READ_BUFFER``
    bytes before the handshake reads its first byte. ``shrunk`` (when given) gets whether the
    swap was made."""
    def shrink() -> None:
        done = _shrink(transport.get_protocol())
        if shrunk is not None:
            shrunk.append(done)

    loop = asyncio.get_running_loop()
    loop.call_soon(shrink)
    return await loop.start_tls(transport, protocol, context, server_side=True,
                                ssl_handshake_timeout=handshake_timeout)
