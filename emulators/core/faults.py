"""Fault injection: rules that make members misbehave on purpose, reproducibly.

A rule matches by member, kind, protocol, method, path and command, fires with a probability
drawn from its own seeded generator (a run with the same seed fires the same way), for the
next N matches and/or until a time to live on the farm clock runs out. With no rules the check
is one attribute test: the hot path pays next to nothing.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .clock import Clock

HTTP_FAULTS = ("latency", "vendor_error", "status", "reset", "truncate", "hang")
SERVER_FAULTS = ("refuse_login", "busy", "disk_full", "cut_transfer", "throttle")
TLS_FAULTS = ("tls_expired", "tls_wrong_name")
# MQTT rules match ``command`` against the packet (connect, publish, subscribe) and ``path``
# against its topic (docs/FAULTS.md).
MQTT_FAULTS = ("mqtt_refuse", "mqtt_drop", "mqtt_hang", "mqtt_puback_delay", "mqtt_puback_drop")
# RTSP rules match ``command`` against the request's method (DESCRIBE, SETUP, PLAY...) and
# ``path`` against its URL path; WS-Discovery rules match ``command`` against Probe/Resolve.
RTSP_FAULTS = ("rtsp_drop",)
DISCOVERY_FAULTS = ("discovery_drop",)
# Data forwarding (a cloud's pushes to an application): rules match ``command`` against the
# action's channel (HTTP_FORWARDING, AMQP_FORWARDING) and ``path`` against its target (the
# URL, or the queue's name).
FORWARDING_FAULTS = ("push_drop", "push_delay")
FaultType = Literal["latency", "vendor_error", "status", "reset", "truncate", "hang",
                    "refuse_login", "busy", "disk_full", "cut_transfer", "throttle",
                    "tls_expired", "tls_wrong_name", "mqtt_refuse", "mqtt_drop", "mqtt_hang",
                    "mqtt_puback_delay", "mqtt_puback_drop", "rtsp_drop", "discovery_drop",
                    "push_drop", "push_delay"]
Protocol = Literal["http", "https", "ftp", "ftps", "sftp", "tls", "mqtt", "mqtts", "rtsp",
                   "wsd", "forwarding"]
# Each fault: where it acts, what a client sees, and the parameters it reads (required ones
# first, marked): docs/FAULTS.md's table as data, for GET /v1/faults/types and the
# dashboard's form (tests/test_faults_catalogue.py holds the two together).
CATALOGUE: dict[str, dict[str, Any]] = {
    "latency": {"where": "HTTP", "sees": "the reply, late", "required": ["latency_ms"],
                "optional": []},
    "vendor_error": {"where": "HTTP", "sees": "the device's own error form",
                     "required": [], "optional": ["message", "status"]},
    "status": {"where": "HTTP", "sees": "that HTTP status", "required": [],
               "optional": ["status", "message"]},
    "reset": {"where": "HTTP", "sees": "a TCP reset before any reply", "required": [],
              "optional": []},
    "truncate": {"where": "HTTP", "sees": "headers and half the body, then the connection "
                 "closes", "required": [], "optional": []},
    "hang": {"where": "HTTP", "sees": "no reply at all until the client gives up",
             "required": [], "optional": ["seconds"]},
    "refuse_login": {"where": "FTP, SFTP", "sees": "the login refused", "required": [],
                     "optional": []},
    "busy": {"where": "FTP", "sees": "421 on connect", "required": [], "optional": ["message"]},
    "disk_full": {"where": "FTP, SFTP", "sees": "552 / SSH_FX_FAILURE on upload",
                  "required": [], "optional": []},
    "cut_transfer": {"where": "FTP, SFTP", "sees": "the data connection cut mid-transfer",
                     "required": [], "optional": ["after_bytes"]},
    "throttle": {"where": "FTP, SFTP", "sees": "slow transfers",
                 "required": ["bytes_per_second"], "optional": []},
    "tls_expired": {"where": "HTTPS, FTPS", "sees": "an expired certificate", "required": [],
                    "optional": []},
    "tls_wrong_name": {"where": "HTTPS, FTPS", "sees": "a wrongly named certificate",
                       "required": [], "optional": []},
    "mqtt_refuse": {"where": "MQTT (connect)", "sees": "that CONNACK return code",
                    "required": [], "optional": ["connack"]},
    "mqtt_drop": {"where": "MQTT", "sees": "the connection closed without an answer",
                  "required": [], "optional": []},
    "mqtt_hang": {"where": "MQTT", "sees": "no answer to this packet or any later one",
                  "required": [], "optional": []},
    "mqtt_puback_delay": {"where": "MQTT (publish)", "sees": "the PUBACK, late",
                          "required": ["latency_ms"], "optional": []},
    "mqtt_puback_drop": {"where": "MQTT (publish)", "sees": "no PUBACK for that message",
                         "required": [], "optional": []},
    "rtsp_drop": {"where": "RTSP", "sees": "the session's connection closed: at the matching "
                  "request, or `seconds` into the stream", "required": [],
                  "optional": ["seconds"]},
    "discovery_drop": {"where": "WS-Discovery", "sees": "no ProbeMatch from that camera (the "
                       "probe is journalled)", "required": [], "optional": []},
    "push_drop": {"where": "data forwarding", "sees": "no push or queued message for that "
                  "event (the drop is journalled)", "required": [], "optional": []},
    "push_delay": {"where": "data forwarding", "sees": "the push or queued message, late",
                   "required": ["latency_ms"], "optional": []},
}


class FaultSpec(BaseModel):
    """A fault rule as the control plane, a scenario or a test gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    fault: FaultType
    member: str = "*"  # shell pattern over member names (a fleet: "cam-*")
    kind: str | None = None
    protocol: Protocol | None = None  # "http" matches https too; "ftp" matches ftps
    method: str | None = None
    path: str | None = None  # shell pattern over the request path
    command: str | None = None  # the device command (INSTAR cmd, ACTi update command, action)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    times: int | None = Field(default=None, ge=1)
    ttl: float | None = Field(default=None, gt=0)  # seconds on the farm clock
    seed: int | None = None
    # Parameters, by fault: latency/hang/throttle use these; see docs/FAULTS.md.
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    status: int | None = Field(default=None, ge=100, le=599)
    message: str | None = None
    seconds: float | None = Field(default=None, gt=0, le=3600)
    bytes_per_second: int | None = Field(default=None, ge=1)
    after_bytes: int | None = Field(default=None, ge=0)
    # mqtt_refuse: the CONNACK return code (MQTT 3.1.1 table 3.1); 5 "not authorised" when
    # not given, 3 "server unavailable" and 4 "bad user name or password" are the others a
    # client's reconnect logic tells apart.
    connack: int | None = Field(default=None, ge=1, le=5)

    @model_validator(mode="after")
    def _params(self) -> FaultSpec:
        if self.fault == "latency" and not self.latency_ms:
            raise ValueError("a latency fault needs latency_ms")
        if self.fault == "throttle" and not self.bytes_per_second:
            raise ValueError("a throttle fault needs bytes_per_second")
        if self.fault == "push_delay" and not self.latency_ms:
            raise ValueError("a push_delay fault needs latency_ms")
        if self.fault == "mqtt_puback_delay" and not self.latency_ms:
            raise ValueError("an mqtt_puback_delay fault needs latency_ms")
        if self.connack is not None and self.fault != "mqtt_refuse":
            raise ValueError("connack is a field of mqtt_refuse rules")
        return self


