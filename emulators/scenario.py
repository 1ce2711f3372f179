"""Scenario files: which members a farm runs, where they listen, with what state.

A scenario is YAML (JSON is YAML too) or a dict. ``load`` validates it completely and raises
``ScenarioInvalid`` listing every problem with its path and, for files, its line; nothing is
started from an invalid scenario. ``stamp`` turns entries into members, expanding fleets.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .core.faults import FaultSpec
from .core.member import KindOptions, Member, MemberSpec, Role, fixed_ports
from .core.state import NAME_RE
from .kinds import UnknownKind, resolve

DEFAULT_SCENARIO = "default"

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: Path_
    message: str
    line: int | None = None

    def dotted(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(top)"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.dotted()}: {self.message}"


class ScenarioInvalid(ValueError):
    def __init__(self, problems: list[Problem], source: str = "scenario") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))

    def report(self) -> str:
        """One line a problem, as ``file:line: path: message``."""
        out = []
        for p in self.problems:
            where = f"{self.source}:{p.line}" if p.line else self.source
            out.append(f"{where}: {p.dotted()}: {p.message}")
        return "\n".join(out)


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOST_NAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


class ControlSpec(BaseModel):
    """The control plane: loopback only unless a scenario says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    token: str | None = Field(default=None, min_length=8)
    # Host names it answers besides loopback and IP addresses (a Kubernetes Service's name):
    # without a token, any other Host is refused (control/origin.py: DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    # Seconds a journal stream waits for a client that stopped reading before cutting it.
    stream_write_timeout: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not HOST_NAME_RE.fullmatch(name):
                raise ValueError(f"{name[:80]!r} is not a host name (letters, digits, '-' "
                                 "and '.' only; no scheme, port or path)")
        return tuple(name.lower().rstrip(".") for name in value)


class JournalSpec(BaseModel):
    """The request journal: a ring of the last ``capacity`` events."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    capacity: int = Field(default=10_000, ge=1, le=10_000_000)
    excerpt_bytes: int = Field(default=1024, ge=0, le=1024 * 1024)


class EntrySpec(BaseModel):
    """The keys every entry has; the rest belong to the kind's own Options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    kind: str
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    count: int = Field(default=1, ge=1, le=65000)
    # Fleet members each get their own loopback address (host + i) on the same port, or
    # their own port (port + i, or each a free port when port is 0) on the same address.
    fleet: Literal["addresses", "ports"] = "addresses"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError("names are 1-63 letters, digits, '.', '_' or '-', not starting "
                             "with a punctuation mark")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if value != "localhost":
                raise ValueError("host must be an IP address or 'localhost'") from None
            return "127.0.0.1"
        return value


class ScenarioSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1] = 1
    name: str = "scenario"
    description: str = ""
    control: ControlSpec = ControlSpec()
    journal: JournalSpec = JournalSpec()
    faults: list[FaultSpec] = []
    fault_seed: int | None = None
    servers: list[dict[str, Any]] = []
    emulators: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: its settings and the members it stamps out, in start order."""

    name: str
    description: str
    control: ControlSpec
    members: tuple[MemberSpec, ...]
    fleets: dict[str, Literal["addresses", "ports"]]
    source: str = "scenario"
    journal: JournalSpec = JournalSpec()
    faults: tuple[FaultSpec, ...] = ()
    fault_seed: int | None = None

    def by_role(self, role: Role) -> list[MemberSpec]:
        return [m for m in self.members if m.role == role]


# -- reading YAML with line numbers -------------------------------------------------------

def _parse_yaml(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioInvalid([Problem((), f"not valid YAML: {problem}", line)], source) from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}

    def walk(n: yaml.Node, path: Path_) -> None:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    walk(node, ())
    return data, lines


def _line_for(lines: dict[Path_, int], path: Path_) -> int | None:
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]


def _pydantic_problems(exc: ValidationError, prefix: Path_) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(Problem((*prefix, *loc), msg))
    return problems


# -- loading ----------------------------------------------------------------------------

def builtin_scenario_path(name: str) -> Path:
    ref = resources.files("emulators") / "scenarios" / f"{name}.yaml"
    return Path(str(ref))


# keep(entry name, role, count, index, member name) -> stamp this member? (a shard stamps only
# what it runs or looks up: stamping every member of a 100,000-camera scenario took 7.4 s)
Keep = Callable[[str, Role, int, int, str], bool]


def load(source: str | Path | dict[str, Any], keep: Keep | None = None) -> Scenario:
    """Load and validate a scenario from a path, a built-in name, YAML text or a dict (with
    ``keep``, only the members it keeps are stamped)."""
    lines: dict[Path_, int] = {}
    label = "scenario"
    base: Path | None = None  # what a relative file an entry names is relative to
    if isinstance(source, dict):
        data: Any = source
    else:
        path = Path(source)
        if not path.exists() and isinstance(source, str) and re.fullmatch(r"[\w-]+", source):
            path = builtin_scenario_path(source)
        if not path.exists():
            raise ScenarioInvalid([Problem((), f"no scenario file {str(source)!r}")], str(source))
        label = str(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioInvalid([Problem((), f"cannot read: {exc}")], label) from None
        data, lines = _parse_yaml(text, label)
        base = path.resolve().parent
    return validate(data, lines, label, keep, base)


def validate(data: Any, lines: dict[Path_, int] | None = None,
             source: str = "scenario", keep: Keep | None = None,
             base: Path | None = None) -> Scenario:
    """The scenario ``data`` describes, or ScenarioInvalid with every problem of it (each with
    its line in the file where ``lines`` has one): the top level, then each entry on its own,
    then what entries say of each other (references, names, ports). A file an entry names
    (a camera's ``quirks``) is relative to ``base``, else to the current directory."""
    lines = lines or {}
    problems: list[Problem] = []

    def fail() -> ScenarioInvalid:
        fixed = [Problem(p.path, p.message, p.line or _line_for(lines, p.path)) for p in problems]
        return ScenarioInvalid(fixed, source)

    if not isinstance(data, dict):
        problems.append(Problem((), "a scenario is a mapping with 'emulators' and/or 'servers'"))
        raise fail()
    top = _read_top(data, problems)
    stamped = _Stamped()
    sections: tuple[tuple[Role, list[Any]], ...] = (("server", top.servers),
                                                    ("emulator", top.emulators))
    for role, section in sections:
        section_key = "servers" if role == "server" else "emulators"
        for i, raw in enumerate(section):
            _read_entry(raw, (section_key, i), role, stamped, problems, keep, base)
    members = stamped.members
    problems.extend(_reference_problems(stamped))
    problems.extend(_name_problems(stamped))
    problems.extend(_port_clashes(members, stamped.entry_paths, top.control))
    if problems:
        raise fail()
    return Scenario(top.name, top.description, top.control, tuple(members), stamped.fleets,
                    source, top.journal, tuple(top.faults), top.fault_seed)


def _read_top(data: dict[str, Any], problems: list[Problem]) -> ScenarioSpec:
    """The scenario's top level; with a problem, what can be read of its sections, so one run
    reports every problem of the file."""
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, ()))
        sections = {k: data[k] for k in ("servers", "emulators")
                    if isinstance(data.get(k), list)}
        return ScenarioSpec.model_construct(**sections)


@dataclass
class _Stamped:
    """What the entries read so far make, and what they say of each other (checked once every
    entry is read)."""

    members: list[MemberSpec] = field(default_factory=list)
    fleets: dict[str, Literal["addresses", "ports"]] = field(default_factory=dict)
    entry_names: set[str] = field(default_factory=set)
    refs: list[tuple[Path_, str]] = field(default_factory=list)  # (where, server name)
    kind_refs: list[tuple[Path_, str, str]] = field(default_factory=list)  # + the kind named
    entry_paths: dict[str, Path_] = field(default_factory=dict)  # entry name -> its path


