"""An application server for data forwarding tests: a plain HTTP server (the standard
library's) that records every POST and answers the status a test sets."""

from __future__ import annotations

import json
import queue
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def doc(self) -> Any:
        return json.loads(self.body)


class PushTarget:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls is not None else "http"
        self.received: queue.Queue[Received] = queue.Queue()
        self.status = 200
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size)
                status = target.status
                if status == 200:
                    target.received.put(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            # Each accepted socket does its handshake in its own handler thread.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        # A short poll: shutdown() waits for the loop's next look (0.5 s by default).
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def next(self, timeout: float = 10) -> Received:
        return self.received.get(timeout=timeout)

    def nothing(self, wait: float = 0.5) -> bool:
        """True when nothing arrives within ``wait`` seconds (for pushes that must not come:
        the positive case is always checked first, in the same test, with ``next``)."""
        try:
            got = self.received.get(timeout=wait)
        except queue.Empty:
            return True
        self.received.put(got)
        return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
