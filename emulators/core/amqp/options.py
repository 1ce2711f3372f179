"""The AMQP server's limits and deadlines: one frozen record, one comment per field saying where
its default came from. An application builds one from its vendor's documented values (and
its scenario options) and hands it to ``AmqpServer``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AmqpOptions:
    # From the accept to the client's open: the TLS handshake, the SASL dialogue, the AMQP
    # header and the open frame. A client that stalls in TLS or SASL is disconnected (SASL
    # has no frame to say why); one that stalls after SASL gets this server's open, then the
    # socket is closed. 15 s: what the farm's other listeners allow a handshake.
    handshake_timeout: float = 15.0
    # TLS handshakes in flight at once (later connections wait, unread, for a slot).
    max_handshakes: int = 128
    # Open connections (handshakes included). Past it, a client's sasl-init is answered
    # sasl-outcome 4 (sys-temp, "try again later") and the socket closed: no credentials
    # checked, no proton engine made.
    max_connections: int = 1000
    # A connection that has not attached a receiver link to a queue this long after its
    # socket was accepted is closed with amqp:resource-limit-exceeded. Huawei IoTDA documents
    # 15 s ("the receiver link must be attached within 15 s"); None: no deadline.
    attach_deadline: float | None = 15.0
    # The max-frame-size this server announces in its open: a larger frame from the client
    # is a framing error (proton closes with amqp:connection:framing-error). 64 KiB is
    # above every performative a consumer sends; proton's own default is 32 KiB.
    max_frame_size: int = 64 * 1024
    # The largest SASL frame read. AMQP bounds frames before open at 512 bytes
    # (MIN-MAX-FRAME-SIZE); a PLAIN init with a long access key still fits in 4 KiB.
    max_sasl_frame: int = 4096
    # The idle time-out announced in the open (proton closes a connection that sends nothing
    # for this long with amqp:resource-limit-exceeded, and sends empty frames to a client that
    # announced one). 0: none. 60 s: qpid-jms's default heartbeat window.
    idle_timeout: float = 60.0
    # Sessions per connection (channel-max + 1: a begin on a higher channel is proton's
    # amqp:connection:framing-error) and receiver links per connection (one more is refused
    # with amqp:resource-limit-exceeded). A consumer needs one of each.
    max_sessions: int = 32
    max_links: int = 64
    # How long a write may wait for the client to take what was sent before: past it the
    # connection is aborted and its unsettled messages go back to their queues.
    write_timeout: float = 30.0
    # Bytes waiting in the socket's write buffer past which consumers are given no more
    # messages until it drains (a client that stops reading does not fill memory).
    write_high_water: int = 256 * 1024
    # After this server sent its close, how long it waits for the client's close before
    # closing the socket (AMQP 1.0 2.4.3: the peer should wait for the answering close).
    close_grace: float = 2.0
    # The container-id in this server's open frame.
    container_id: str = "emulators-amqp"

    def __post_init__(self) -> None:
        if self.max_frame_size < 512:
            raise ValueError("max_frame_size is at least 512 (AMQP's MIN-MAX-FRAME-SIZE)")
        if self.max_sasl_frame < 512:
            raise ValueError("max_sasl_frame is at least 512")
        if self.max_sessions < 1 or self.max_links < 1 or self.max_connections < 1:
            raise ValueError("max_sessions, max_links and max_connections are at least 1")
