"""Refusing a request body without reading it: the reply goes out first, what still comes of
the body is dropped (bounded), then the connection closes. Used for bodies declared larger
than a member accepts (a client that declares 1 GB gets its refusal at once)."""

from __future__ import annotations

import asyncio

from aiohttp import web

# A refused body is dropped while the client keeps sending it (up to this much, pausing at
# most DRAIN_IDLE between chunks) so that closing does not reset a connection it is still
# writing to and cost it the reply; a client that declared a body and went quiet is closed.
DRAIN_LIMIT = 4 * 1024 * 1024
DRAIN_IDLE = 1.0


def declared_too_large(request: web.Request, limit: int) -> bool:
    declared = request.content_length
    return declared is not None and declared > limit


async def send_and_close(request: web.Request, response: web.StreamResponse,
                         ) -> web.StreamResponse:
    """Write ``response`` without reading the request body first, drop what still comes of
    the body (bounded), and close the connection."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    dropped = 0
    try:
        while dropped < DRAIN_LIMIT and not request.content.is_eof():
            async with asyncio.timeout(DRAIN_IDLE):
                chunk = await request.content.readany()
            if not chunk:
                break
            dropped += len(chunk)
    except (TimeoutError, ConnectionError):
        pass
    request.protocol.force_close()
    return response
