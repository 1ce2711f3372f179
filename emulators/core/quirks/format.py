"""The quirk profile file (format 1): what a capture of a real device writes and a member with
``quirks: FILE`` replays. Frozen records, a YAML reader that says what is wrong and where,
a writer that keeps the file readable (text bodies as block scalars), and the checksum of the
redacted exchanges. docs/QUIRKS.md documents the format with examples.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

FORMAT = 1
# Placeholders: a whole value or a run inside a body, in angle brackets (a literal "<" in a
# recorded value is written "<<").
REQUEST_PLACEHOLDERS = ("<user>", "<password>", "<wrong-password>", "<basic>")
REPLY_PLACEHOLDERS = ("<length>", "<date>", "<address>", "<serial>", "<mac>", "<secret>",
                      "<key>", "<token>", "<pem>", "<request-id>")
Merge = Literal["key-values", "json"]
MERGES = ("key-values", "json")
# How a request carried its credentials, as the member judges them on replay.
CREDENTIALS = ("right", "wrong", "none")
LINE_ENDINGS = {"\r\n": "crlf", "\n": "lf"}


class Pair(list[str]):
    """A [name, value] pair: written on one line (``[cmd, getftpattr]``)."""


class ProfileError(ValueError):
    """A profile that cannot be used: the message says what and where (file, step)."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None  # as sent, redacted; not compared when matching
    credentials: str | None = None  # right, wrong, none: the member's verdict must agree

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"method": self.method, "path": self.path,
                               "query": [Pair(p) for p in self.query]}
        if self.headers:
            doc["headers"] = [Pair(h) for h in self.headers]
        if self.credentials is not None:
            doc["credentials"] = self.credentials
        if self.body is not None:
            doc["body"] = self.body
        return doc


@dataclass(frozen=True)
class RecordedReply:
    version: str  # "HTTP/1.1", "HTTP/1.0"
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names in order and casing
    body: bytes
    eol: str = "\r\n"  # what ends the status and header lines: CRLF, or a bare LF

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": self.version, "status": self.status,
                               "reason": self.reason,
                               "headers": [Pair(h) for h in self.headers]}
        if self.eol != "\r\n":  # absent for CRLF: profiles of CRLF devices keep their checksum
            doc["line_ending"] = LINE_ENDINGS[self.eol]
        try:
            doc["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            doc["body_base64"] = base64.b64encode(self.body).decode("ascii")
        return doc


@dataclass(frozen=True)
class Exchange:
    step: str  # the probe step's name (or a hand-written exchange's)
    request: RecordedRequest
    replies: tuple[RecordedReply, ...]  # the nth matching request gets the nth; the last repeats
    merge: Merge | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"step": self.step, "request": self.request.to_dict()}
        if self.merge:
            doc["merge"] = self.merge
        doc["replies"] = [r.to_dict() for r in self.replies]
        return doc


@dataclass(frozen=True)
class Provenance:
    captured_at: str | None = None
    tool: str | None = None
    probe_script: str | None = None
    model: str | None = None
    firmware: str | None = None
    target: str | None = None
    redacted: bool = True
    checksum: str | None = None
    note: str | None = None  # a hand-written profile says where it comes from
    params: dict[str, str] | None = None  # the probe's --param values (drift's defaults)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Profile:
    kind: str
    exchanges: tuple[Exchange, ...]
    provenance: Provenance = field(default_factory=Provenance)
    source: str | None = None  # the file it was read from

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "provenance": self.provenance.to_dict(),
                "exchanges": [e.to_dict() for e in self.exchanges]}

    def describe(self) -> dict[str, Any]:
        """What the ready file and the control plane show of a member's profile."""
        p = self.provenance
        return {"file": self.source, "kind": self.kind, "model": p.model,
                "firmware": p.firmware, "captured_at": p.captured_at,
                "checksum": p.checksum, "exchanges": len(self.exchanges)}


def checksum(exchanges: tuple[Exchange, ...] | list[Exchange]) -> str:
    """sha256 over the canonical JSON of the (redacted) exchanges."""
    canonical = json.dumps([e.to_dict() for e in exchanges], sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# -- reading -----------------------------------------------------------------------------------
def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str | int) for x in p)
            for p in value):
        raise ProfileError(f"{where}: a list of [name, value] pairs")
    return tuple((str(a), str(b)) for a, b in value)


