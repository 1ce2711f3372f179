"""A kind's probe script (the requests a capture sends and a drift check repeats) and the
runner that fills its placeholders and sends its steps with the raw client.

A step's path, query and header values and body may hold the request placeholders of the
profile format (``<user>``, ``<password>``, ``<wrong-password>``, ``<basic>``) and references
in braces: ``{param.NAME}``, a value the user gives (``--param NAME=VALUE``) or the script's
default; ``{STEP.KEY}``, the value of ``KEY`` in an earlier step's ``key="value"`` reply (a write
puts back what was read), or of the dotted path ``KEY`` in its JSON reply
(``{token.data.accessToken}``, ``{list.devices.0.device_id}``); ``{sign.NAME}``, a value the
script's signer computes for each request as it is sent (a timestamp, a digest of the secret).
A script with a signer also adds its headers to each step's request as sent (a signature over
it), with the right credentials, a wrong secret or none, as the step says.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from . import rawhttp

_FROM_STEP = re.compile(r"\{([\w-]+)\.([^{}\s\"]+)\}")
PARAM, SIGN = "param", "sign"  # the reference prefixes that name no step
# How a request carries the script's credentials: signed with them, signed with a wrong
# secret, or not at all.
Credential = Literal["right", "wrong", "none"]
# ``name="value"`` / ``name='value'`` lines (``var name="value";`` too): INSTAR's and ACTi's
# CGI replies.
KEY_VALUE_LINE = re.compile(r"""^\s*(?:var\s+)?([^\s=]+)=(["'])(.*?)\2;?\s*$""")


@dataclass(frozen=True)
class Step:
    name: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    read: bool = False  # a read: sent twice; two different replies are kept as states
    writes: bool = False  # changes the device: only with --write
    restore_of: str | None = None  # puts back what the named write step changed
    identity: bool = False  # its reply names the model and firmware; refused = bad login
    expect_refusal: bool = False  # wrong credentials on purpose: a refusal is its answer
    body: str | None = None  # a body template, filled as the query values are
    # How the request carries the credentials, for a script with a signer (recorded as the
    # exchange's ``credentials``, judged by the member on replay); None: a public request,
    # sent unsigned and not judged.
    credentials: Credential | None = "right"
    # JSON members whose values move on from request to request (a token's seconds left):
    # recorded as sent, not compared by drift.
    volatile: tuple[str, ...] = ()


@dataclass(frozen=True)
class Param:
    """A value the steps reference as ``{param.NAME}``: given with ``--param NAME=VALUE``."""

    name: str
    help: str
    default: str | None = None  # None: the user must give it


@dataclass(frozen=True)
class Outgoing:
    """A request as it goes on the wire, for a signer to sign."""

    method: str
    path: str  # as sent, the target's base path included
    query: tuple[tuple[str, str], ...]  # the pairs, decoded
    raw_query: str  # as sent
    host: str  # the Host header as sent
    headers: tuple[tuple[str, str], ...]  # the step's, filled
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


class Signer:
    """How a kind's requests carry its credentials beyond the request placeholders: values
    a body computes as it is sent (``{sign.NAME}``) and header lines added last, over the
    request as sent (a signature). This base adds nothing."""

    def values(self, credentials: Credentials, now: float) -> dict[str, str]:
        return {}

    def headers(self, request: Outgoing, credentials: Credentials,
                now: float) -> tuple[tuple[str, str], ...]:
        return ()


@dataclass(frozen=True)
class Script:
    kind: str
    version: int
    steps: tuple[Step, ...]
    model: str | None  # a regex over an identity reply's body: group 1 is the model
    firmware: str | None  # the same for the firmware
    refusal: str  # a regex over "<status> <reason>\n<body>": the good credentials refused
    default_user: str = "admin"
    default_password: str = ""
    params: tuple[Param, ...] = ()
    signer: Signer | None = None
    # A cloud has no model: the identity reply's header of this name (its ``Server``) is
    # recorded as the model instead, when it has one.
    model_header: str | None = None
    # The user is an access key that names the account (a cloud's AK, appKey): redacted as
    # ``<user>`` wherever it appears, where a camera's user name is kept.
    user_is_secret: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.version}"

    def refused(self, reply: rawhttp.RawReply) -> bool:
        text = f"{reply.status} {reply.reason}\n{reply.body.decode('utf-8', 'replace')}"
        return reply.status == 401 or re.search(self.refusal, text) is not None

    def identity(self, reply: rawhttp.RawReply) -> tuple[str | None, str | None]:
        text = reply.body.decode("utf-8", "replace")
        model = re.search(self.model, text, re.MULTILINE) if self.model else None
        firmware = re.search(self.firmware, text, re.MULTILINE) if self.firmware else None
        found = model[1].strip() if model else None
        if found is None and self.model_header:
            found = reply.header(self.model_header)
        return (found, firmware[1].strip() if firmware else None)

    def resolve_params(self, given: dict[str, str]) -> dict[str, str]:
        """The params the steps use: given ones over the defaults. ValueError names an
        unknown one or one the user must give."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"{self.kind} takes no --param {', '.join(unknown)} (it takes: "
                             f"{', '.join(known) or 'none'})")
        values = {p.name: p.default for p in self.params if p.default is not None}
        values.update(given)
        missing = [p for p in self.params if p.name not in values]
        if missing:
            raise ValueError("; ".join(f"needs --param {p.name}=VALUE ({p.help})"
                                       for p in missing))
        return values


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def wrong(self) -> Credentials:
        """The same user with a wrong password (a wrong secret key)."""
        return Credentials(self.user, wrong_password(self.password))

    def fill(self, value: str) -> str:
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return (value.replace("<wrong-password>", wrong_password(self.password))
                .replace("<password>", self.password).replace("<user>", self.user)
                .replace("<basic>", f"Basic {basic}"))


def wrong_password(password: str) -> str:
    return password + "-wrong" if password else "wrong"


def key_values(body: bytes) -> dict[str, str]:
    """The ``name="value"`` lines of a reply body (the first value of a name)."""
    found: dict[str, str] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        match = KEY_VALUE_LINE.match(line)
        if match:
            found.setdefault(match[1], match[3])
    return found


def is_key_values(body: bytes) -> bool:
    lines = [line for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    return bool(lines) and all(KEY_VALUE_LINE.match(line) for line in lines)


def json_value(doc: Any, path: str) -> str | None:
    """The scalar at dotted ``path`` of a JSON document (list items by index), as text."""
    value = doc
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


@dataclass(frozen=True)
class Replied:
    """What later steps may read of a step's reply: its ``key="value"`` lines, its JSON."""

    pairs: dict[str, str]
    doc: Any = None

    @classmethod
    def of(cls, body: bytes) -> Replied:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        return cls(key_values(body), doc)

    def get(self, key: str) -> str | None:
        found = self.pairs.get(key)
        return found if found is not None else json_value(self.doc, key)


