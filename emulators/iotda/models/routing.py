"""Data forwarding's saved resources: routing rules (CreateRoutingRule ...), rule actions
(CreateRuleAction ...), AMQP queues (AddQueue ...) and access codes (CreateAccessCode), with
the checks the API reference documents for their bodies.

No HTTP here: the models take plain values and raise the typed errors of ``exceptions``.

Ids are shaped as the reference's examples show them (``1a7ffc5c-d89c-44dd-8265-b1653d951ce0``):
the first 24 hex digits are an ObjectId from the member's id sequence, so newer records sort
above older ones and a list's ``marker`` (24 hex digits, as the SDK documents it) is the last
record's ObjectId.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from ..exceptions import (
    ActionNotFound,
    InvalidInput,
    QueueInUse,
    QueueNotFound,
    QueueRefused,
    RuleNotFound,
    RuleQuotaExceeded,
)
from .common import (
    APP_ID,
    IdSource,
    PageQuery,
    bool_field,
    lookup,
    now_text,
    object_field,
    paginate,
)
from .common import text_field as text
from .sql import SqlError, parse_select, parse_where

# The reference's resource:event table (RoutingRuleSubject).
SUBJECTS: frozenset[tuple[str, str]] = frozenset({
    ("device", "create"), ("device", "delete"), ("device", "update"),
    ("device.status", "update"), ("device.property", "report"), ("device.message", "report"),
    ("device.message.status", "update"), ("batchtask", "update"), ("product", "create"),
    ("product", "delete"), ("product", "update"), ("device.command.status", "update")})
CHANNELS = ("HTTP_FORWARDING", "DIS_FORWARDING", "OBS_FORWARDING", "AMQP_FORWARDING",
            "DMS_KAFKA_FORWARDING", "ROMA_FORWARDING", "INFLUXDB_FORWARDING",
            "MYSQL_FORWARDING", "FUNCTIONGRAPH_FORWARDING", "MRS_KAFKA_FORWARDING",
            "DMS_ROCKETMQ_FORWARDING", "MQTT_DEVICE_FORWARDING")
# The channels the farm delivers to; the others are cloud services it does not run.
EMULATED_CHANNELS = ("HTTP_FORWARDING", "AMQP_FORWARDING")
RULE_NAME = re.compile(r"[\w?'#().,&%@!\-]{1,256}")
RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{8,128}")
QUEUE_FILTER = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
HTTP_TOKEN = re.compile(r"[A-Za-z0-9]{3,32}")
SQL_MAX = 2500  # the API reference's limit for select and where (the user guide says 500)
QUEUE_QUOTA = 100  # AddQueue: "Each tenant can create up to 100 queues"


R = TypeVar("R", "RoutingRule", "RuleAction", "Queue")


def _owned(records: Mapping[str, R], project_id: str, given: str, name: str,
           missing: Callable[[str], Exception]) -> R:
    """The record a path names: invalid input for no id, ``missing`` for an unknown one or
    one of another project (a project never learns another's ids)."""
    record = lookup(records, given, given, RECORD_ID, name, missing)
    if record.project_id != project_id:
        raise missing(given)
    return record


def record_id(ids: IdSource, now: float) -> str:
    oid = ids.next(now)
    tail = secrets.token_hex(4)
    return f"{oid[:8]}-{oid[8:12]}-{oid[12:16]}-{oid[16:20]}-{oid[20:24]}{tail}"


def order_key(record_id_: str) -> str:
    """The ObjectId a record id starts with: what list order and ``marker`` go by."""
    return record_id_.replace("-", "")[:24]


def _page(records: list[Any], id_name: str, page: PageQuery) -> tuple[list[Any], dict[str, Any]]:
    return paginate(records, [order_key(getattr(r, id_name)) for r in records], page)


def _sql(body: dict[str, Any], name: str) -> str | None:
    value = text(body, name, required=False, max_len=SQL_MAX, min_len=0)
    if value:
        try:
            (parse_select if name == "select" else parse_where)(value)
        except SqlError as exc:
            raise InvalidInput(f"{name}: {exc}") from None
    return value


@dataclass(frozen=True)
class RoutingRule:
    rule_id: str
    project_id: str
    subject: dict[str, str]
    app_type: str
    app_id: str | None = None
    rule_name: str | None = None
    description: str | None = None
    select: str | None = None
    where: str | None = None
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The RoutingRule the SDK reads (every create, show, update and list entry)."""
        return {"rule_id": self.rule_id, "rule_name": self.rule_name,
                "description": self.description, "subject": dict(self.subject),
                "app_type": self.app_type, "app_id": self.app_id, "select": self.select,
                "where": self.where, "active": self.active}


@dataclass(frozen=True)
class RuleAction:
    action_id: str
    project_id: str
    rule_id: str
    channel: str
    channel_detail: dict[str, Any]
    app_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "rule_id": self.rule_id, "app_id": self.app_id,
                "channel": self.channel, "channel_detail": self.channel_detail}


@dataclass(frozen=True)
class Queue:
    queue_id: str
    project_id: str
    queue_name: str
    create_time: str
    last_modify_time: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        return {"queue_id": self.queue_id, "queue_name": self.queue_name,
                "create_time": self.create_time, "last_modify_time": self.last_modify_time}


@dataclass(frozen=True)
class AccessCode:
    project_id: str
    type: str  # AMQP or MQTT
    access_key: str
    access_code: str


def _access_key() -> str:
    # "接入名,随机生成8位字符串": eight random letters and digits.
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


@dataclass
class Routing:
    """Every project's rules, actions, queues and access codes."""

    ids: IdSource
    default_app_id: str
    rule_quota: int = 100
    actions_per_rule: int = 10
    rules: dict[str, RoutingRule] = field(default_factory=dict)
    actions: dict[str, RuleAction] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)
    codes: dict[tuple[str, str], AccessCode] = field(default_factory=dict)

    # -- state ----------------------------------------------------------------------------------
    def load(self, data: dict[str, Any]) -> None:
        self.rules = {r["rule_id"]: RoutingRule(**r) for r in data.get("rules", [])}
        self.actions = {a["action_id"]: RuleAction(**a) for a in data.get("actions", [])}
        self.queues = {q["queue_id"]: Queue(**q) for q in data.get("queues", [])}
        self.codes = {(c["project_id"], c["type"]): AccessCode(**c)
                      for c in data.get("access_codes", [])}
        self.ids.above(*(order_key(i) for i in (*self.rules, *self.actions, *self.queues)))

    def dump(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules.values()],
                "actions": [a.to_dict() for a in self.actions.values()],
                "queues": [q.to_dict() for q in self.queues.values()],
                "access_codes": [asdict(c) for c in self.codes.values()]}

    # -- rules ----------------------------------------------------------------------------------
    def add_rule(self, project_id: str, body: dict[str, Any], now: float) -> RoutingRule:
        subject = object_field(body, "subject")
        if subject is None:
            raise InvalidInput("subject is required")
        resource = text(subject, "resource", required=True, max_len=50)
        event = text(subject, "event", required=True, max_len=50)
        if (resource, event) not in SUBJECTS:
            raise InvalidInput(f"subject {resource}:{event} is not in the resource:event table")
        app_type = body.get("app_type", "GLOBAL")
        if app_type not in ("GLOBAL", "APP"):
            raise InvalidInput("app_type must be GLOBAL or APP")
        app_id = text(body, "app_id", required=False, max_len=36, pattern=APP_ID)
        if app_type == "APP" and app_id is None:
            app_id = self.default_app_id  # "不携带app_id则...默认资源空间"
        if sum(r.project_id == project_id for r in self.rules.values()) >= self.rule_quota:
            raise RuleQuotaExceeded(f"project {project_id} has {self.rule_quota} rules")
        rule = RoutingRule(
            rule_id=record_id(self.ids, now), project_id=project_id,
            subject={"resource": str(resource), "event": str(event)}, app_type=app_type,
            app_id=app_id if app_type == "APP" else None,
            rule_name=text(body, "rule_name", required=False, max_len=256, pattern=RULE_NAME),
            description=text(body, "description", required=False, max_len=256, min_len=0),
            select=_sql(body, "select"), where=_sql(body, "where"))
        self.rules[rule.rule_id] = rule
        return rule

    def rule(self, project_id: str, rule_id: str) -> RoutingRule:
        return _owned(self.rules, project_id, rule_id, "rule_id", RuleNotFound)

    def update_rule(self, project_id: str, rule_id: str, body: dict[str, Any]) -> RoutingRule:
        rule = self.rule(project_id, rule_id)
        changes: dict[str, Any] = {}
        if "rule_name" in body:
            changes["rule_name"] = text(body, "rule_name", required=False, max_len=256,
                                        pattern=RULE_NAME)
        if "description" in body:
            changes["description"] = text(body, "description", required=False, max_len=256,
                                          min_len=0)
        has_select, has_where = body.get("select") is not None, body.get("where") is not None
        if has_select != has_where:
            # "更新sql时，select跟where必须同时传参" (an empty string clears one)
            raise InvalidInput("select and where are updated together")
        if has_select:
            changes["select"] = _sql(body, "select") or None
            changes["where"] = _sql(body, "where") or None
        active = bool_field(body, "active")
        if active is not None:
            changes["active"] = active
        rule = replace(rule, **changes)
        self.rules[rule_id] = rule
        return rule

    def delete_rule(self, project_id: str, rule_id: str) -> list[RuleAction]:
        """The rule and its actions (a rule's actions have no meaning without it)."""
        rule = self.rule(project_id, rule_id)
        del self.rules[rule.rule_id]
        gone = [a for a in self.actions.values() if a.rule_id == rule.rule_id]
        for action in gone:
            del self.actions[action.action_id]
        return gone

    def list_rules(self, project_id: str, query: dict[str, str], page: PageQuery
                   ) -> tuple[list[RoutingRule], dict[str, Any]]:
        chosen = [r for r in self.rules.values() if r.project_id == project_id]
        if "resource" in query:
            chosen = [r for r in chosen if r.subject["resource"] == query["resource"]]
        if "event" in query:
            chosen = [r for r in chosen if r.subject["event"] == query["event"]]
        if "app_type" in query:
            chosen = [r for r in chosen if r.app_type == query["app_type"]]
        if "app_id" in query:
            chosen = [r for r in chosen if r.app_id == query["app_id"]]
        if "rule_name" in query:
            chosen = [r for r in chosen if r.rule_name == query["rule_name"]]
        if "active" in query:
            if query["active"] not in ("true", "false"):
                raise InvalidInput(f"active={query['active']!r}")
            chosen = [r for r in chosen if r.active == (query["active"] == "true")]
        return _page(chosen, "rule_id", page)

    def active_rules(self, project_id: str, resource: str, event: str) -> list[RoutingRule]:
        return [r for r in self.rules.values() if r.active and r.project_id == project_id
                and r.subject["resource"] == resource and r.subject["event"] == event]

    # -- actions --------------------------------------------------------------------------------
    def _channel_detail(self, project_id: str, channel: str, detail: dict[str, Any] | None
                        ) -> dict[str, Any]:
        if channel not in CHANNELS:
            raise InvalidInput(f"channel {channel!r}")
        if channel not in EMULATED_CHANNELS:
            raise InvalidInput(f"channel {channel} is not emulated (only "
                               f"{', '.join(EMULATED_CHANNELS)})")
        key = channel.lower()
        inner = object_field(detail or {}, key)
        if inner is None:
            raise InvalidInput(f"channel_detail.{key} is required for {channel}")
        if channel == "HTTP_FORWARDING":
            url = text(inner, "url", required=True, max_len=256)
            if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", str(url)):
                raise InvalidInput("http_forwarding.url must be an http:// or https:// URL")
            out: dict[str, Any] = {"url": url}
            for name, limit in (("cert_id", 64), ("cn_name", 256)):
                value = text(inner, name, required=False, max_len=limit)
                if value is not None:
                    out[name] = value
            for name in ("sni_enable", "signature_enable"):
                flag = bool_field(inner, name)
                if flag is not None:
                    out[name] = flag
            token = text(inner, "token", required=False, max_len=32, min_len=3,
                         pattern=HTTP_TOKEN)
            if token is not None:
                out["token"] = token
            return {key: out}
        queue_name = text(inner, "queue_name", required=True, max_len=128)
        if self.queue_named(project_id, str(queue_name)) is None:
            raise InvalidInput(f"amqp_forwarding.queue_name {queue_name!r}: no such queue")
        return {key: {"queue_name": queue_name}}

    def add_action(self, project_id: str, body: dict[str, Any], now: float) -> RuleAction:
        rule_id = text(body, "rule_id", required=True, max_len=36, pattern=RECORD_ID)
        channel = text(body, "channel", required=True, max_len=64)
        detail = object_field(body, "channel_detail")
        rule = self.rule(project_id, str(rule_id))
        checked = self._channel_detail(project_id, str(channel), detail)
        if sum(a.rule_id == rule.rule_id for a in self.actions.values()) >= \
                self.actions_per_rule:
            raise RuleQuotaExceeded(f"rule {rule.rule_id} has {self.actions_per_rule} actions")
        action = RuleAction(record_id(self.ids, now), project_id, rule.rule_id, str(channel),
                            checked, rule.app_id or self.default_app_id)
        self.actions[action.action_id] = action
        return action

    def action(self, project_id: str, action_id: str) -> RuleAction:
        return _owned(self.actions, project_id, action_id, "action_id", ActionNotFound)

    def update_action(self, project_id: str, action_id: str, body: dict[str, Any]
                      ) -> RuleAction:
        action = self.action(project_id, action_id)
        channel = text(body, "channel", required=False, max_len=64) or action.channel
        detail = object_field(body, "channel_detail")
        if detail is None and channel == action.channel:
            return action
        checked = self._channel_detail(project_id, channel, detail)
        action = replace(action, channel=channel, channel_detail=checked)
        self.actions[action_id] = action
        return action

    def delete_action(self, project_id: str, action_id: str) -> None:
        del self.actions[self.action(project_id, action_id).action_id]

    def list_actions(self, project_id: str, query: dict[str, str], page: PageQuery
                     ) -> tuple[list[RuleAction], dict[str, Any]]:
        chosen = [a for a in self.actions.values() if a.project_id == project_id]
        if "rule_id" in query:
            chosen = [a for a in chosen if a.rule_id == query["rule_id"]]
        if "channel" in query:
            chosen = [a for a in chosen if a.channel == query["channel"]]
        if "app_id" in query and "rule_id" not in query:
            chosen = [a for a in chosen if a.app_id == query["app_id"]]
        return _page(chosen, "action_id", page)

    def actions_of(self, rule_id: str) -> list[RuleAction]:
        return [a for a in self.actions.values() if a.rule_id == rule_id]

    # -- queues ---------------------------------------------------------------------------------
    def add_queue(self, project_id: str, body: dict[str, Any], now: float) -> Queue:
        name = text(body, "queue_name", required=True, max_len=128, min_len=8,
                    pattern=QUEUE_NAME)
        if self.queue_named(project_id, str(name)) is not None:
            raise QueueRefused(f"queue {name!r} exists")
        if sum(q.project_id == project_id for q in self.queues.values()) >= QUEUE_QUOTA:
            raise QueueRefused(f"project {project_id} has {QUEUE_QUOTA} queues")
        stamp = now_text(now)
        queue = Queue(record_id(self.ids, now), project_id, str(name), stamp, stamp)
        self.queues[queue.queue_id] = queue
        return queue

    def queue(self, project_id: str, queue_id: str) -> Queue:
        return _owned(self.queues, project_id, queue_id, "queue_id", QueueNotFound)

    def queue_named(self, project_id: str, name: str) -> Queue | None:
        return next((q for q in self.queues.values()
                     if q.project_id == project_id and q.queue_name == name), None)

    def delete_queue(self, project_id: str, queue_id: str) -> Queue:
        queue = self.queue(project_id, queue_id)
        if any(a.project_id == project_id and a.channel == "AMQP_FORWARDING"
               and a.channel_detail["amqp_forwarding"]["queue_name"] == queue.queue_name
               for a in self.actions.values()):
            raise QueueInUse(queue.queue_name)
        del self.queues[queue.queue_id]
        return queue

    def list_queues(self, project_id: str, name: str | None, page: PageQuery
                    ) -> tuple[list[Queue], dict[str, Any]]:
        if name is not None and not QUEUE_FILTER.fullmatch(name):
            raise InvalidInput(f"queue_name={name!r}")
        chosen = [q for q in self.queues.values() if q.project_id == project_id
                  and (name is None or name in q.queue_name)]  # "支持模糊查询"
        return _page(chosen, "queue_id", page)

    # -- access codes ---------------------------------------------------------------------------
    def new_access_code(self, project_id: str, body: dict[str, Any]) -> AccessCode:
        """One record per project and type: a new call keeps the access key and replaces the
        code, so the old code stops working ("只保留一条记录,如果重复调用只会重置接入凭证")."""
        kind = body.get("type", "AMQP")
        if kind not in ("AMQP", "MQTT"):
            raise InvalidInput("type must be AMQP or MQTT")
        bool_field(body, "force_disconnect")
        old = self.codes.get((project_id, kind))
        code = AccessCode(project_id, kind, old.access_key if old else _access_key(),
                          secrets.token_urlsafe(24))
        self.codes[(project_id, kind)] = code
        return code

    def access_code(self, access_key: str) -> AccessCode | None:
        """The AMQP access code whose key is ``access_key``."""
        return next((c for c in self.codes.values()
                     if c.type == "AMQP" and c.access_key == access_key), None)
