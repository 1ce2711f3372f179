"""A bounded message queue that AMQP receiver links consume, with AMQP 1.0's settlement rules
(part 3.4, "Delivery State"). It knows nothing of proton or sockets: a ``Consumer`` (one
attached link, ``links.py``) tells it its credit and takes messages; the application puts
messages in and decides what a queue is.

The rules, in one place:

- Order: messages are handed out in the order they were put. One that comes back (released,
  modified, or unsettled on a link that went away) goes back to its place by that order,
  ahead of every message put after it.
- Several consumers on one queue: each message goes to one of them, round robin over those
  with credit (a consumer without credit is skipped, not waited for).
- ``accepted``: the message is gone. ``rejected``: gone too (the client judged it invalid;
  redelivering it would loop), reported to ``on_drop`` with reason ``rejected``.
  ``released``: back, unchanged. ``modified``: back; ``delivery-failed`` counts a failed
  attempt (the header's delivery-count), its message-annotations are merged into the
  message's; ``undeliverable-here`` is treated as released (no consumer is excluded).
  Settled without an outcome: as accepted (the client took it and said nothing more).
- A link that detaches, or a connection that drops, with deliveries unsettled: each goes back
  with its delivery-count raised (the client may have seen it: a possible duplicate).
- A pre-settled consumer (at most once): a message is gone once handed to it.
- Bounded: at most ``limit`` messages held (waiting plus out on links). When a message is put
  into a full queue, ``overflow`` decides: ``drop-oldest`` (the default: a backend that
  stopped reading loses its oldest data, not its newest) drops the oldest waiting message (or
  the new one, when every held message is out on a link); ``refuse`` keeps the queue and
  drops the new one, and ``put`` returns False. Either way ``on_drop`` hears of the dropped
  message, so the application can journal it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger("emulators.amqp")

# The properties section's fields (AMQP 1.0 3.2.4), by their spec names with underscores.
PROPERTY_NAMES = frozenset({
    "message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
    "content_encoding", "absolute_expiry_time", "creation_time", "group_id", "group_sequence",
    "reply_to_group_id"})


class Overflow(StrEnum):
    DROP_OLDEST = "drop-oldest"
    REFUSE = "refuse"


class Outcome(StrEnum):
    """A delivery's terminal state as the consumer reported it (AMQP 1.0 3.4)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RELEASED = "released"
    MODIFIED = "modified"


@dataclass(slots=True, eq=False)
class Message:
    """One message as a queue holds it. ``body``: a str goes out as an amqp-value string (what
    a JMS client reads as a TextMessage), bytes as one data section. ``properties``: fields of
    the properties section by their spec names with underscores (``message_id``,
    ``content_type``...); ``application_properties``: simple values by string key;
    ``annotations``: message annotations (keys become symbols)."""

    body: bytes | str
    properties: Mapping[str, Any] | None = None
    application_properties: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] | None = None
    # Failed or possibly duplicated delivery attempts (the header's delivery-count).
    delivery_count: int = 0
    seq: int = field(default=0, repr=False)  # the queue's order, set by ``put``
    # The encoded form and the delivery-count it was encoded with (links.py fills it).
    wire: tuple[int, bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes | str):
            raise TypeError(f"a message body is bytes or str, not {type(self.body).__name__}")
        unknown = set(self.properties or ()) - PROPERTY_NAMES
        if unknown:
            raise ValueError(f"not fields of the properties section: {sorted(unknown)}")


class Consumer(Protocol):
    """What a queue asks of one attached receiver link."""

    @property
    def credit(self) -> int:
        """How many messages it may take now (0 also while its connection cannot write)."""

    @property
    def presettled(self) -> bool:
        """Whether it takes messages settled (at most once)."""

    def deliver(self, message: Message) -> None:
        """Send ``message``; a queue calls it only while ``credit`` is positive."""

    def end(self, condition: str, description: str) -> None:
        """Detach because the queue is closed (deleted), with this error condition."""


DropHook = Callable[["Queue", Message, str], None]


