"""Every private asyncio name the package uses, why, and what it bought; pinned by
tests/test_asyncio_internals.py (a Python whose asyncio moved them fails there, not in a
benchmark).

- ``asyncio.sslproto.SSLProtocol.max_size``, ``._ssl_buffer``, ``._ssl_buffer_view`` (Python
  3.11): the TLS transport reads the socket through a buffer of its own, allocated and zeroed
  per connection at 256 KiB. 10,000 idle MQTT sessions over TLS held 2.5 GB in them
  (bench/mqtt.py: 296 KB per session before, 48 KB after). ``shrink_tls_read_buffer`` gives a
  connection a 16 KiB one once its handshake is done: a TLS record is at most 16 KiB of
  plaintext, so a large message only takes more reads.
"""

from __future__ import annotations

import asyncio

TLS_READ_BUFFER = 16 * 1024


def shrink_tls_read_buffer(transport: asyncio.Transport) -> bool:
    """Swap a TLS transport's read buffer for ``TLS_READ_BUFFER`` bytes; False (and nothing
    done) where asyncio's names are not what Python 3.11's ``sslproto`` has. Safe between
    reads: the socket transport asks ``get_buffer`` for the buffer before every read, and
    ``get_buffer`` never grows it past ``max_size``."""
    protocol = getattr(transport, "_ssl_protocol", None)
    if (protocol is None or getattr(protocol, "max_size", 0) <= TLS_READ_BUFFER
            or not isinstance(getattr(protocol, "_ssl_buffer", None), bytearray)):
        return False
    protocol.max_size = TLS_READ_BUFFER
    protocol._ssl_buffer = bytearray(TLS_READ_BUFFER)
    protocol._ssl_buffer_view = memoryview(protocol._ssl_buffer)
    return True
