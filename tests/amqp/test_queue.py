"""The queue's rules (emulators/core/amqp/queue.py) without a socket: order, credit, round robin,
the outcomes, lost deliveries, the bound and its two overflow policies, closing."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.core.amqp.queue import Message, Outcome, Overflow, Queue


class Consumer:
    """A consumer with the credit a test gives it, keeping what it was handed."""

    def __init__(self, queue: Queue, credit: int = 0, *, presettled: bool = False) -> None:
        self.queue = queue
        self.credit = credit
        self.presettled = presettled
        self.got: list[Message] = []
        self.ended: tuple[str, str] | None = None

    def deliver(self, message: Message) -> None:
        self.credit -= 1
        self.got.append(message)

    def end(self, condition: str, description: str) -> None:
        self.ended = (condition, description)

    def grant(self, credit: int) -> None:
        self.credit += credit
        self.queue.dispatch()

    def bodies(self) -> list[Any]:
        return [m.body for m in self.got]


def queue_with(*bodies: str, **options: Any) -> tuple[Queue, list[tuple[Any, str]]]:
    dropped: list[tuple[Any, str]] = []
    queue = Queue("q", on_drop=lambda q, m, reason: dropped.append((m.body, reason)), **options)
    for body in bodies:
        queue.put(body)
    return queue, dropped


def test_messages_wait_for_credit_and_go_out_in_order() -> None:
    queue, _ = queue_with("a", "b", "c")
    consumer = Consumer(queue)
    queue.attach(consumer)
    assert consumer.got == [] and queue.waiting == 3
    consumer.grant(2)
    assert consumer.bodies() == ["a", "b"]
    assert (queue.waiting, queue.unsettled, len(queue)) == (1, 2, 3)
    queue.put("d")
    consumer.grant(5)
    assert consumer.bodies() == ["a", "b", "c", "d"]


def test_consumers_take_turns_and_one_without_credit_is_skipped() -> None:
    queue, _ = queue_with()
    first, second, third = (Consumer(queue, 10), Consumer(queue, 10), Consumer(queue, 0))
    for consumer in (first, second, third):
        queue.attach(consumer)
    for body in "abcde":
        queue.put(body)
    assert (first.bodies(), second.bodies(), third.bodies()) == (["a", "c", "e"], ["b", "d"],
                                                                   [])


def test_a_consumer_leaving_keeps_the_turns_going() -> None:
    queue, _ = queue_with()
    consumers = [Consumer(queue, 10) for _ in range(3)]
    for consumer in consumers:
        queue.attach(consumer)
    queue.put("a")
    queue.put("b")  # the third's turn is next
    queue.detach(consumers[0])
    queue.put("c")
    queue.put("d")
    assert [c.bodies() for c in consumers] == [["a"], ["b", "d"], ["c"]]


@pytest.mark.parametrize(("outcome", "kwargs", "back", "count", "dropped"), [
    (Outcome.ACCEPTED, {}, False, 0, []),
    (Outcome.REJECTED, {}, False, 0, [("a", "rejected")]),
    (Outcome.RELEASED, {}, True, 0, []),
    (Outcome.MODIFIED, {}, True, 0, []),
    (Outcome.MODIFIED, {"delivery_failed": True}, True, 1, []),
], ids=["accepted", "rejected", "released", "modified", "modified-failed"])
def test_an_outcome(outcome: Outcome, kwargs: dict[str, Any], back: bool, count: int,
                    dropped: list[tuple[str, str]]) -> None:
    queue, drops = queue_with("a", "b")
    consumer = Consumer(queue, 1)
    queue.attach(consumer)
    message = consumer.got[0]
    queue.settle(message, outcome, **kwargs)
    consumer.grant(1)
    assert consumer.bodies() == (["a", "a"] if back else ["a", "b"])
    assert message.delivery_count == count
    assert drops == dropped


def test_modified_annotations_are_merged() -> None:
    queue, _ = queue_with()
    queue.put(Message("a", annotations={"x-keep": 1, "x-change": 1}))
    consumer = Consumer(queue, 1)
    queue.attach(consumer)
    queue.settle(consumer.got[0], Outcome.MODIFIED, annotations={"x-change": 2, "x-new": 3})
    assert queue.messages().__next__().annotations == {"x-keep": 1, "x-change": 2, "x-new": 3}


def test_messages_back_from_several_links_keep_their_first_order() -> None:
    queue, _ = queue_with("a", "b", "c", "d")
    first, second = Consumer(queue, 2), Consumer(queue, 2)
    queue.attach(first)
    queue.attach(second)
    assert (first.bodies(), second.bodies()) == (["a", "b"], ["c", "d"])
    queue.put("e")
    queue.settle(second.got[1], Outcome.RELEASED)  # d back first
    queue.settle(first.got[0], Outcome.RELEASED)  # then a
    assert [m.body for m in queue.messages()] == ["a", "d", "e"]


def test_a_lost_links_unsettled_messages_come_back_counted_ahead_of_newer_ones() -> None:
    queue, _ = queue_with("a", "b", "c")
    gone = Consumer(queue, 2)
    queue.attach(gone)
    queue.put("d")
    queue.detach(gone, list(reversed(gone.got)))  # the order given does not matter
    next_one = Consumer(queue, 10)
    queue.attach(next_one)
    assert [(m.body, m.delivery_count) for m in next_one.got] == [
        ("a", 1), ("b", 1), ("c", 0), ("d", 0)]


def test_a_presettled_consumer_takes_messages_for_good() -> None:
    queue, _ = queue_with("a", "b")
    consumer = Consumer(queue, 5, presettled=True)
    queue.attach(consumer)
    assert consumer.bodies() == ["a", "b"] and len(queue) == 0
    queue.detach(consumer, consumer.got)  # nothing of it was unsettled
    assert len(queue) == 0


def test_a_full_queue_drops_its_oldest_waiting_message_by_default() -> None:
    queue, dropped = queue_with("a", "b", "c", limit=3)
    assert queue.put("d") is True
    assert [m.body for m in queue.messages()] == ["b", "c", "d"]
    assert dropped == [("a", "overflow: the oldest waiting message of a full queue (3)")]


def test_a_full_queue_of_messages_out_on_links_drops_the_new_one() -> None:
    queue, dropped = queue_with("a", "b", limit=2)
    queue.attach(Consumer(queue, 2))
    assert queue.put("c") is False
    assert dropped == [("c", "overflow: the queue is full (2 messages), all out on links")]
    assert len(queue) == 2


def test_a_full_refusing_queue_keeps_what_it_has() -> None:
    queue, dropped = queue_with("a", "b", limit=2, overflow="refuse")
    assert queue.overflow is Overflow.REFUSE
    assert queue.put("c") is False
    assert [m.body for m in queue.messages()] == ["a", "b"]
    assert dropped == [("c", "refused: the queue is full (2 messages)")]


def test_a_released_message_does_not_count_twice_against_the_limit() -> None:
    queue, dropped = queue_with("a", "b", limit=2)
    consumer = Consumer(queue, 1)
    queue.attach(consumer)
    queue.settle(consumer.got[0], Outcome.RELEASED)
    assert len(queue) == 2 and dropped == []


def test_a_closed_queue_ends_its_consumers_and_takes_nothing_more() -> None:
    queue, dropped = queue_with("a", "b")
    consumer = Consumer(queue, 1)
    queue.attach(consumer)
    queue.close()
    assert consumer.ended == ("amqp:resource-deleted", "the queue was deleted")
    assert len(queue) == 0 and queue.consumers == []
    queue.settle(consumer.got[0], Outcome.RELEASED)  # too late: nothing comes back
    assert queue.put("c") is False
    assert len(queue) == 0 and dropped == [("c", "the queue is closed")]


def test_a_consumer_that_puts_while_handed_a_message_is_served_in_order() -> None:
    queue, _ = queue_with("a")

    class Echo(Consumer):
        def deliver(self, message: Message) -> None:
            super().deliver(message)
            if message.body == "a":
                queue.put("b")  # re-entered from the dispatch

    echo = Echo(queue, 5)
    queue.attach(echo)
    assert echo.bodies() == ["a", "b"]


def test_a_failing_drop_hook_does_not_break_a_put(caplog: pytest.LogCaptureFixture) -> None:
    def broken(queue: Queue, message: Message, reason: str) -> None:
        raise RuntimeError("journal down")

    queue = Queue("q", limit=1, on_drop=broken)
    queue.put("a")
    assert queue.put("b") is True
    assert "on_drop hook of queue q failed" in caplog.text


@pytest.mark.parametrize(("make", "error"), [
    (lambda: Message(b"x", properties={"not_a_field": 1}), ValueError),
    (lambda: Message({"a": 1}), TypeError),  # type: ignore[arg-type]
    (lambda: Queue("q", limit=0), ValueError),
    (lambda: Queue("q", overflow="sometimes"), ValueError),
    (lambda: Queue("q").put(Message("a"), subject="x"), TypeError),
], ids=["unknown-property", "body-type", "limit", "overflow", "sections-with-message"])
def test_what_a_queue_refuses_to_be_given(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()
