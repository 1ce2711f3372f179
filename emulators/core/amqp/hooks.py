"""What the AMQP server (``server.py``) asks of the application that owns it and what it tells
it: ``AmqpApplication`` (who may connect, which address is which queue, how a client that
wants to send is refused), ``Peer`` (what is known of a client when it authenticates) and the
journal hook. The server names no vendor; an application's rules live in its subclass.

The journal hook is called as ``journal(protocol, event, **fields)``, where ``protocol`` is
``amqps`` or ``amqp`` and ``fields`` are ``core.journal.Journal.record``'s keywords
(``client``, ``user``, ``path`` (a link's address), ``status``, ``request_size``,
``request_excerpt``, ``detail``): ``functools.partial(ctx.journal.record, name, kind)`` is
one. Events:

- ``connect``: a client sent a protocol header (``detail.header``: sasl, amqp or other);
- ``refused``: a connection ended before authentication: a wrong header, a malformed SASL
  dialogue, the handshake deadline, too many connections (``detail.reason``);
- ``sasl``: the outcome sent (``status``: the sasl-code, 0 ok, 1 auth, 4 sys-temp;
  ``detail``: mechanism, reason, authzid, hostname);
- ``open``: the client's open (hostname, container id, idle time-out, max frame size);
- ``attach``: a link attached or refused (``detail``: role, name, settle mode,
  ``condition`` for a refusal);
- ``deliver``: a message sent on a link (``request_size``, ``request_excerpt``: the body's
  head; ``detail``: queue, delivery tag, delivery-count, presettled);
- ``settle``: the client's outcome of a delivery (``detail.outcome``), or ``lost`` for one
  that was unsettled when its link or connection went away;
- ``detach``: a link's end, by whom and with which condition;
- ``close``: the connection's end (``detail``: reason, condition, who ended it).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .queue import Queue

# Error conditions (AMQP 1.0 2.8.15, 2.8.16, 2.8.18) this server sends.
NOT_FOUND = "amqp:not-found"
NOT_ALLOWED = "amqp:not-allowed"
RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
RESOURCE_DELETED = "amqp:resource-deleted"
INTERNAL_ERROR = "amqp:internal-error"
FRAMING_ERROR = "amqp:connection:framing-error"
CONNECTION_FORCED = "amqp:connection:forced"


class JournalHook(Protocol):
    def __call__(self, protocol: str, event: str, **fields: Any) -> object: ...


@dataclass(frozen=True)
class Peer:
    """A client as it authenticates: its address, whether it came over TLS (and the client
    certificate the handshake verified, if any), and what its sasl-init said besides the
    credentials."""

    address: tuple[str, int]
    tls: bool
    certificate: bytes | None = None
    sasl_hostname: str | None = None  # sasl-init's hostname
    authzid: str = ""  # PLAIN's authorization identity (journalled; not used)

    @property
    def client(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


@dataclass(frozen=True)
class Denied:
    """What ``authenticate`` may return instead of None to refuse with a reason the journal
    keeps (the client only ever sees sasl-outcome 1)."""

    reason: str


@dataclass(frozen=True)
class Refusal:
    """An AMQP error condition and its description."""

    condition: str
    description: str


class AmqpApplication:
    """What the owner of an AMQP server decides. ``authenticate`` and ``open_queue`` must be
    given; the rest have defaults."""

    def authenticate(self, username: str, password: str, peer: Peer
                     ) -> Any | Awaitable[Any]:
        """The principal ``username`` / ``password`` (SASL PLAIN) authenticates as, or None
        (or ``Denied(reason)``) to refuse: sasl-outcome 1, auth. May be a coroutine. The
        principal is handed back with every ``open_queue`` of the connection."""
        raise NotImplementedError

    def open_queue(self, address: str, principal: Any) -> Queue | None:
        """The queue a receiver link with source ``address`` consumes, or None: the attach
        is answered with a null source and the link detached with ``amqp:not-found``. Not a
        coroutine: the attach is answered in the same turn as proton reports it."""
        raise NotImplementedError

    def refuse_sender(self, address: str | None, principal: Any) -> Refusal:
        """How a link on which the client would send (a sender link of the client's, target
        ``address``) is refused: the attach is answered with a null target and the link
        detached with this condition. This server takes no messages from clients."""
        return Refusal(NOT_ALLOWED, "this server accepts no messages from clients: attach "
                                    "a receiver link")
