"""One attached receiver link of a client's (a proton ``Sender`` on the server's side) bound to
a queue: it is the queue's ``Consumer`` (credit, deliveries), and turns the client's
dispositions into the queue's outcomes. Messages are encoded with proton's ``Message``
codec, once per delivery-count (a redelivery with an unchanged count reuses the bytes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proton import Condition, Delivery, Disposition, Sender, symbol
from proton import Message as ProtonMessage

from .queue import Message, Outcome, Queue

if TYPE_CHECKING:
    from .connection import AmqpConnection

# The properties section's fields (queue.PROPERTY_NAMES) -> proton Message's attributes.
PROTON_PROPERTIES = {
    "message_id": "id", "user_id": "user_id", "to": "address", "subject": "subject",
    "reply_to": "reply_to", "correlation_id": "correlation_id", "content_type": "content_type",
    "content_encoding": "content_encoding", "absolute_expiry_time": "expiry_time",
    "creation_time": "creation_time", "group_id": "group_id",
    "group_sequence": "group_sequence", "reply_to_group_id": "reply_to_group_id"}

OUTCOMES: dict[Any, Outcome] = {
    Disposition.ACCEPTED: Outcome.ACCEPTED, Disposition.REJECTED: Outcome.REJECTED,
    Disposition.RELEASED: Outcome.RELEASED, Disposition.MODIFIED: Outcome.MODIFIED}


def encode(message: Message) -> bytes:
    """The message as AMQP sections (header, message annotations, properties, application
    properties, body), cached on the message for its current delivery-count."""
    wire = message.wire
    if wire is not None and wire[0] == message.delivery_count:
        return wire[1]
    out: Any = ProtonMessage()  # proton's stubs type its sections too narrowly
    body = message.body
    out.inferred = isinstance(body, bytes)  # bytes: a data section; str: an amqp-value
    out.body = body
    out.delivery_count = message.delivery_count
    for name, value in (message.properties or {}).items():
        setattr(out, PROTON_PROPERTIES[name], value)
    if message.application_properties:
        out.properties = dict(message.application_properties)
    if message.annotations:
        out.annotations = {symbol(k): v for k, v in message.annotations.items()}
    data = bytes(out.encode())
    message.wire = (message.delivery_count, data)
    return data


class LinkConsumer:
    """A queue's consumer over one server-side sender link."""

    def __init__(self, connection: AmqpConnection, link: Sender, queue: Queue, address: str,
                 presettled: bool) -> None:
        self.connection = connection
        self.link = link
        self.queue = queue
        self.address = address
        self.presettled = presettled
        self.unsettled: dict[Delivery, Message] = {}
        self._tags = 0
        self.ended = False

    @property
    def credit(self) -> int:
        if self.ended or self.connection.congested:
            return 0
        return self.link.credit

    def deliver(self, message: Message) -> None:
        data = encode(message)
        self._tags += 1
        tag = str(self._tags)
        delivery = self.link.delivery(tag)
        self.link.stream(data)
        self.link.advance()
        if self.presettled:
            delivery.settle()
        else:
            self.unsettled[delivery] = message
        self.connection.record_delivery(self, message, tag, len(data))
        self.connection.wake()

    def end(self, condition: str, description: str) -> None:
        """The queue is gone: detach with ``condition`` (its messages went with it)."""
        if self.ended:
            return
        self.ended = True
        self.unsettled.clear()
        self.link.condition = Condition(condition, description)
        self.link.close()
        self.connection.forget(self, reason=f"queue closed: {description}", by="server",
                               condition=condition)
        self.connection.wake()

    def disposition(self, delivery: Delivery) -> None:
        """The client updated or settled ``delivery``: a terminal outcome settles it here
        and goes to the queue; a non-terminal state (received) waits for the next."""
        message = self.unsettled.get(delivery)
        if message is None:
            return
        state = delivery.remote_state
        outcome = OUTCOMES.get(state)
        if outcome is None:
            if not delivery.remote_settled:
                return
            outcome = Outcome.ACCEPTED  # settled without an outcome (queue.py's rules)
        del self.unsettled[delivery]
        remote = delivery.remote
        failed = outcome is Outcome.MODIFIED and bool(remote.failed)
        annotations: Mapping[str, Any] | None = None
        if outcome is Outcome.MODIFIED and remote.annotations:
            # bytes(): proton decodes binary as a view into a buffer it frees
            annotations = {str(k): bytes(v) if isinstance(v, memoryview) else v
                           for k, v in remote.annotations.items()}
        condition = remote.condition if outcome is Outcome.REJECTED else None
        delivery.settle()
        self.queue.settle(message, outcome, delivery_failed=failed, annotations=annotations)
        self.connection.record_settle(self, message, delivery.tag, outcome.value, condition)

    def lost(self) -> list[Message]:
        """The link or connection went away: the unsettled messages (in queue order) go back
        to the queue, and this consumer leaves it. Returns them, for the journal."""
        self.ended = True
        back = sorted(self.unsettled.values(), key=lambda m: m.seq)
        self.unsettled.clear()
        self.queue.detach(self, back)
        return back
