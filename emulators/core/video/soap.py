"""The one SOAP codec of the video wing (ONVIF over HTTP, WS-Discovery over UDP): a hardened
parse of what a client sends, and the envelopes and faults the camera sends back.

Requests are parsed with defusedxml: a DTD, an entity declaration or an external reference is
refused before anything expands, and a document over ``MAX_DOCUMENT`` bytes is refused unread.
Replies are text built from escaped pieces (the camera's replies are small and fixed in shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

__all__ = ["Element", "Message", "SoapError", "envelope", "fault_envelope", "parse"]
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

# The largest request accepted: ONVIF requests are a few KiB; a SetScopes of many scopes
# stays far below this.
MAX_DOCUMENT = 256 * 1024

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"  # WS-Discovery 1.0's addressing
WSA10 = "http://www.w3.org/2005/08/addressing"  # WS-BaseNotification's
WSSE = ("http://docs.oasis-open.org/wss/2004/01/"
        "oasis-200401-wss-wssecurity-secext-1.0.xsd")
WSU = ("http://docs.oasis-open.org/wss/2004/01/"
       "oasis-200401-wss-wssecurity-utility-1.0.xsd")
TER = "http://www.onvif.org/ver10/error"

# Prefixes every reply declares on its envelope: a reply body may use any of them.
NAMESPACES: dict[str, str] = {
    "env": SOAP12,
    "wsa": WSA10,
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "tt": "http://www.onvif.org/ver10/schema",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tr2": "http://www.onvif.org/ver20/media/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "timg": "http://www.onvif.org/ver20/imaging/wsdl",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": TER,
}


class SoapError(Exception):
    """A request the camera answers with a SOAP fault: ``code`` is env:Sender or env:Receiver,
    ``subcode`` the ONVIF one (``ter:NotAuthorized``), ``reason`` the text."""

    def __init__(self, code: Literal["env:Sender", "env:Receiver"], subcode: str, reason: str,
                 *, subsubcode: str | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.subsubcode = subsubcode
        self.reason = reason
        # ONVIF Core "Error handling": sender faults travel with 400, receiver ones with 500.
        self.status = status or (400 if code == "env:Sender" else 500)


def not_authorized(reason: str = "Sender not Authorized") -> SoapError:
    return SoapError("env:Sender", "ter:NotAuthorized", reason)


def action_not_supported(reason: str = "Optional Action Not Implemented") -> SoapError:
    return SoapError("env:Receiver", "ter:ActionNotSupported", reason)


def bad_request(reason: str) -> SoapError:
    """The request is not well-formed SOAP the camera can read."""
    return SoapError("env:Sender", "ter:WellFormed", reason)


def invalid_arg(subsubcode: str, reason: str) -> SoapError:
    return SoapError("env:Sender", "ter:InvalidArgVal", reason, subsubcode=subsubcode)


@dataclass(frozen=True)
class Message:
    """A parsed SOAP request: its header and the body's first element."""

    envelope_ns: str  # SOAP 1.2 or 1.1, as the client spoke
    header: Element | None
    body: Element  # the operation element, e.g. {tds-ns}GetDeviceInformation

    @property
    def namespace(self) -> str:
        return self.body.tag[1:].partition("}")[0] if self.body.tag.startswith("{") else ""

    @property
    def operation(self) -> str:
        return self.body.tag.rpartition("}")[2]

    def header_child(self, namespace: str, local: str) -> Element | None:
        if self.header is None:
            return None
        return self.header.find(f"{{{namespace}}}{local}")


def parse(data: bytes, prefixes: dict[str, str] | None = None) -> Message:
    """The request's envelope, or SoapError (env:Sender) for anything that is not one.
    ``prefixes``, when given, is filled with the document's namespace declarations (prefix
    -> URI, the last one of a prefix wins): what a QName in element text (a Probe's
    ``dn:NetworkVideoTransmitter``) resolves against."""
    if len(data) > MAX_DOCUMENT:
        raise bad_request(f"the request is larger than {MAX_DOCUMENT} bytes")
    try:
        root = _parse_tree(data, prefixes)
    except DefusedXmlException:
        raise bad_request("DTDs and entity declarations are not accepted") from None
    except (ParseError, ValueError, UnicodeError) as exc:
        raise bad_request(f"the request is not well-formed XML: {exc}") from None
    ns = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    if root.tag.rpartition("}")[2] != "Envelope" or ns not in (SOAP12, SOAP11):
        raise SoapError("env:Sender", "ter:WellFormed", "the document is not a SOAP envelope")
    header = root.find(f"{{{ns}}}Header")
    body = root.find(f"{{{ns}}}Body")
    if body is None or len(body) == 0:
        raise bad_request("the SOAP envelope has no body element")
    return Message(ns, header, body[0])


def _parse_tree(data: bytes, prefixes: dict[str, str] | None) -> Element:
    if prefixes is None:
        return safe_xml.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                   forbid_external=True)
    parser = safe_xml.DefusedXMLParser(target=_TreeBuilder(prefixes), forbid_dtd=True,
                                       forbid_entities=True, forbid_external=True)
    parser.feed(data)
    root: Element = parser.close()
    return root


class _TreeBuilder(TreeBuilder):
    """ElementTree's builder, noting each namespace declaration as the parser meets it."""

    def __init__(self, prefixes: dict[str, str]) -> None:
        super().__init__()
        self._prefixes = prefixes

    def start_ns(self, prefix: str, uri: str) -> None:
        self._prefixes[prefix] = uri


def text_of(parent: Element | None, path: str, namespaces: dict[str, str] | None = None,
            default: str | None = None) -> str | None:
    """The stripped text at ``path`` under ``parent`` (``default`` when absent)."""
    if parent is None:
        return default
    found = parent.find(path, namespaces or {})
    if found is None or found.text is None:
        return default if found is None else ""
    return found.text.strip()


def xml_text(value: object) -> str:
    return escape(str(value))


def xml_attr(value: object) -> str:
    return quoteattr(str(value))


def _declarations(extra: dict[str, str] | None = None) -> str:
    spaces = dict(NAMESPACES)
    if extra:
        spaces.update(extra)
    return "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in spaces.items())


def envelope(body: str, header: str = "", *, namespaces: dict[str, str] | None = None) -> bytes:
    """A SOAP 1.2 envelope around ``body`` (and ``header``), as UTF-8 bytes."""
    head = f"<env:Header>{header}</env:Header>" if header else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope{_declarations(namespaces)}>'
            f"{head}<env:Body>{body}</env:Body></env:Envelope>").encode()


def fault_envelope(error: SoapError, header: str = "") -> bytes:
    sub = ""
    if error.subsubcode:
        sub = f"<env:Subcode><env:Value>{error.subsubcode}</env:Value></env:Subcode>"
    body = (f"<env:Fault><env:Code><env:Value>{error.code}</env:Value>"
            f"<env:Subcode><env:Value>{error.subcode}</env:Value>{sub}</env:Subcode>"
            f"</env:Code><env:Reason><env:Text xml:lang=\"en\">{xml_text(error.reason)}"
            f"</env:Text></env:Reason></env:Fault>")
    return envelope(body, header)


CONTENT_TYPE = "application/soap+xml; charset=utf-8"