def _read_entry(raw: Any, prefix: Path_, role: Role, stamped: _Stamped,
                problems: list[Problem], keep: Keep | None, base: Path | None = None) -> None:
    """One entry of ``servers`` or ``emulators``: its problems, or its members stamped."""
    if not isinstance(raw, dict):
        problems.append(Problem(prefix, "each entry is a mapping"))
        return
    # Every check of an entry runs even when an earlier one failed (a bad port does
    # not hide an unknown option of the same entry); only a sound entry is stamped.
    sound = True
    raw_name = raw.get("name")
    if isinstance(raw_name, str):
        if raw_name in stamped.entry_names:
            problems.append(Problem((*prefix, "name"), f"duplicate name {raw_name!r}"))
            sound = False
        stamped.entry_names.add(raw_name)
    entry: EntrySpec | None = None
    try:
        entry = EntrySpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, prefix))
        sound = False
    kind = entry.kind if entry is not None else raw.get("kind")
    if not isinstance(kind, str):
        return  # EntrySpec said so
    try:
        cls = resolve(kind)
    except UnknownKind as exc:
        problems.append(Problem((*prefix, "kind"), str(exc)))
        return
    if cls.role != role:
        problems.append(Problem((*prefix, "kind"),
                                f"{kind!r} is a {cls.role}, list it under "
                                f"'{'servers' if cls.role == 'server' else 'emulators'}'"))
        return
    extra = (dict(entry.model_extra or {}) if entry is not None
             else {k: v for k, v in raw.items() if k not in EntrySpec.model_fields})
    try:
        options = cls.Options.model_validate(extra, context={"scenario_dir": base})
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, prefix))
        return
    if entry is None or not sound:
        return
    for field_name in cls.server_refs:
        value = getattr(options, field_name, None)
        if value:
            stamped.refs.append(((*prefix, field_name), value))
    for field_name, ref_kind in cls.member_refs.items():
        value = getattr(options, field_name, None)
        if value:
            stamped.kind_refs.append(((*prefix, field_name), value, ref_kind))
    try:
        members = _stamp(entry, cls, options, role, extra, keep)
    except ValueError as exc:
        problems.append(Problem((*prefix, "count"), str(exc)))
        return
    if entry.count > 1:
        stamped.fleets[entry.name] = entry.fleet
    stamped.members.extend(members)
    stamped.entry_paths[entry.name] = prefix


def _reference_problems(stamped: _Stamped) -> list[Problem]:
    """Options naming a server, or a member of a kind, that the scenario does not have."""
    problems = []
    members = stamped.members
    servers = {m.name for m in members if m.role == "server"} | {
        m.group for m in members if m.role == "server"}
    for path, value in stamped.refs:
        if value not in servers:
            problems.append(Problem(path, f"no server named {value!r} in this scenario"))
    kinds_by_name = {m.name: m.kind for m in members}
    for path, value, ref_kind in stamped.kind_refs:
        if kinds_by_name.get(value) != ref_kind:
            problems.append(Problem(path, f"no {ref_kind} member named {value!r} in this "
                                          "scenario"))
    return problems


def _name_problems(stamped: _Stamped) -> list[Problem]:
    """Stamped fleet members whose names clash with an entry's or another member's."""
    problems = []
    seen: dict[str, str] = {}
    for m in stamped.members:
        if m.name in stamped.entry_names and m.group != m.name:
            problems.append(Problem((), f"fleet member name {m.name!r} clashes with an entry"))
        if m.name in seen and seen[m.name] != m.group:
            problems.append(Problem((), f"name {m.name!r} is used twice"))
        seen[m.name] = m.group
    return problems


def _port_clashes(members: list[MemberSpec], entry_paths: dict[str, Path_],
                  control: ControlSpec) -> list[Problem]:
    """Two listeners on one host:port, which would fail at run time: two members, two
    listener options of one member (a fleet's, member by member), or a member and the control
    plane. Port 0 (a free port) never clashes; 0.0.0.0 / :: clash with every host."""
    problems: list[Problem] = []
    # port -> {host: who}, and port -> who of a listener on every host (0.0.0.0 / ::): a
    # lookup per listener, not a scan of the port's listeners (a fleet of 1,000 cameras on
    # 1,000 addresses shares three ports: the scan was 4.5 million address parses).
    taken: dict[int, dict[str, str]] = {}
    everywhere: dict[int, str] = {}

    def clash(host: str, port: int) -> str | None:
        hosts = taken.get(port)
        if not hosts:
            return None
        if host in hosts:
            return hosts[host]
        if _unspecified(host):
            return next(iter(hosts.values()))
        return everywhere.get(port)

    for m in members:
        for option, port in fixed_ports(m):
            who = f"{m.name!r}" if option == "port" else f"{m.name!r} {option}"
            other = clash(m.host, port)
            if other is not None:
                problems.append(Problem((*entry_paths.get(m.group, ()), option),
                                        f"{who} and {other} both listen on {m.host}:{port}"))
            taken.setdefault(port, {}).setdefault(m.host, who)
            if _unspecified(m.host):
                everywhere.setdefault(port, who)
    if isinstance(control.port, int) and control.port:
        other = clash(control.host, control.port)
        if other is not None:
            problems.append(Problem(("control", "port"),
                                    f"the control plane's port is taken by {other}"))
    return problems


