"""The AMQP server (emulators/core/amqp/) driven by python-qpid-proton, over TLS with SASL PLAIN:
what a backend consuming a queue sees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest
from proton import Delivery, Endpoint, Event, Message
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection, BlockingReceiver, ConnectionClosed, LinkDetached

from tests.amqp.clients import PASSWORD, USER, Served, connected, pump_until, round_trip

Start = Callable[..., Served]


def test_a_client_trusting_the_farm_ca_receives_what_was_queued_before_and_after_the_attach(
        amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "before-1", "before-2")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1", credit=10)
        served.put("q1", "after-1", "after-2")
        bodies = []
        for _ in range(4):
            bodies.append(receiver.receive(timeout=5).body)
            receiver.accept()
        assert bodies == ["before-1", "before-2", "after-1", "after-2"]
        round_trip(connection)
    assert served.queue_state("q1") == (0, 0)
    sasl = served.events("sasl")[0]
    assert sasl["status"] == 0 and sasl["user"] == USER and sasl["detail"]["mechanism"] == "PLAIN"
    assert [e["detail"]["outcome"] for e in served.events("settle")] == ["accepted"] * 4
    assert all(protocol == "amqps" for protocol, _, _ in served.journal)


def test_a_client_that_checks_no_certificate_connects_as_huaweis_sample_does(
        amqp_server: Start) -> None:
    """Huawei's Java sample trusts any server certificate and names vhost ``default``."""
    served = amqp_server()
    served.put("q1", '{"resource": "device.property"}')
    with connected(served, verify=False, virtual_host="default") as connection:
        receiver = connection.create_receiver("q1")
        assert receiver.receive(timeout=5).body == '{"resource": "device.property"}'
        receiver.accept()
    assert served.events("open")[0]["detail"]["hostname"] == "default"
    assert served.app.peers[0].tls


def test_a_plain_listener_serves_the_same_protocol(amqp_server: Start) -> None:
    served = amqp_server(tls=False)
    served.put("q1", b"\x00binary\xff")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1")
        assert receiver.receive(timeout=5).body == b"\x00binary\xff"  # a data section
        receiver.accept()
    assert served.journal[0][0] == "amqp"


def test_a_wrong_password_is_a_sasl_auth_failure_and_journalled(amqp_server: Start) -> None:
    served = amqp_server()
    with pytest.raises(Exception, match="unauthorized-access") as caught:
        with connected(served, password="not-" + PASSWORD):
            pass
    assert "Authentication failed" in str(caught.value)
    sasl = served.wait_event("sasl")
    assert sasl["status"] == 1 and sasl["user"] == USER
    assert sasl["detail"]["reason"] == f"wrong password for {USER!r}"
    assert not served.events("open")


def test_an_unknown_queue_is_not_found(amqp_server: Start) -> None:
    served = amqp_server()
    with connected(served) as connection:
        with pytest.raises(LinkDetached) as caught:
            connection.create_receiver("no-such-queue")
        assert caught.value.condition == "amqp:not-found"
        assert "no queue 'no-such-queue'" in str(caught.value)
        # the connection goes on: the queue that exists is served
        served.put("q1", "still served")
        receiver = connection.create_receiver("q1")
        assert receiver.receive(timeout=5).body == "still served"
        receiver.accept()
    refusal = served.events("attach")[0]
    assert refusal["path"] == "no-such-queue"
    assert refusal["detail"]["condition"] == "amqp:not-found"


def test_an_application_that_fails_on_an_attach_refuses_that_link_only(
        amqp_server: Start, caplog: pytest.LogCaptureFixture) -> None:
    served = amqp_server()

    def broken(address: str, principal: object) -> None:
        raise RuntimeError("queue store down")

    served.app.open_queue = broken  # type: ignore[method-assign,assignment]
    with connected(served) as connection:
        with pytest.raises(LinkDetached) as caught:
            connection.create_receiver("q1")
        assert caught.value.condition == "amqp:internal-error"
        assert connection.conn.state & Endpoint.REMOTE_ACTIVE  # the connection goes on
    assert "open_queue failed" in caplog.text


def test_a_sender_link_is_not_allowed(amqp_server: Start) -> None:
    served = amqp_server()
    with connected(served) as connection:
        with pytest.raises(LinkDetached) as caught:
            connection.create_sender("q1")
        assert caught.value.condition == "amqp:not-allowed"
    assert served.events("attach")[0]["detail"]["role"] == "sender"
    assert served.queue_state("q1") == (0, 0)


