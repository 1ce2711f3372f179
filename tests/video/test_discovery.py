"""WS-Discovery as camera software uses it: a multicast Probe for NetworkVideoTransmitter finds
every camera of a fleet, each answering from its own address with the ProbeMatches the schema
asks for; a unicast Probe reaches one camera; Hello on start, Bye on stop; a camera in
non-discoverable mode keeps quiet; hostile datagrams get nothing and break nothing.

Other farms may run on this host while the tests do (the shards' tests, a developer's farm):
every assertion looks only at answers carrying this test's cameras' device service URLs."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from wsdiscovery import QName
from wsdiscovery.discovery import ThreadedWSDiscovery

from emulators.testing import RunningFarm
from tests.video.discovery_clients import (
    GROUP,
    NS,
    PORT,
    WSD,
    collect,
    exchange,
    group_listener,
    probe_bytes,
    resolve_bytes,
)

FLEET = {"version": 1, "name": "wsd", "emulators": [
    {"name": "cam", "kind": "instar-camera", "host": "127.0.0.2", "count": 3,
     "fleet": "addresses", "port": 0},
    {"name": "acti", "kind": "acti-camera", "host": "127.0.0.1", "port": 0,
     "video": {"location": "lobby"}},
]}


def onvif_urls(farm: RunningFarm) -> dict[str, str]:
    return {m["name"]: m["urls"]["onvif"] for m in farm.ready["emulators"]}


def ours(answers: list[Any], farm: RunningFarm) -> list[Any]:
    mine = set(onvif_urls(farm).values())
    return [a for a in answers if a.xaddrs in mine]


@pytest.fixture
def fleet(farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    return farm_factory(FLEET)


def test_one_multicast_probe_finds_every_camera_each_from_its_own_address(
        fleet: RunningFarm) -> None:
    message_id, probe = probe_bytes()
    urls = onvif_urls(fleet)
    answers = ours(exchange(probe, until=lambda got: len(ours(got, fleet)) >= len(urls)),
                   fleet)
    assert sorted(a.xaddrs for a in answers) == sorted(urls.values())
    for answer in answers:
        # Each answer leaves from the camera's own address and the discovery port.
        assert answer.source == (answer.xaddrs.split("//")[1].split(":")[0], PORT)
        # The schema Home Assistant's parser wants: Action, RelatesTo, the wrapper.
        assert answer.action == f"{WSD}/ProbeMatches"
        assert answer.header("RelatesTo") == message_id
        assert answer.header("To") == \
            "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
        [match] = answer.root.findall("s:Body/d:ProbeMatches/d:ProbeMatch", NS)
        assert match.find("a:EndpointReference/a:Address", NS).text.startswith("urn:uuid:")
        assert match.find("d:Types", NS).text == "dn:NetworkVideoTransmitter tds:Device"
        assert int(match.find("d:MetadataVersion", NS).text) >= 1
        assert "onvif://www.onvif.org/Profile/Streaming" in answer.scopes
    by_url = {a.xaddrs: a for a in answers}
    assert "onvif://www.onvif.org/name/cam-2" in by_url[urls["cam-2"]].scopes
    assert "onvif://www.onvif.org/hardware/E32" in by_url[urls["acti"]].scopes
    assert "onvif://www.onvif.org/location/lobby" in by_url[urls["acti"]].scopes
    assert "onvif://www.onvif.org/hardware/IN-9408%202K%2B" in by_url[urls["cam-1"]].scopes
    probes = fleet.journal(protocol="wsd", event="probe")
    assert {e["member"] for e in probes} == set(urls)


def test_a_repeated_probe_is_answered_once(fleet: RunningFarm) -> None:
    # Clients send a multicast Probe several times (UDP may lose one); the same MessageID
    # gets one answer per camera.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.bind(("127.0.0.1", 0))
        _, probe = probe_bytes()
        for _ in range(3):
            sock.sendto(probe, (GROUP, PORT))
        answers = ours(collect(sock, 1.5), fleet)
    assert len(answers) == 4


def test_home_assistants_discovery_library_finds_the_fleet(fleet: RunningFarm) -> None:
    wsd = ThreadedWSDiscovery()
    wsd.start()
    try:
        services = wsd.searchServices(
            types=[QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter")],
            timeout=2)
    finally:
        wsd.stop()
    found = {x for s in services for x in s.getXAddrs()}
    assert set(onvif_urls(fleet).values()) <= found


def test_a_unicast_probe_reaches_only_the_camera_at_that_address(fleet: RunningFarm) -> None:
    message_id, probe = probe_bytes()
    started = time.monotonic()
    answers = exchange(probe, to=("127.0.0.3", PORT), wait=1.0)
    assert [a.xaddrs for a in answers] == [onvif_urls(fleet)["cam-2"]]
    assert answers[0].source == ("127.0.0.3", PORT)
    assert answers[0].header("RelatesTo") == message_id
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("scopes", "match_by", "expected"), [
    ("onvif://www.onvif.org/name/cam-3", None, {"cam-3"}),
    ("onvif://www.onvif.org/location", None, {"cam-1", "cam-2", "cam-3", "acti"}),
    ("onvif://www.onvif.org/location/lobby", None, {"acti"}),
    ("onvif://www.onvif.org/name/cam", None, set()),  # segments, not characters
    ("ONVIF://WWW.ONVIF.ORG/name/cam-1", None, {"cam-1"}),  # scheme and host: any case
    ("onvif://www.onvif.org/name/cam-1", f"{WSD}/strcmp0", {"cam-1"}),
    ("onvif://www.onvif.org/name", f"{WSD}/strcmp0", set()),
    ("onvif://www.onvif.org/name/cam-1", "urn:example:unknown-rule", set()),
], ids=["name", "prefix", "location", "partial-segment", "case", "strcmp0", "strcmp0-prefix",
        "unknown-rule"])
def test_scopes_in_a_probe_select_cameras(fleet: RunningFarm, scopes: str,
                                          match_by: str | None, expected: set[str]) -> None:
    _, probe = probe_bytes(scopes=scopes, match_by=match_by)
    answers = ours(exchange(probe), fleet)
    names = {name for name, url in onvif_urls(fleet).items()
             if url in {a.xaddrs for a in answers}}
    assert names == expected


@pytest.mark.parametrize(("types", "answered"), [
    (None, True),
    ("dn:NetworkVideoTransmitter", True),
    ("tds:Device", True),
    ("dn:NetworkVideoDisplay", False),
    ("wsdp:Device", False),
], ids=["no-types", "nvt", "device", "display", "printer"])
def test_types_in_a_probe_select_cameras(fleet: RunningFarm, types: str | None,
                                         answered: bool) -> None:
    _, probe = probe_bytes(types=types)
    probe = probe.replace(b'xmlns:dn="', b'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
                          b'xmlns:wsdp="http://schemas.xmlsoap.org/ws/2006/02/devprof" xmlns:dn="')
    answers = ours(exchange(probe, to=("127.0.0.2", PORT), wait=1.0), fleet)
    assert bool(answers) is answered


def test_resolve_finds_the_camera_by_its_endpoint_reference(fleet: RunningFarm) -> None:
    [first] = ours(exchange(probe_bytes()[1], to=("127.0.0.4", PORT), wait=1.0), fleet)
    address = first.root.find(".//a:EndpointReference/a:Address", NS).text
    message_id, resolve = resolve_bytes(address)
    answers = ours(exchange(resolve), fleet)
    assert [a.xaddrs for a in answers] == [onvif_urls(fleet)["cam-3"]]
    assert answers[0].action == f"{WSD}/ResolveMatches"
    assert answers[0].header("RelatesTo") == message_id
    # The endpoint reference is the camera's for good: the same after a restart.
    fleet.loop.run(fleet.farm.members["cam-3"].stop())
    fleet.loop.run(fleet.farm.members["cam-3"].start())
    [again] = ours(exchange(probe_bytes()[1], to=("127.0.0.4", PORT), wait=1.0), fleet)
    assert again.root.find(".//a:EndpointReference/a:Address", NS).text == address


def test_hello_on_start_and_bye_on_stop(farm_factory: Callable[..., RunningFarm]) -> None:
    with group_listener() as listener:
        farm = farm_factory({"version": 1, "name": "hello", "emulators": [
            {"name": "solo", "kind": "acti-camera", "host": "127.0.0.9", "port": 0}]})
        url = onvif_urls(farm)["solo"]
        hellos = [a for a in collect(listener, 2.0) if a.xaddrs == url]
        assert [a.action for a in hellos] == [f"{WSD}/Hello"]
        assert hellos[0].source == ("127.0.0.9", PORT)
        address = hellos[0].root.find(".//a:EndpointReference/a:Address", NS).text
        farm.stop()
        byes = [a for a in collect(listener, 1.0) if a.action == f"{WSD}/Bye"
                and a.root.find(".//a:Address", NS).text == address]
        assert len(byes) == 1
        assert byes[0].root.find("s:Header/d:AppSequence", NS) is not None


def test_a_non_discoverable_camera_keeps_quiet(farm_factory: Callable[..., RunningFarm]) -> None:
    with group_listener() as listener:
        farm = farm_factory({"version": 1, "name": "quiet", "emulators": [
            {"name": "hidden", "kind": "instar-camera", "host": "127.0.0.10", "port": 0,
             "video": {"discoverable": False}},
            {"name": "shown", "kind": "instar-camera", "host": "127.0.0.11", "port": 0}]})
        urls = onvif_urls(farm)
        heard = {a.xaddrs for a in collect(listener, 1.5)}
        assert urls["shown"] in heard and urls["hidden"] not in heard
    answers = ours(exchange(probe_bytes()[1]), farm)
    assert [a.xaddrs for a in answers] == [urls["shown"]]
    assert exchange(probe_bytes()[1], to=("127.0.0.10", PORT), wait=0.7) == []
    # The owner turns discovery on from the control plane: the camera answers from then on.
    from tests.control_support import control

    reply = control(farm, "POST", "/v1/emulators/hidden/video/discoverable",
                    body={"discoverable": True})
    assert reply.status == 200 and reply.json()["discoverable"] is True
    answers = ours(exchange(probe_bytes()[1]), farm)
    assert sorted(a.xaddrs for a in answers) == sorted(urls.values())


def test_a_discovery_drop_fault_silences_one_camera(fleet: RunningFarm) -> None:
    fleet.add_fault(fault="discovery_drop", member="cam-1", protocol="wsd", command="Probe")
    answers = ours(exchange(probe_bytes()[1]), fleet)
    urls = onvif_urls(fleet)
    assert sorted(a.xaddrs for a in answers) == sorted(u for n, u in urls.items() if n != "cam-1")
    [entry] = fleet.journal(member="cam-1", protocol="wsd", event="fault")
    assert entry["detail"]["fault_type"] == "discovery_drop"
    [probe] = fleet.journal(member="cam-1", protocol="wsd", event="probe")
    assert probe["detail"]["answered"] is False


HOSTILE = {
    "garbage": b"\x00\xff" * 50,
    "empty": b"",
    "not-soap": b"<hello/>",
    "dtd-bomb": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                 b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>'),
    "external-entity": (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM '
                        b'"file:///etc/passwd">]><e>&x;</e>'),
    "huge": probe_bytes()[1].replace(b"<d:Probe>", b"<d:Probe>" + b" " * 20000),
    "no-message-id": probe_bytes()[1].replace(b"MessageID", b"Nothing"),
    "probe-match": probe_bytes()[1].replace(b"<d:Probe>", b"<d:ProbeMatches>").replace(
        b"</d:Probe>", b"</d:ProbeMatches>"),
    "truncated": probe_bytes()[1][:200],
    "bad-utf8": probe_bytes()[1].replace(b"dn:NetworkVideoTransmitter", b"\xc3\x28"),
}


@pytest.mark.parametrize("datagram", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_datagrams_get_no_answer_and_break_nothing(fleet: RunningFarm,
                                                           datagram: bytes) -> None:
    assert ours(exchange(datagram, to=("127.0.0.2", PORT), wait=0.5), fleet) == []
    answers = ours(exchange(probe_bytes()[1], to=("127.0.0.2", PORT), wait=1.0,
                            until=lambda got: bool(ours(got, fleet))), fleet)
    assert [a.xaddrs for a in answers] == [onvif_urls(fleet)["cam-1"]]


def test_a_probe_names_the_message_it_answers_even_with_odd_ids(fleet: RunningFarm) -> None:
    odd = f"uuid:{uuid.uuid4()}&<x>"
    _, probe = probe_bytes(message_id="PLACEHOLDER")
    probe = probe.replace(b"PLACEHOLDER", odd.replace("&", "&amp;").replace("<", "&lt;")
                          .replace(">", "&gt;").encode())
    [answer] = ours(exchange(probe, to=("127.0.0.2", PORT), wait=1.0), fleet)
    assert answer.header("RelatesTo") == odd
