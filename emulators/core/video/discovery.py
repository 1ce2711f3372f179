"""WS-Discovery 1.0 (OASIS, 2005/04) target service for every camera of the process, as ONVIF
Core's "Discovery" asks of a device: Hello when it comes up, Bye when it goes, a ProbeMatch for
a Probe that fits its types and scopes, a ResolveMatch for a Resolve of its endpoint.

One hub per event loop holds one socket on ``239.255.255.250:3702`` that has joined the
group (multicast Probes reach it) and one socket per camera address on
``<address>:3702`` (unicast Probes to that address reach it, and every answer of a camera
leaves from it: a fleet of N cameras on N loopback addresses answers with N ProbeMatches, each
from its own address). All of them set SO_REUSEPORT, so several farm processes on one host
(shards) each receive a multicast Probe and answer for their own cameras. Answers to a
multicast Probe wait a random delay within APP_MAX_DELAY (500 ms), as the spec asks, so a
fleet does not answer in one burst.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import random
import socket
import struct
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

from ..faults import DISCOVERY_FAULTS
from . import soap

if TYPE_CHECKING:
    from .wing import VideoWing

log = logging.getLogger("emulators.video.discovery")

GROUP = "239.255.255.250"
PORT = 3702
APP_MAX_DELAY = 0.5
# A datagram over this is not a Probe anyone sends (ONVIF clients send about 600 bytes).
MAX_DATAGRAM = 16 * 1024

WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
WSA = soap.WSA  # WS-Discovery 1.0 uses the 2004/08 WS-Addressing
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TO_DISCOVERY = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
RFC3986 = f"{WSD}/rfc3986"
STRCMP0 = f"{WSD}/strcmp0"
TYPES = ((DN, "NetworkVideoTransmitter"), (TDS, "Device"))
_DECLARE = {"wsa": WSA, "d": WSD, "dn": DN, "tds": TDS}


def _envelope(action: str, body: str, *, relates_to: str | None = None,
              to: str = TO_DISCOVERY, sequence: tuple[int, int] | None = None) -> bytes:
    header = (f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
              + (f"<wsa:RelatesTo>{soap.xml_text(relates_to)}</wsa:RelatesTo>"
                 if relates_to else "")
              + f"<wsa:To>{to}</wsa:To><wsa:Action>{WSD}/{action}</wsa:Action>")
    if sequence is not None:
        header += (f'<d:AppSequence InstanceId="{sequence[0]}" '
                   f'MessageNumber="{sequence[1]}"/>')
    head = "".join(f' xmlns:{p}="{u}"' for p, u in {"env": soap.SOAP12, **_DECLARE}.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope{head}>'
            f"<env:Header>{header}</env:Header><env:Body>{body}</env:Body>"
            "</env:Envelope>").encode()


def _description(wing: VideoWing, version: int) -> str:
    scopes = " ".join(soap.xml_text(s) for s in wing.all_scopes())
    return (f"<wsa:EndpointReference><wsa:Address>{wing.endpoint}</wsa:Address>"
            f"</wsa:EndpointReference><d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
            f"<d:Scopes>{scopes}</d:Scopes><d:XAddrs>{soap.xml_text(wing.device_url())}"
            f"</d:XAddrs><d:MetadataVersion>{version}</d:MetadataVersion>")


def _qnames(text: str, prefixes: dict[str, str]) -> list[tuple[str | None, str]]:
    """``dn:NetworkVideoTransmitter tds:Device`` -> [(namespace or None, local), ...]."""
    found = []
    for token in text.split():
        prefix, sep, local = token.rpartition(":")
        found.append((prefixes.get(prefix) if sep else prefixes.get(""), local))
    return found


def _types_match(wanted: list[tuple[str | None, str]]) -> bool:
    # A type whose prefix the probe never declared is matched by its local name: clients in
    # the field send "dn:NetworkVideoTransmitter" without declaring dn more often than one
    # would like, and a camera that ignored them would be invisible to those clients.
    return all(any(local == t_local and ns in (None, t_ns) for t_ns, t_local in TYPES)
               for ns, local in wanted)


def _scope_matches(wanted: str, have: str, rule: str) -> bool:
    if rule == STRCMP0:
        return wanted == have
    # RFC 3986 rule (WS-Discovery 1.0 5.1): scheme and authority equal (case-insensitively),
    # the probe's path segments a prefix of the device's.
    w_head, _, w_path = wanted.partition("://")
    h_head, _, h_path = have.partition("://")
    if w_head.lower() != h_head.lower():
        return False
    w_auth, _, w_rest = w_path.partition("/")
    h_auth, _, h_rest = h_path.partition("/")
    if w_auth.lower() != h_auth.lower():
        return False
    w_segments = [s for s in w_rest.split("/") if s]
    h_segments = [s for s in h_rest.split("/") if s]
    return h_segments[:len(w_segments)] == w_segments


@dataclass
class Probe:
    message_id: str
    action: str  # Probe or Resolve
    types: list[tuple[str | None, str]] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    match_by: str = RFC3986
    endpoint: str | None = None  # a Resolve's endpoint address

    def matches(self, wing: VideoWing) -> bool:
        if self.action == "Resolve":
            return self.endpoint == wing.endpoint
        if self.match_by not in (RFC3986, STRCMP0):
            return False
        if not _types_match(self.types):
            return False
        have = wing.all_scopes()
        return all(any(_scope_matches(w, h, self.match_by) for h in have) for w in self.scopes)


def read_probe(data: bytes) -> Probe | None:
    """The Probe or Resolve ``data`` holds, or None for anything else (a Hello of another
    device, a ProbeMatch, garbage): a target service answers nothing else."""
    if len(data) > MAX_DATAGRAM:
        return None
    prefixes: dict[str, str] = {}
    try:
        message = soap.parse(data, prefixes)
    except soap.SoapError:
        return None
    if message.namespace != WSD or message.operation not in ("Probe", "Resolve"):
        return None
    message_id = soap.text_of(message.header, f"{{{WSA}}}MessageID") or ""
    if not message_id or len(message_id) > 256:
        return None
    body = message.body
    if message.operation == "Resolve":
        address = soap.text_of(body, f"{{{WSA}}}EndpointReference/{{{WSA}}}Address")
        return Probe(message_id, "Resolve", endpoint=address)
    probe = Probe(message_id, "Probe")
    types = body.find(f"{{{WSD}}}Types")
    if types is not None and types.text:
        probe.types = _qnames(types.text, prefixes)
    scopes: Element | None = body.find(f"{{{WSD}}}Scopes")
    if scopes is not None:
        probe.match_by = scopes.get("MatchBy", RFC3986)
        probe.scopes = (scopes.text or "").split()
    return probe


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, hub: Hub, local: str | None) -> None:
        self.hub = hub
        self.local = local  # the address a unicast socket is bound to; None: the group's

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.hub.received(data, addr, self.local)
        except Exception:  # noqa: BLE001 - one bad datagram must not end the listener
            log.exception("WS-Discovery: a datagram from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("WS-Discovery socket error: %s", exc)


class _Address:
    """One camera address: its socket on port 3702 and the cameras that live there."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport
        self.wings: list[VideoWing] = []