def test_no_attach_within_the_deadline_closes_with_an_error_condition(
        amqp_server: Start) -> None:
    served = amqp_server(attach_deadline=0.3)
    with connected(served) as connection:
        with pytest.raises(ConnectionClosed) as caught:
            connection.wait(lambda: False, timeout=5)
        assert caught.value.condition == "amqp:resource-limit-exceeded"
        assert "no receiver link attached within 0.3 s" in str(caught.value)
    close = served.wait_event("close")
    assert close["detail"]["by"] == "server"
    assert close["detail"]["condition"] == "amqp:resource-limit-exceeded"


def test_an_attach_in_time_keeps_the_connection_past_the_deadline(amqp_server: Start) -> None:
    served = amqp_server(attach_deadline=0.5)
    with connected(served) as connection:
        receiver = connection.create_receiver("q1")
        time.sleep(0.6)  # past the deadline
        served.put("q1", "late")
        assert receiver.receive(timeout=5).body == "late"
        receiver.accept()
    assert served.wait_event("close")["detail"]["reason"] == "closed by the client"


class Collect(MessagingHandler):
    """A receiver's handler that grants no credit by itself (BlockingReceiver's own fetcher
    tops its credit up as messages arrive: a window, not a count)."""

    def __init__(self) -> None:
        super().__init__(prefetch=0, auto_accept=False)
        self.received: list[tuple[Message, Delivery]] = []

    def on_message(self, event: Event) -> None:
        assert event.delivery is not None
        self.received.append((event.message, event.delivery))

    def next(self, connection: BlockingConnection, receiver: BlockingReceiver
             ) -> tuple[Message, Delivery]:
        """Grant one credit and wait for the message it brings."""
        count = len(self.received)
        receiver.link.flow(1)
        connection.wait(lambda: len(self.received) > count, timeout=5)
        return self.received[-1]


def test_a_receiver_with_credit_one_gets_one_until_it_grants_more(amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "m1", "m2", "m3")
    collect = Collect()
    with connected(served) as connection:
        receiver = connection.create_receiver("q1", credit=1, handler=collect)
        connection.wait(lambda: len(collect.received) == 1, timeout=5)
        round_trip(connection)
        assert [m.body for m, _ in collect.received] == ["m1"]
        assert len(served.events("deliver")) == 1
        assert served.queue_state("q1") == (2, 1)
        collect.accept(collect.received[0][1])
        receiver.link.flow(1)
        connection.wait(lambda: len(collect.received) == 2, timeout=5)
        round_trip(connection)
        assert [m.body for m, _ in collect.received] == ["m1", "m2"]
        assert len(served.events("deliver")) == 2
        assert served.queue_state("q1") == (1, 1)


def test_released_and_modified_messages_come_back_first(amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "m1", "m2")
    collect = Collect()
    with connected(served) as connection:

        def settled(count: int) -> None:
            # proton's client writes a flow before the dispositions of the same batch: the
            # next credit is granted once the server has the outcome
            pump_until(connection, lambda: len(served.events("settle")) == count)

        receiver = connection.create_receiver("q1", credit=0, handler=collect)
        first, delivery = collect.next(connection, receiver)
        collect.release(delivery, delivered=False)  # released
        settled(1)
        again, delivery = collect.next(connection, receiver)
        assert (first.body, again.body, again.delivery_count) == ("m1", "m1", 0)
        collect.release(delivery, delivered=True)  # proton's "delivered": modified, no flags
        settled(2)
        third, delivery = collect.next(connection, receiver)
        assert (third.body, third.delivery_count) == ("m1", 0)
        delivery.local.failed = True  # modified with delivery-failed: an attempt counted
        collect.settle(delivery, Delivery.MODIFIED)
        settled(3)
        fourth, delivery = collect.next(connection, receiver)
        assert (fourth.body, fourth.delivery_count) == ("m1", 1)
        collect.accept(delivery)
        settled(4)
        fifth, delivery = collect.next(connection, receiver)
        assert fifth.body == "m2"
        collect.accept(delivery)
        settled(5)
    outcomes = [e["detail"]["outcome"] for e in served.events("settle")]
    assert outcomes == ["released", "modified", "modified", "accepted", "accepted"]


def test_a_rejected_message_is_dropped(amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "poison", "good")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1", credit=1)
        assert receiver.receive(timeout=5).body == "poison"
        receiver.reject()
        assert receiver.receive(timeout=5).body == "good"
        receiver.accept()
    assert served.app.dropped == [("q1", "poison", "rejected")]


