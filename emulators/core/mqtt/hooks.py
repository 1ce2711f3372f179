"""What the broker tells a member and asks of it: ``ConnectInfo`` (a CONNECT as sent),
``Refusal`` (a connection the broker ended by MQTT's own rules) and ``MqttHooks`` (who may
connect, publish and subscribe, and what a message means). The broker names no vendor; a
member's hooks are where its vendor's rules live.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .packets import ACCEPTED

if TYPE_CHECKING:
    from .broker import MqttSession

Action = Literal["publish", "subscribe"]


@dataclass(frozen=True)
class Refusal:
    """A connection the broker itself ended before a session began, by MQTT's rules rather
    than a member's: ``code`` is the CONNACK return code it sent (1 for a protocol level it
    does not serve, 2 for an empty client id without clean session), None when it closed
    without one (a malformed or oversized CONNECT, or another packet first). What the CONNECT
    named is given when it could be read."""

    peer: tuple[str, int]
    tls: bool
    code: int | None
    reason: str
    protocol: str | None = None
    protocol_level: int | None = None
    client_id: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class ConnectInfo:
    """A CONNECT as the client sent it, with what the transport knows of the client."""

    client_id: str
    username: str | None
    password: bytes | None
    keep_alive: int
    clean_session: bool
    protocol_level: int  # 4 for 3.1.1, 3 for 3.1
    will_topic: str | None
    will_payload: bytes | None
    will_qos: int
    will_retain: bool
    peer: tuple[str, int]
    tls: bool
    # The client certificate (DER) the handshake verified, None without TLS or without one.
    peer_certificate: bytes | None
    client_id_generated: bool = False  # the client sent an empty id with clean_session


class MqttHooks:
    """What a member decides; every method may be overridden, the defaults let all in."""

    async def authenticate(self, info: ConnectInfo) -> int:
        """The CONNACK return code for this CONNECT (0 accepts; ``DROP`` answers nothing and
        closes the connection)."""
        return ACCEPTED

    async def authorize(self, session: MqttSession, action: Action, topic: str) -> bool:
        """Whether ``session`` may publish to ``topic`` or subscribe to the filter ``topic``."""
        return True

    async def on_connect(self, session: MqttSession) -> None:
        """An accepted session, after its CONNACK was written."""

    async def on_publish(self, session: MqttSession, topic: str, payload: bytes, qos: int,
                         retain: bool) -> Awaitable[Any] | None:
        """An authorised PUBLISH. A QoS 1 PUBACK is sent when this returns, or, when it
        returns an awaitable (a save of what the message changed), once that is done: the
        session reads on meanwhile, and its PUBACKs keep the order of the PUBLISHes
        (MQTT-4.6.0-2), so the messages in flight share saves."""
        return None

    async def acknowledge(self, session: MqttSession, topic: str) -> bool:
        """Before the PUBACK of a QoS 1 PUBLISH: False sends none (a fault may also wait
        here first)."""
        return True

    async def on_subscribe(self, session: MqttSession, topic_filter: str, qos: int) -> None:
        """A granted subscription."""

    async def on_disconnect(self, session: MqttSession, reason: str) -> None:
        """The end of an accepted session: ``disconnect`` (the client said so), ``displaced``
        (the same client id connected again), ``connection lost``, ``keep-alive timeout``,
        ``message too large``, ``malformed: ...``, ``write timeout: ...`` (the client stopped
        reading), ``closed: ...`` (``close()``), ``stopped``."""

    async def on_refused(self, refusal: Refusal) -> None:
        """A connection ended before ``authenticate`` was asked (see ``Refusal``). A connection
        that closes before sending a byte, or sends no whole packet in ``connect_timeout``, is
        not reported (port probes and health checks do that)."""
