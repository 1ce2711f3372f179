"""The farm's AMQP 1.0 server (emulators/core/amqp/) delivering a queue to one proton consumer,
against a proton server (python-qpid-proton's own Container, the same engine behind its own
selector loop) measured in the same run.

    python bench/amqp.py [--messages 20000] [--runs 3] [--window 100] [--presettled] [--tls]

Each server runs in its own process (ended by the bench when its run is over), pinned to one
core, with --messages messages ready (IoTDA's property-report push document as the body, an
amqp-value string, about 300 bytes);
the consumer runs in this process, pinned to the other core: a proton ``MessagingHandler``
with a credit window of --window that accepts every message (or a pre-settled link with
--presettled). Timed from the first message to the last; printed: messages per second and the
server's CPU time per message, the median of --runs runs, the farm's and the baseline's
alternating. The farm's server authenticates with SASL PLAIN (its own layer) and journals
nothing; the baseline has no SASL (once per connection either way). --tls puts both behind TLS
1.2+ with the same kind of certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, env_note, pin, server_and_load_cores, show  # noqa: E402

BODY = json.dumps({
    "resource": "device.property", "event": "report", "event_time": "20261203T120000Z",
    "notify_data": {"header": {"app_id": "a1b2c3", "device_id": "prod_dev-000001",
                               "node_id": "dev-000001", "product_id": "prod",
                               "gateway_id": "prod_dev-000001"},
                    "body": {"services": [{"service_id": "Meter",
                                           "properties": {"voltage": 231.5, "current": 4.2},
                                           "event_time": "20261203T120000Z"}]}}})
USER, PASSWORD = "bench", "bench-password"


# -- the servers, each in its own process --------------------------------------------------

def serve_farm(messages: int, tls: tuple[str, str] | None) -> None:
    from emulators.core.amqp.hooks import AmqpApplication, Peer
    from emulators.core.amqp.options import AmqpOptions
    from emulators.core.amqp.queue import Queue
    from emulators.core.amqp.server import AmqpServer
    from emulators.pki import server_context

    class App(AmqpApplication):
        def __init__(self) -> None:
            self.queue = Queue("bench", limit=messages)
            for _ in range(messages):
                self.queue.put(BODY)

        def authenticate(self, username: str, password: str, peer: Peer) -> Any:
            return username if (username, password) == (USER, PASSWORD) else None

        def open_queue(self, address: str, principal: Any) -> Queue | None:
            return self.queue if address == "bench" else None

    async def main() -> None:
        context = server_context(*tls) if tls else None
        server = AmqpServer(App(), tls=(lambda: context) if context else None,
                            options=AmqpOptions(attach_deadline=None, idle_timeout=0))
        _, port = await server.start()
        print(port, flush=True)
        await asyncio.Event().wait()  # until the bench terminates the process

    asyncio.run(main())


def serve_proton(messages: int, tls: tuple[str, str] | None) -> None:
    from proton import Link, Message, SSLDomain
    from proton.handlers import MessagingHandler
    from proton.reactor import Container

    class Broker(MessagingHandler):
        """Sends ``messages`` messages to whoever attaches a receiver, as credit allows."""

        def __init__(self) -> None:
            super().__init__()
            self.left = messages

        def on_start(self, event: Any) -> None:
            domain = None
            if tls:
                domain = SSLDomain(SSLDomain.MODE_SERVER)
                with tempfile.TemporaryDirectory() as tmp:
                    cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                    cert.write_text(tls[0])
                    key.write_text(tls[1])
                    domain.set_credentials(str(cert), str(key), None)
            # proton's Acceptor does not say which port 0 became: a free one is picked
            port = free_port()
            event.container.listen(f"{'amqps' if tls else 'amqp'}://127.0.0.1:{port}",
                                   ssl_domain=domain)
            print(port, flush=True)

        def on_link_opening(self, event: Any) -> None:
            link = event.link
            if link.is_sender:
                link.source.address = link.remote_source.address
                link.snd_settle_mode = link.remote_snd_settle_mode  # as the farm's server

        def on_sendable(self, event: Any) -> None:
            sender = event.sender
            presettled = sender.snd_settle_mode == Link.SND_SETTLED
            while sender.credit and self.left:
                delivery = sender.send(Message(body=BODY))
                if presettled:
                    delivery.settle()
                self.left -= 1

    Container(Broker()).run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the consumer ----------------------------------------------------------------------------

def consume(port: int, *, messages: int, window: int, presettled: bool, tls: bool,
            sasl: bool) -> float:
    """Messages per second delivered to one proton consumer, first to last."""
    from proton import SSLDomain
    from proton.handlers import MessagingHandler
    from proton.reactor import AtMostOnce, Container

    class Consumer(MessagingHandler):
        def __init__(self) -> None:
            super().__init__(prefetch=window)
            self.count = 0
            self.first = self.last = 0.0

        def on_start(self, event: Any) -> None:
            domain = None
            if tls:
                domain = SSLDomain(SSLDomain.MODE_CLIENT)
                domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
            options: dict[str, Any] = {"sasl_enabled": False}
            if sasl:
                options = {"user": USER, "password": PASSWORD, "allowed_mechs": "PLAIN"}
            connection = event.container.connect(
                f"{'amqps' if tls else 'amqp'}://127.0.0.1:{port}", ssl_domain=domain,
                reconnect=False, **options)
            event.container.create_receiver(
                connection, "bench", options=AtMostOnce() if presettled else None)

        def on_message(self, event: Any) -> None:
            self.count += 1
            if self.count == 1:
                self.first = time.perf_counter()
            if self.count == messages:
                self.last = time.perf_counter()
                event.connection.close()

    consumer = Consumer()
    Container(consumer).run()
    if consumer.count != messages:
        raise SystemExit(f"bench: {consumer.count} of {messages} messages arrived")
    return (messages - 1) / (consumer.last - consumer.first)


def one_run(kind: str, args: argparse.Namespace, cores: set[int],
            tls: tuple[str, str] | None) -> tuple[float, float]:
    """(messages/s, server CPU microseconds per message) of one server process."""
    command = [sys.executable, __file__, "--serve", kind, "--messages", str(args.messages)]
    if tls:
        command.append("--tls")
    env = {**os.environ, "BENCH_TLS": json.dumps(tls) if tls else ""}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        pin(server.pid, cores)
        cpu_before = cpu_seconds(server.pid)
        rate = consume(port, messages=args.messages, window=args.window,
                       presettled=args.presettled, tls=bool(tls), sasl=kind == "farm")
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()
    return rate, cpu / args.messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--presettled", action="store_true")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--serve", choices=["farm", "proton"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        identity = json.loads(os.environ["BENCH_TLS"]) if args.tls else None
        (serve_farm if args.serve == "farm" else serve_proton)(args.messages, identity)
        return
    tls = None
    if args.tls:
        from emulators import pki

        key = pki.ec_key()
        ca = pki.make_ca(pki.name(CN="bench CA"), key)
        server_key = pki.ec_key()
        cert = pki.issue(server_key.public_key(), pki.name(CN="127.0.0.1"), ca, key,
                         server=True, ip_addresses=("127.0.0.1",))
        tls = (pki.cert_pem(cert) + pki.cert_pem(ca), pki.key_pem(server_key))
    server_cores, _ = server_and_load_cores()
    others = set(os.sched_getaffinity(0)) - server_cores
    if others:
        os.sched_setaffinity(0, others)
    results: dict[str, list[tuple[float, float]]] = {"farm": [], "proton": []}
    for _ in range(args.runs):
        for kind in results:
            results[kind].append(one_run(kind, args, server_cores, tls))
    rows = []
    for kind, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        rows.append((kind, f"{rate:,.0f} messages/s, server CPU {cpu:.1f} us/message"))
    farm = statistics.median(r for r, _ in results["farm"])
    proton = statistics.median(r for r, _ in results["proton"])
    rows.append(("farm / proton", f"{farm / proton:.2f}x"))
    settle = "pre-settled" if args.presettled else "accepted one by one"
    show(f"{args.messages} messages to one consumer, window {args.window}, {settle}, "
         f"{'TLS' if tls else 'TCP'} ({env_note()})", rows)


if __name__ == "__main__":
    main()