class Queue:
    """A named, bounded, ordered queue (the rules are the module's docstring)."""

    def __init__(self, name: str, *, limit: int = 10_000,
                 overflow: Overflow | str = Overflow.DROP_OLDEST,
                 on_drop: DropHook | None = None) -> None:
        if limit < 1:
            raise ValueError("a queue's limit is at least 1")
        self.name = name
        self.limit = limit
        self.overflow = Overflow(overflow)
        self.on_drop = on_drop
        self.closed = False
        self.consumers: list[Consumer] = []
        self._ready: deque[Message] = deque()
        self._out: dict[int, Message] = {}  # seq -> a message out on a link, unsettled
        self._seq = 0
        self._turn = 0  # the consumer whose turn is next
        self._dispatching = False
        self._again = False

    def __len__(self) -> int:
        """Messages held: waiting, and out on links unsettled."""
        return len(self._ready) + len(self._out)

    def __repr__(self) -> str:
        return (f"<Queue {self.name!r} waiting={len(self._ready)} out={len(self._out)} "
                f"consumers={len(self.consumers)}>")

    @property
    def waiting(self) -> int:
        return len(self._ready)

    @property
    def unsettled(self) -> int:
        return len(self._out)

    def messages(self) -> Iterator[Message]:
        """The waiting messages, in the order they will be handed out."""
        return iter(list(self._ready))

    # -- the producer's side ---------------------------------------------------------------
    def put(self, message: Message | bytes | str, **sections: Any) -> bool:
        """Queue ``message`` (a Message, or a body with the Message's other fields as
        keywords) and hand it out if a consumer has credit. False when it was dropped:
        the queue is closed, or full under ``refuse`` (or full of messages out on links)."""
        if not isinstance(message, Message):
            message = Message(message, **sections)
        elif sections:
            raise TypeError("sections are given with a body, not with a Message")
        if self.closed:
            self._drop(message, "the queue is closed")
            return False
        if len(self) >= self.limit:
            if self.overflow is Overflow.REFUSE:
                self._drop(message, f"refused: the queue is full ({self.limit} messages)")
                return False
            if not self._ready:
                self._drop(message, f"overflow: the queue is full ({self.limit} messages), "
                                    "all out on links")
                return False
            self._drop(self._ready.popleft(),
                       f"overflow: the oldest waiting message of a full queue ({self.limit})")
        self._seq += 1
        message.seq = self._seq
        self._ready.append(message)
        self.dispatch()
        return True

    def purge(self) -> int:
        """Drop every waiting message (those out on links stay); how many were dropped."""
        count = len(self._ready)
        self._ready.clear()
        return count

    def close(self, condition: str = "amqp:resource-deleted",
              description: str = "the queue was deleted") -> None:
        """The queue is gone: every consumer detaches with ``condition``; its messages are
        dropped (without ``on_drop``: the application deleted them)."""
        self.closed = True
        self._ready.clear()
        self._out.clear()
        for consumer in list(self.consumers):
            consumer.end(condition, description)
        self.consumers.clear()

    # -- the consumers' side ---------------------------------------------------------------
    def attach(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.dispatch()

    def detach(self, consumer: Consumer, unsettled: Iterable[Message] = ()) -> None:
        """``consumer`` is gone; its ``unsettled`` messages come back (a possible duplicate:
        their delivery-count goes up)."""
        if consumer in self.consumers:
            index = self.consumers.index(consumer)
            del self.consumers[index]
            if index < self._turn:
                self._turn -= 1
        for message in unsettled:
            if self._out.pop(message.seq, None) is not None:
                message.delivery_count += 1
                self._return(message)
        self.dispatch()

    def settle(self, message: Message, outcome: Outcome, *, delivery_failed: bool = False,
               annotations: Mapping[str, Any] | None = None) -> None:
        """The consumer's outcome for ``message`` (the rules are the module's docstring)."""
        if self._out.pop(message.seq, None) is None:
            return  # not out of this queue (closed or purged meanwhile)
        if outcome is Outcome.ACCEPTED:
            return
        if outcome is Outcome.REJECTED:
            self._drop(message, "rejected")
            return
        if outcome is Outcome.MODIFIED:
            if delivery_failed:
                message.delivery_count += 1
            if annotations:
                message.annotations = {**(message.annotations or {}), **annotations}
        self._return(message)
        self.dispatch()

    def dispatch(self) -> None:
        """Hand waiting messages to consumers with credit, round robin. Safe to call from a
        consumer's ``deliver`` (it runs again once the current pass ends)."""
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._pass()
        finally:
            self._dispatching = False

    def _pass(self) -> None:
        ready, consumers = self._ready, self.consumers
        while ready and consumers:
            count = len(consumers)
            start = self._turn % count
            for step in range(count):
                consumer = consumers[(start + step) % count]
                if consumer.credit > 0:
                    break
            else:
                return
            self._turn = (start + step + 1) % count
            message = ready.popleft()
            if not consumer.presettled:
                self._out[message.seq] = message
            consumer.deliver(message)

    def _return(self, message: Message) -> None:
        """``message`` back among the waiting, at its place by the order of ``put``."""
        ready = self._ready
        if not ready or message.seq < ready[0].seq:
            ready.appendleft(message)
            return
        for index, other in enumerate(ready):
            if other.seq > message.seq:
                ready.insert(index, message)
                return
        ready.append(message)

    def _drop(self, message: Message, reason: str) -> None:
        if self.on_drop is None:
            return
        try:
            self.on_drop(self, message, reason)
        except Exception:  # the application's hook must not break a put or a settlement
            log.exception("on_drop hook of queue %s failed", self.name)
