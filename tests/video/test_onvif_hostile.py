"""Hostile and malformed ONVIF requests: each is answered in SOAP with the status it calls
for (never a 500 page, a traceback or a hang), and the camera serves a good request after."""

from __future__ import annotations

import logging
from typing import NamedTuple

import pytest
from lxml import etree

from emulators.testing import RunningFarm
from tests.video.clients import (
    ONVIF_ADMINS,
    SOAP12,
    onvif_envelope,
    onvif_fault,
    onvif_post,
    onvif_run,
    onvif_service_url,
    onvif_token,
    onvif_url,
)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
INFO = "<tds:GetDeviceInformation/>"


class Case(NamedTuple):
    id: str
    data: bytes
    status: int
    subcode: str  # the SOAP 1.2 subcode ("" for the SOAP 1.1 fault)
    path: str = "device_service"
    method: str = "POST"


def _token(**changes: str) -> bytes:
    """A token broken before any password is looked at (whichever camera reads it)."""
    token = onvif_token("admin", "instar")
    for old, new in changes.items():
        token = token.replace(old, new)
    return onvif_envelope(INFO, token)


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;"}">'
                     .encode() for i in range(10))
          + b']><env:Envelope xmlns:env="' + SOAP12.encode() + b'"><env:Body>&lol9;'
          b"</env:Body></env:Envelope>")
CASES = [
    Case("billion-laughs", LAUGHS, 400, "ter:WellFormed"),
    Case("external-entity", b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM '
         b'"file:///etc/passwd">]><env:Envelope xmlns:env="' + SOAP12.encode()
         + b'"><env:Body><x>&x;</x></env:Body></env:Envelope>', 400, "ter:WellFormed"),
    Case("dtd", b'<?xml version="1.0"?><!DOCTYPE env:Envelope [<!ELEMENT a ANY>]>'
         + onvif_envelope(INFO).split(b"?>", 1)[1], 400, "ter:WellFormed"),
    Case("300-KiB-document", onvif_envelope(INFO, "<x>" + "a" * 300 * 1024 + "</x>"), 413,
         "ter:WellFormed"),
    Case("not-xml", b"GET / HTTP/1.1 hello", 400, "ter:WellFormed"),
    Case("not-an-envelope", b'<tds:GetDeviceInformation xmlns:tds="http://www.onvif.org/'
         b'ver10/device/wsdl"/>', 400, "ter:WellFormed"),
    Case("envelope-without-body", b'<env:Envelope xmlns:env="' + SOAP12.encode()
         + b'"><env:Header/></env:Envelope>', 400, "ter:WellFormed"),
    Case("soap-1.1-envelope", b'<s:Envelope xmlns:s="' + SOAP11.encode() + b'"><s:Body>'
         b'<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body>'
         b"</s:Envelope>", 500, ""),
    Case("unknown-operation", onvif_envelope("<tds:FormatHardDisk/>"), 500,
         "ter:ActionNotSupported"),
    Case("operation-of-another-service", onvif_envelope("<trt:GetProfiles/>"), 500,
         "ter:ActionNotSupported"),
    Case("truncated-xml", onvif_envelope(INFO)[:-20], 400, "ter:WellFormed"),
    Case("wrong-envelope-namespace", onvif_envelope(INFO).replace(SOAP12.encode(),
                                                                  b"urn:not-soap"),
         400, "ter:WellFormed"),
    Case("wrong-operation-namespace", onvif_envelope(
        '<GetDeviceInformation xmlns="http://www.onvif.org/ver99/device/wsdl"/>'), 500,
        "ter:ActionNotSupported"),
    Case("non-utf8-bytes", onvif_envelope("<tds:SetHostname><tds:Name>X</tds:Name>"
                                          "</tds:SetHostname>").replace(b">X<", b">\xff\xfe<"),
         400, "ter:WellFormed"),
    Case("garbage-nonce", _token(**{"<wsse:Nonce>": "<wsse:Nonce>@@not base64@@"}), 400,
         "ter:NotAuthorized"),
    Case("created-not-a-date", _token(**{"<wsu:Created>": "<wsu:Created>yesterday"}), 400,
         "ter:NotAuthorized"),
    Case("unknown-path", onvif_envelope(INFO), 404, "wsa:DestinationUnreachable",
         path="nowhere"),
    Case("get-method", b"", 405, "ter:ActionNotSupported", method="GET"),
    Case("imaging-operation-at-media", onvif_envelope(
        "<timg:GetImagingSettings><timg:VideoSourceToken>VideoSource_1</timg:VideoSourceToken>"
        "</timg:GetImagingSettings>"), 500, "ter:ActionNotSupported", path="media"),
]



@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_gets_a_soap_fault(camera: tuple[RunningFarm, str], case: Case,
                                           caplog: pytest.LogCaptureFixture) -> None:
    farm, kind = camera
    caplog.set_level(logging.INFO)
    url = onvif_service_url(onvif_url(farm), case.path)
    status, headers, text = onvif_run(onvif_post(url, case.data, method=case.method))
    assert status == case.status, text
    root = etree.fromstring(text.encode())
    if case.subcode:
        assert headers["Content-Type"].startswith("application/soap+xml")
        assert onvif_fault(text)[1] == case.subcode
    else:  # SOAP 1.1: a 1.1 VersionMismatch fault naming the envelope the camera speaks
        assert root.tag == f"{{{SOAP11}}}Envelope"
        assert root.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultcode") == \
            "s:VersionMismatch"
        upgrade = root.find(f"{{{SOAP11}}}Header/{{{SOAP12}}}Upgrade/"
                            f"{{{SOAP12}}}SupportedEnvelope")
        assert upgrade is not None and upgrade.get("qname") == "env:Envelope"
    assert "root:x" not in text and "Traceback" not in text  # no /etc/passwd, no trace
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # The camera still serves a good request.
    good = onvif_envelope(INFO, onvif_token(*ONVIF_ADMINS[kind]))
    status, _, text = onvif_run(onvif_post(onvif_url(farm), good))
    assert status == 200, text


def test_operation_named_in_the_content_type(camera: tuple[RunningFarm, str]) -> None:
    farm, _ = camera
    service = farm.farm.members["cam"].video.onvif

    class Fake:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    cases = {
        'application/soap+xml; charset=utf-8; action="http://www.onvif.org/ver10/device/wsdl/'
        'GetDeviceInformation"': "GetDeviceInformation",
        "application/soap+xml; action=http://www.onvif.org/ver10/media/wsdl/GetProfiles":
            "GetProfiles",
        "application/soap+xml; charset=utf-8": None,
    }
    for content_type, wanted in cases.items():
        assert service.operation_of(Fake({"Content-Type": content_type})) == wanted
    assert service.operation_of(Fake({"SOAPAction": '"urn:x/GetScopes"'})) == "GetScopes"