@functools.lru_cache(maxsize=4096)
def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _stamp(entry: EntrySpec, cls: type[Member], options: KindOptions, role: Role,
           raw: dict[str, Any], keep: Keep | None = None) -> list[MemberSpec]:
    if entry.count == 1:
        if keep is not None and not keep(entry.name, role, 1, 0, entry.name):
            return []
        return [MemberSpec(entry.name, entry.kind, role, entry.host, entry.port, options,
                           entry.name, 0, raw)]
    width = len(str(entry.count))
    specs = []
    base = ipaddress.ip_address(entry.host)
    for i in range(entry.count):
        if keep is not None and not keep(entry.name, role, entry.count, i,
                                         f"{entry.name}-{i + 1:0{width}d}"):
            continue
        if entry.fleet == "addresses":
            if base.is_unspecified:
                raise ValueError("a fleet spread over addresses needs a loopback base host")
            try:
                address = base + i
            except ValueError:
                raise ValueError(f"{entry.count} addresses from {base} run out") from None
            if base.is_loopback and not address.is_loopback:
                raise ValueError(f"{entry.count} addresses from {base} leave 127.0.0.0/8")
            host, port = str(address), entry.port
        member_options = options
        if entry.fleet != "addresses":
            host = entry.host
            port = entry.port + i if entry.port else 0
            if port > 65535:
                raise ValueError(f"{entry.count} ports from {entry.port} pass 65535")
            # Every further listener of a fleet on one address moves along with the port
            # (an ACTi's https_port, an IoTDA's mqtt_port / mqtts_port), so none collide.
            extra = {name: value + i for name, value in options
                     if name.endswith("_port") and isinstance(value, int)
                     and not isinstance(value, bool) and value}
            if any(value > 65535 for value in extra.values()):
                raise ValueError(f"{entry.count} members' listener ports pass 65535")
            if extra and i:
                member_options = options.model_copy(update=extra)
        specs.append(MemberSpec(f"{entry.name}-{i + 1:0{width}d}", entry.kind, role, host, port,
                                member_options, entry.name, i, raw))
    return specs


def rebind(scenario: Scenario, host: str) -> Scenario:
    """The same scenario listening on ``host`` (a container's 0.0.0.0, say).

    Members of fleets spread over addresses keep their own loopback addresses: those are the
    point of such a fleet.
    """
    import dataclasses

    members = tuple(
        m if scenario.fleets.get(m.group) == "addresses" else dataclasses.replace(m, host=host)
        for m in scenario.members)
    control = scenario.control.model_copy(update={"host": host})
    return dataclasses.replace(scenario, members=members, control=control)


def with_free_ports(scenario: Scenario) -> Scenario:
    """The same scenario with every listener on a free port, as tests want it.

    Listeners are the entry's ``port``, every kind option named ``*_port`` and an FTP
    server's ``passive_ports`` (a free port each time instead of a range); the control plane
    gets a free port too.
    """
    import dataclasses

    members = []
    for m in scenario.members:
        update: dict[str, Any] = {}
        for field_name, value in m.options:
            if field_name.endswith("_port") and isinstance(value, int) and value:
                update[field_name] = 0
            elif field_name == "passive_ports" and value is not None:
                update[field_name] = None
        options = m.options.model_copy(update=update) if update else m.options
        members.append(dataclasses.replace(m, port=0, options=options))
    control = scenario.control.model_copy(update={"port": 0})
    return dataclasses.replace(scenario, members=tuple(members), control=control)