@dataclass
class FaultRule:
    spec: FaultSpec
    id: str
    created: float
    expires: float | None
    remaining: int | None
    rng: random.Random
    fired: int = 0
    checked: int = 0
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc = self.spec.model_dump(exclude_none=True)
        doc.update(id=self.id, fired=self.fired, checked=self.checked, remaining=self.remaining,
                   expires=self.expires)
        return doc

    def __getattr__(self, name: str) -> Any:  # rule.latency_ms, rule.fault...
        return getattr(self.spec, name)


class FaultEngine:
    def __init__(self, clock: Clock, seed: int | None = None) -> None:
        self.clock = clock
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.on_fire: list[Any] = []  # callbacks(rule, context) — the journal subscribes

    def add(self, spec: FaultSpec | dict[str, Any]) -> FaultRule:
        if not isinstance(spec, FaultSpec):
            spec = FaultSpec.model_validate(spec)
        number = next(self._ids)
        rule_id = spec.id or f"fault-{number}"
        if any(r.id == rule_id for r in self.rules):
            raise ValueError(f"a fault rule {rule_id!r} exists already")
        seed = spec.seed if spec.seed is not None else self._seed + number
        now = self.clock.time()
        rule = FaultRule(spec, rule_id, now, now + spec.ttl if spec.ttl else None, spec.times,
                         random.Random(seed))
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules = []

    def list(self) -> list[FaultRule]:
        self._expire()
        return list(self.rules)

    def _expire(self) -> None:
        now = self.clock.time()
        self.rules = [r for r in self.rules if (r.expires is None or r.expires > now)
                      and (r.remaining is None or r.remaining > 0)]

    def check(self, member: str, kind: str, protocol: str, *, types: tuple[str, ...],
              method: str | None = None, path: str | None = None,
              command: str | None = None, group: str | None = None) -> FaultRule | None:
        """The rule that fires for this event, if any (consumes one of its ``times``)."""
        if not self.rules:
            return None
        self._expire()
        for rule in self.rules:
            s = rule.spec
            if s.fault not in types:
                continue
            if not (fnmatch.fnmatchcase(member, s.member)
                    or (group is not None and fnmatch.fnmatchcase(group, s.member))):
                continue
            if s.kind is not None and s.kind != kind:
                continue
            if s.protocol is not None and not protocol.startswith(s.protocol):
                continue
            if s.method is not None and (method or "").upper() != s.method.upper():
                continue
            if s.path is not None and not fnmatch.fnmatchcase(path or "", s.path):
                continue
            if s.command is not None and (command or "") != s.command:
                continue
            rule.checked += 1
            if s.probability < 1.0 and rule.rng.random() >= s.probability:
                continue
            rule.fired += 1
            rule.history.append(self.clock.time())
            if rule.remaining is not None:
                rule.remaining -= 1
            for callback in self.on_fire:
                callback(rule, {"member": member, "kind": kind, "protocol": protocol,
                                "method": method, "path": path, "command": command})
            return rule
        return None