class Hub:
    """The WS-Discovery service of every camera on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._group: asyncio.DatagramTransport | None = None
        self._addresses: dict[str, _Address] = {}
        self._wings: dict[str, VideoWing] = {}  # by member name
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._instance = int(loop.time() * 1000) % 2**31  # AppSequence's InstanceId
        self._numbers: dict[str, int] = {}
        self._versions: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def empty(self) -> bool:
        return not self._wings

    # -- membership --------------------------------------------------------------------------
    async def join(self, wing: VideoWing) -> None:
        if wing.name in self._wings:
            return
        host = wing.url_host
        try:
            if self._group is None:
                self._group = await self._open_group()
            place = self._addresses.get(host)
            if place is None:
                place = _Address(await self._open_unicast(host))
                self._addresses[host] = place
        except OSError as exc:
            # A camera that cannot take part in discovery still works; the farm says why.
            log.warning("%s: WS-Discovery unavailable on %s:%d: %s", wing.name, host, PORT, exc)
            wing.record("wsd", "unavailable", detail={"reason": str(exc)})
            return
        place.wings.append(wing)
        self._wings[wing.name] = wing
        self._later(random.uniform(0, APP_MAX_DELAY), self._hello, wing)

    async def leave(self, wing: VideoWing) -> None:
        if self._wings.pop(wing.name, None) is None:
            return
        host = wing.url_host
        place = self._addresses.get(host)
        if place is not None:
            self._send(place, self._bye(wing), (GROUP, PORT))
            place.wings = [w for w in place.wings if w is not wing]
            if not place.wings:
                place.transport.close()
                del self._addresses[host]
        if not self._wings:
            self.close()

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._group is not None:
            self._group.close()
            self._group = None
        for place in self._addresses.values():
            place.transport.close()
        self._addresses.clear()
        self._wings.clear()

    async def _open_group(self) -> asyncio.DatagramTransport:
        sock = _socket()
        # Bound to the group's address, it receives what is sent to the group only: a unicast
        # Probe to an address where no discoverable camera lives reaches nobody.
        sock.bind((GROUP, PORT))
        joined = False
        # Loopback first (every farm camera of a test lives there), then the default
        # interface, which a host without a default route does not have.
        for interface in ("127.0.0.1", "0.0.0.0"):
            membership = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(interface))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
                joined = True
        if not joined:
            sock.close()
            raise OSError(f"cannot join {GROUP}")
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Receiver(self, None), sock=sock)
        return transport

    async def _open_unicast(self, host: str) -> asyncio.DatagramTransport:
        sock = _socket()
        bind = "" if ipaddress.ip_address(host).is_unspecified else host
        sock.bind((bind, PORT))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(
                host if ipaddress.ip_address(host).is_loopback else "0.0.0.0"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Receiver(self, host), sock=sock)
        return transport

    # -- receiving ---------------------------------------------------------------------------
    def received(self, data: bytes, addr: tuple[Any, int], local: str | None) -> None:
        probe = read_probe(data)
        if probe is None:
            return
        if local is None:  # to the group: every camera of this process, each after a delay
            candidates = list(self._wings.values())
            delay = True
        else:
            place = self._addresses.get(local)
            candidates = list(place.wings) if place else []
            delay = False
        for wing in candidates:
            key = (wing.name, probe.message_id)
            if key in self._seen:  # the same Probe again (clients repeat multicast sends)
                continue
            self._seen[key] = None
            if len(self._seen) > 65536:
                self._seen.popitem(last=False)
            if not probe.matches(wing):
                continue
            client = f"{addr[0]}:{addr[1]}"
            # A fired rule is journalled by the farm ("fault"); the probe says it went unanswered.
            rule = wing.fault("wsd", DISCOVERY_FAULTS, command=probe.action)
            wing.record("wsd", probe.action.lower(), client=client, method=probe.action,
                        detail={"multicast": local is None, "message_id": probe.message_id,
                                "answered": rule is None})
            if rule is not None:
                continue
            wait = random.uniform(0, APP_MAX_DELAY) if delay else 0.0
            self._later(wait, self._answer, wing, probe, addr)

    def _later(self, delay: float, callback: Any, *args: Any) -> None:
        handle: asyncio.TimerHandle

        def run() -> None:
            self._pending.discard(handle)
            callback(*args)

        handle = self.loop.call_later(delay, run)
        self._pending.add(handle)

    # -- sending -----------------------------------------------------------------------------
    def _sequence(self, wing: VideoWing) -> tuple[int, int]:
        number = self._numbers.get(wing.name, 0) + 1
        self._numbers[wing.name] = number
        return self._instance, number

    def _version(self, wing: VideoWing) -> int:
        """MetadataVersion: goes up whenever what the camera announces changes."""
        now = (*wing.all_scopes(), wing.device_url())
        version, seen = self._versions.get(wing.name, (0, ()))
        if seen != now:
            version += 1
            self._versions[wing.name] = (version, now)
        return version

    def _send(self, place: _Address | None, data: bytes, addr: tuple[Any, int]) -> None:
        if place is None or place.transport.is_closing():
            return
        with contextlib.suppress(OSError):
            place.transport.sendto(data, addr)

    def _hello(self, wing: VideoWing) -> None:
        if wing.name not in self._wings:
            return
        body = f"<d:Hello>{_description(wing, self._version(wing))}</d:Hello>"
        self._send(self._addresses.get(wing.url_host),
                   _envelope("Hello", body, sequence=self._sequence(wing)), (GROUP, PORT))

    def _bye(self, wing: VideoWing) -> bytes:
        body = (f"<d:Bye><wsa:EndpointReference><wsa:Address>{wing.endpoint}"
                "</wsa:Address></wsa:EndpointReference></d:Bye>")
        return _envelope("Bye", body, sequence=self._sequence(wing))

    def _answer(self, wing: VideoWing, probe: Probe, addr: tuple[Any, int]) -> None:
        if wing.name not in self._wings:
            return
        description = _description(wing, self._version(wing))
        if probe.action == "Resolve":
            body = f"<d:ResolveMatches><d:ResolveMatch>{description}</d:ResolveMatch>" \
                   "</d:ResolveMatches>"
        else:
            body = f"<d:ProbeMatches><d:ProbeMatch>{description}</d:ProbeMatch>" \
                   "</d:ProbeMatches>"
        data = _envelope(f"{probe.action}Matches", body, relates_to=probe.message_id,
                         to=ANONYMOUS, sequence=self._sequence(wing))
        self._send(self._addresses.get(wing.url_host), data, addr)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setblocking(False)
    return sock


class Discovery:
    """The process's hubs, one per event loop (a test process runs several loops)."""

    def __init__(self) -> None:
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}

    def _hub(self) -> Hub:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            hub = self._hubs[loop] = Hub(loop)
        return hub

    async def join(self, wing: VideoWing) -> None:
        await self._hub().join(wing)

    async def leave(self, wing: VideoWing) -> None:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            return
        await hub.leave(wing)
        if hub.empty:
            del self._hubs[loop]


DISCOVERY = Discovery()
