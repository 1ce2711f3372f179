"""A kind's probe script (the requests a capture sends and a drift check repeats) and the
runner that fills its placeholders and sends its steps with the raw client.

A step's query and header values may hold the request placeholders of the profile format
(``<user>``, ``<password>``, ``<wrong-password>``, ``<basic>``) and ``{step.key}``: the value
of ``key`` in an earlier step's ``key="value"`` reply (a write puts back what was read).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from . import rawhttp

_FROM_STEP = re.compile(r"\{([\w-]+)\.([^{}]+)\}")
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


@dataclass(frozen=True)
class Script:
    kind: str
    version: int
    steps: tuple[Step, ...]
    model: str  # a regex over an identity reply's body: group 1 is the model
    firmware: str  # the same for the firmware
    refusal: str  # a regex over "<status> <reason>\n<body>": the good credentials refused
    default_user: str = "admin"
    default_password: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.version}"

    def refused(self, reply: rawhttp.RawReply) -> bool:
        text = f"{reply.status} {reply.reason}\n{reply.body.decode('utf-8', 'replace')}"
        return reply.status == 401 or re.search(self.refusal, text) is not None

    def identity(self, body: bytes) -> tuple[str | None, str | None]:
        text = body.decode("utf-8", "replace")
        model = re.search(self.model, text, re.MULTILINE)
        firmware = re.search(self.firmware, text, re.MULTILINE)
        return (model[1].strip() if model else None, firmware[1].strip() if firmware else None)


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

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


@dataclass
class Sent:
    """One step as run: the values it sent (placeholders kept) and its replies."""

    step: Step
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    replies: list[rawhttp.RawReply] = field(default_factory=list)


class MissingValue(LookupError):
    pass


@dataclass
class Runner:
    target: rawhttp.Target
    credentials: Credentials
    timeout: float = rawhttp.READ_TIMEOUT
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def _from_steps(self, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            found = self.values.get(match[1], {}).get(match[2])
            if found is None:
                raise MissingValue(f"{match[1]} gave no {match[2]}")
            return found
        return _FROM_STEP.sub(one, value)

    def prepare(self, step: Step) -> Sent:
        """The step with ``{step.key}`` filled (request placeholders kept for the record)."""
        return Sent(step, tuple((k, self._from_steps(v)) for k, v in step.query),
                    tuple((k, self._from_steps(v)) for k, v in step.headers))

    async def send(self, method: str, path: str, query: tuple[tuple[str, str], ...],
                   headers: tuple[tuple[str, str], ...]) -> rawhttp.RawReply:
        fill = self.credentials.fill
        return await rawhttp.fetch(
            self.target, method, path,
            rawhttp.encode_query(tuple((k, fill(v)) for k, v in query)),
            tuple((k, fill(v)) for k, v in headers),
            connect_timeout=self.timeout, read_timeout=self.timeout)

    async def run(self, step: Step) -> Sent:
        sent = self.prepare(step)
        for _ in range(2 if step.read else 1):
            reply = await self.send(step.method, step.path, sent.query, sent.headers)
            sent.replies.append(reply)
        self.values[step.name] = key_values(sent.replies[0].body)
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