def _known_keys(doc: dict[str, Any], known: set[str], where: str) -> None:
    unknown = set(doc) - known
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _reply(doc: Any, where: str) -> RecordedReply:
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: a mapping")
    _known_keys(doc, {"version", "status", "reason", "headers", "body", "body_base64",
                      "line_ending"}, where)
    version = doc.get("version", "HTTP/1.1")
    status = doc.get("status")
    if not isinstance(version, str) or not version.startswith("HTTP/"):
        raise ProfileError(f"{where}.version: HTTP/1.0 or HTTP/1.1")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ProfileError(f"{where}.status: a number from 100 to 599")
    reason = doc.get("reason", "")
    if not isinstance(reason, str) or any(c in reason for c in "\r\n"):
        raise ProfileError(f"{where}.reason: one line of text")
    headers = _pairs(doc.get("headers"), f"{where}.headers")
    for name, value in headers:
        if not name or any(c in name + value for c in "\r\n") or ":" in name:
            raise ProfileError(f"{where}.headers: {name!r} is not a header line")
    if "body" in doc and "body_base64" in doc:
        raise ProfileError(f"{where}: body or body_base64, not both")
    if "body_base64" in doc:
        try:
            body = base64.b64decode(str(doc["body_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise ProfileError(f"{where}.body_base64: not base64") from None
    else:
        text = doc.get("body", "")
        if not isinstance(text, str):
            raise ProfileError(f"{where}.body: text")
        body = text.encode("utf-8")
    eol = {v: k for k, v in LINE_ENDINGS.items()}.get(doc.get("line_ending", "crlf"))
    if eol is None:
        raise ProfileError(f"{where}.line_ending: crlf or lf")
    return RecordedReply(version, status, reason, headers, body, eol)


def _exchange(doc: Any, where: str) -> Exchange:
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: a mapping")
    _known_keys(doc, {"step", "request", "replies", "merge"}, where)
    step = doc.get("step")
    if not isinstance(step, str) or not step:
        raise ProfileError(f"{where}.step: a name")
    where = f"{where} ({step})"
    request = doc.get("request")
    if not isinstance(request, dict):
        raise ProfileError(f"{where}.request: a mapping")
    method, path = request.get("method", "GET"), request.get("path")
    if not isinstance(method, str) or not method.isalpha() or not method.isupper():
        raise ProfileError(f"{where}.request.method: an HTTP method such as GET")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ProfileError(f"{where}.request.path: a path starting with /")
    _known_keys(request, {"method", "path", "query", "headers", "body", "credentials"},
                f"{where}.request")
    body, credentials = request.get("body"), request.get("credentials")
    if body is not None and not isinstance(body, str):
        raise ProfileError(f"{where}.request.body: text")
    if credentials not in (None, *CREDENTIALS):
        raise ProfileError(f"{where}.request.credentials: {', '.join(CREDENTIALS)} (or absent)")
    recorded = RecordedRequest(method, path, _pairs(request.get("query"), f"{where}.query"),
                               _pairs(request.get("headers"), f"{where}.headers"), body,
                               credentials)
    replies = doc.get("replies")
    if not isinstance(replies, list) or not replies:
        raise ProfileError(f"{where}.replies: a list of at least one reply")
    merge = doc.get("merge")
    if merge not in (None, *MERGES):
        raise ProfileError(f"{where}.merge: {' or '.join(MERGES)} (or absent)")
    return Exchange(step, recorded, tuple(_reply(r, f"{where}.replies[{i}]")
                                          for i, r in enumerate(replies)), merge)


def parse(doc: Any, source: str | None = None) -> Profile:
    where = source or "profile"
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: a YAML mapping")
    if doc.get("format") != FORMAT:
        raise ProfileError(f"{where}: format {doc.get('format')!r}: this farm reads format "
                           f"{FORMAT}")
    _known_keys(doc, {"format", "kind", "provenance", "exchanges"}, where)
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ProfileError(f"{where}.kind: the kind it was captured from")
    prov = doc.get("provenance") or {}
    if not isinstance(prov, dict):
        raise ProfileError(f"{where}.provenance: a mapping")
    _known_keys(prov, set(Provenance.__dataclass_fields__), f"{where}.provenance")
    texts = {k: None if v is None else str(v) for k, v in prov.items()
             if k not in ("redacted", "params")}
    redacted = prov.get("redacted", True)
    if not isinstance(redacted, bool):
        raise ProfileError(f"{where}.provenance.redacted: true or false")
    params = prov.get("params")
    if params is not None and (not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in params.items())):
        raise ProfileError(f"{where}.provenance.params: a mapping of names to values")
    provenance = Provenance(redacted=redacted, params=None if params is None else {
        k: str(v) for k, v in params.items()}, **texts)
    exchanges = doc.get("exchanges")
    if not isinstance(exchanges, list):
        raise ProfileError(f"{where}.exchanges: a list")
    return Profile(kind, tuple(_exchange(e, f"{where}.exchanges[{i}]")
                               for i, e in enumerate(exchanges)), provenance, source)


def load(path: str | Path) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}{at}: not YAML: {getattr(exc, 'problem', exc)}") from None
    return parse(doc, str(path))


# -- writing -----------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Bodies with line breaks read best as block scalars; a CR, a tab, a control character or
    # a trailing space cannot be held in one faithfully, so such values stay double-quoted
    # with escapes (still one value, byte for byte).
    lines = value.split("\n")
    if len(lines) > 1 and all(line.isprintable() and line == line.rstrip(" ")
                              for line in lines):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _text)
_Dumper.add_representer(Pair, lambda dumper, pair: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", pair, flow_style=True))


def dump(profile: Profile) -> str:
    head = (f"# emulators quirk profile: {profile.kind}"
            f"{' ' + profile.provenance.model if profile.provenance.model else ''}"
            f"{' ' + profile.provenance.firmware if profile.provenance.firmware else ''}\n")
    return head + yaml.dump(profile.to_dict(), Dumper=_Dumper, sort_keys=False,
                            allow_unicode=True, width=100)