@dataclass
class Sent:
    """One step as run: what it sends (references filled, request placeholders and
    ``{sign.NAME}`` kept), how it carries the credentials, and its replies."""

    step: Step
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: str | None = None
    credentials: Credential | None = None  # None: not judged (cameras, public requests)
    method: str = "GET"
    replies: list[rawhttp.RawReply] = field(default_factory=list)
    signed: dict[str, str] = field(default_factory=dict)  # the first request's {sign.NAME}


class MissingValue(LookupError):
    pass


def fill_signed(value: str, signed: dict[str, str]) -> str:
    return _FROM_STEP.sub(lambda m: signed.get(m[2], m[0]) if m[1] == SIGN else m[0], value)


@dataclass
class Runner:
    target: rawhttp.Target
    credentials: Credentials
    timeout: float = rawhttp.READ_TIMEOUT
    params: dict[str, str] = field(default_factory=dict)
    signer: Signer | None = None
    values: dict[str, Replied] = field(default_factory=dict)
    _last: float = 0.0

    def _refs(self, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            source, key = match[1], match[2]
            if source == SIGN:
                return match[0]  # filled as each request is sent
            if source == PARAM:
                found = self.params.get(key)
            else:
                replied = self.values.get(source)
                found = replied.get(key) if replied is not None else None
            if found is None:
                raise MissingValue(f"{source} gave no {key}")
            return found
        return _FROM_STEP.sub(one, value)

    def prepare(self, step: Step) -> Sent:
        """The step with its references filled (request placeholders kept for the record)."""
        refs = self._refs
        return Sent(step, refs(step.path), tuple((k, refs(v)) for k, v in step.query),
                    tuple((k, refs(v)) for k, v in step.headers),
                    None if step.body is None else refs(step.body),
                    step.credentials if self.signer is not None else None, step.method)

    def _now(self) -> float:
        # Strictly later than the last request's, in milliseconds: a service that refuses a
        # repeated signature (EnOS's duplicated encryption) sees two.
        now = max(time.time(), self._last + 0.001)
        self._last = now
        return now

    async def send(self, sent: Sent) -> rawhttp.RawReply:
        credentials = self.credentials.wrong() if sent.credentials == "wrong" \
            else self.credentials
        now = self._now()
        signer = self.signer
        signed = signer.values(credentials, now) if signer is not None else {}
        if not sent.replies:
            sent.signed = signed

        def fill(value: str) -> str:
            return fill_signed(credentials.fill(value), signed)

        query = tuple((k, fill(v)) for k, v in sent.query)
        raw_query = rawhttp.encode_query(query)
        headers = tuple((k, fill(v)) for k, v in sent.headers)
        body = None if sent.body is None else fill(sent.body).encode("utf-8")
        if signer is not None and sent.credentials in ("right", "wrong"):
            outgoing = Outgoing(sent.method, self.target.base_path + sent.path, query,
                                raw_query, self.target.netloc, headers, body or b"")
            headers += signer.headers(outgoing, credentials, now)
        return await rawhttp.fetch(
            self.target, sent.method, sent.path, raw_query, headers, body=body,
            connect_timeout=self.timeout, read_timeout=self.timeout)

    def remember(self, name: str, reply: rawhttp.RawReply) -> None:
        self.values[name] = Replied.of(reply.body)

    async def run(self, step: Step) -> Sent:
        sent = self.prepare(step)
        for _ in range(2 if step.read else 1):
            sent.replies.append(await self.send(sent))
        self.remember(step.name, sent.replies[0])
        return sent


def plan(script: Script, write: bool) -> tuple[list[Step], list[Step]]:
    """The steps to run, in order (identity steps first, restores right after the writes
    they undo), and the steps skipped (writes and their restores without --write)."""
    run: list[Step] = []
    skipped: list[Step] = []
    ordered = [s for s in script.steps if s.identity] + [
        s for s in script.steps if not s.identity]
    restores = {s.restore_of: s for s in ordered if s.restore_of}
    for step in ordered:
        if step.restore_of:
            continue
        if step.writes and not write:
            skipped.append(step)
            skipped += [restores[step.name]] if step.name in restores else []
            continue
        run.append(step)
        if step.name in restores:
            run.append(restores[step.name])
    return run, skipped
