"""WS-Discovery as a client does it on the wire: a Probe or Resolve sent multicast or unicast
from a real UDP socket, the answers read back with their source addresses, and a socket that
listens on the group for Hello and Bye."""

from __future__ import annotations

import socket
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

GROUP, PORT = "239.255.255.250", 3702
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS = {"s": SOAP, "a": WSA, "d": WSD}


def probe_bytes(message_id: str | None = None, *, types: str | None = "dn:NetworkVideoTransmitter",
                scopes: str | None = None, match_by: str | None = None) -> tuple[str, bytes]:
    """A Probe as ONVIF clients send it: (its MessageID, the datagram)."""
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    body = ""
    if types is not None:
        body += f"<d:Types>{types}</d:Types>"
    if scopes is not None:
        attr = f' MatchBy="{match_by}"' if match_by else ""
        body += f"<d:Scopes{attr}>{scopes}</d:Scopes>"
    data = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}" xmlns:d="{WSD}" '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header>'
        f"<a:Action>{WSD}/Probe</a:Action><a:MessageID>{message_id}</a:MessageID>"
        "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>"
        f"<s:Body><d:Probe>{body}</d:Probe></s:Body></s:Envelope>").encode()
    return message_id, data


def resolve_bytes(address: str) -> tuple[str, bytes]:
    message_id = f"urn:uuid:{uuid.uuid4()}"
    data = (
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}" xmlns:d="{WSD}"><s:Header>'
        f"<a:Action>{WSD}/Resolve</a:Action><a:MessageID>{message_id}</a:MessageID>"
        "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body>"
        f"<d:Resolve><a:EndpointReference><a:Address>{address}</a:Address>"
        "</a:EndpointReference></d:Resolve></s:Body></s:Envelope>").encode()
    return message_id, data


@dataclass
class Answer:
    source: tuple[str, int]
    raw: bytes
    root: ET.Element

    def header(self, name: str) -> str | None:
        found = self.root.find(f"s:Header/a:{name}", NS)
        return found.text if found is not None else None

    @property
    def action(self) -> str | None:
        return self.header("Action")

    @property
    def xaddrs(self) -> str | None:
        found = self.root.find(".//d:XAddrs", NS)
        return found.text if found is not None else None

    @property
    def scopes(self) -> list[str]:
        found = self.root.find(".//d:Scopes", NS)
        return (found.text or "").split() if found is not None else []


def exchange(data: bytes, *, to: tuple[str, int] = (GROUP, PORT), wait: float = 1.5,
             source: str = "127.0.0.1",
             until: Callable[[list[Answer]], bool] | None = None) -> list[Answer]:
    """Send ``data`` and collect every answer that arrives within ``wait`` seconds (or until
    the answers so far satisfy ``until``: a test that knows what it waits for stops there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        sock.bind((source, 0))
        sock.sendto(data, to)
        return collect(sock, wait, until)


def collect(sock: socket.socket, wait: float,
            until: Callable[[list[Answer]], bool] | None = None) -> list[Answer]:
    answers: list[Answer] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        if until is not None and until(answers):
            break
        sock.settimeout(left)
        try:
            raw, source = sock.recvfrom(65536)
        except TimeoutError:
            break
        answers.append(Answer(source, raw, ET.fromstring(raw)))
    return answers


def group_listener() -> socket.socket:
    """A socket on the group, as a client waiting for Hello and Bye has one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1")))
    return sock