def test_a_pre_settled_receiver_takes_messages_at_most_once(amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "a", "b")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1", credit=5, options=AtMostOnce())
        assert [receiver.receive(timeout=5).body for _ in range(2)] == ["a", "b"]
        round_trip(connection)
        assert served.queue_state("q1") == (0, 0)  # gone without any outcome
    assert all(e["detail"]["presettled"] for e in served.events("deliver"))
    assert not served.events("settle")


def test_two_consumers_of_one_queue_take_turns(amqp_server: Start) -> None:
    served = amqp_server()
    with connected(served) as connection:
        first = connection.create_receiver("q1", credit=10, name="first")
        second = connection.create_receiver("q1", credit=10, name="second")
        round_trip(connection)
        links = served.call(served.server.info)[0]["links"]
        assert [link["address"] for link in links] == ["q1", "q1"]
        assert all(link["credit"] >= 10 for link in links)  # proton's fetcher adds its window
        served.put("q1", "m1", "m2", "m3", "m4")
        got = {}
        for receiver in (first, second):
            got[receiver.link.name] = [receiver.receive(timeout=5).body for _ in range(2)]
            receiver.accept()
        assert got == {"first": ["m1", "m3"], "second": ["m2", "m4"]}


def test_message_sections_reach_the_client(amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", '{"a": 1}', properties={"content_type": "application/json",
                                             "subject": "device.property",
                                             "message_id": "id-1"},
               application_properties={"resource": "device.property"},
               annotations={"x-opt-source": "farm"})
    with connected(served) as connection:
        receiver = connection.create_receiver("q1")
        message = receiver.receive(timeout=5)
        receiver.accept()
    assert message.body == '{"a": 1}'
    assert message.content_type == "application/json"
    assert message.subject == "device.property"
    assert message.id == "id-1"
    assert message.properties == {"resource": "device.property"}
    assert message.annotations == {"x-opt-source": "farm"}


def test_a_deleted_queue_detaches_its_consumers(amqp_server: Start) -> None:
    served = amqp_server()
    with connected(served) as connection:
        receiver = connection.create_receiver("q1")
        round_trip(connection)
        served.call(lambda: served.app.queues["q1"].close())
        with pytest.raises(LinkDetached) as caught:
            receiver.receive(timeout=5)
        assert caught.value.condition == "amqp:resource-deleted"


DROPPING_CLIENT = textwrap.dedent("""
    import sys
    from proton import SSLDomain
    from proton.utils import BlockingConnection
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    connection = BlockingConnection(sys.argv[1], timeout=5, user=sys.argv[2],
                                    password=sys.argv[3], allowed_mechs="PLAIN",
                                    ssl_domain=domain)
    receiver = connection.create_receiver("q1", credit=2)
    for _ in range(2):
        print(receiver.receive(timeout=5).body, flush=True)
    sys.stdin.read()  # held open, unsettled, until killed
""")


def test_a_dropped_connections_unsettled_messages_go_to_the_next_consumer(
        amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "m1", "m2", "m3")
    url = f"amqps://127.0.0.1:{served.port}"
    with subprocess.Popen([sys.executable, "-c", DROPPING_CLIENT, url, USER, PASSWORD],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()}) as dropping:
        assert dropping.stdout is not None
        assert [dropping.stdout.readline().strip() for _ in range(2)] == ["m1", "m2"]
        dropping.kill()  # no close, no detach: the socket just goes
        dropping.wait()
    served.wait_event("close")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1", credit=10)
        got = []
        for _ in range(3):
            message = receiver.receive(timeout=5)
            got.append((message.body, message.delivery_count))
            receiver.accept()
    assert got == [("m1", 1), ("m2", 1), ("m3", 0)]
    assert [e["detail"]["outcome"] for e in served.events("settle")][:2] == ["lost", "lost"]
    assert served.events("close")[0]["detail"]["reason"] == "connection lost"


def test_stopping_the_server_closes_its_connections_with_forced(amqp_server: Start) -> None:
    served = amqp_server()
    served.put("q1", "unsettled")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1")
        assert receiver.receive(timeout=5).body == "unsettled"
        served.loop.run(served.server.stop())
        with pytest.raises(ConnectionClosed) as caught:
            connection.wait(lambda: False, timeout=5)
        assert caught.value.condition == "amqp:connection:forced"
    assert served.queue_state("q1") == (1, 0)  # back in its queue
    assert served.events("close")[0]["detail"]["reason"] == "the server is stopping"
