"""The data forwarding rules' SQL: a rule's ``select`` and ``where`` clauses (their contents,
without the SELECT and WHERE keywords, as CreateRoutingRule carries them), parsed once when a
rule is saved and evaluated against each push document.

The grammar is the user guide's "SQL statements" page: SELECT items are ``*``, JSON paths
(``notify_data.body.content``, ``"msg-type"`` quoted when it holds a hyphen), integer and
string constants and functions, each optionally ``AS name`` (required for constants and
functions); WHERE combines comparisons (``> < >= <= = <>``), arithmetic (``+ - * /``), ``||``,
``LIKE``/``NOT LIKE``, ``IS [NOT] NULL``, ``IN``/``NOT IN`` with ``AND``, ``OR``, ``NOT`` and
parentheses. Keywords are case-insensitive, the rest case-sensitive. The guide's limits are
kept: 10 AS clauses, integers within 32 bits, string constants of 50 characters.

The output of a select is a flat object: an item's key is its AS name, else the path as
written (the guide's worked example: ``"notify_data.body.content"``); ``*`` copies the whole
document's top level.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_AS = 10
MAX_STRING = 50
INT_RANGE = (-2_147_483_648, 2_147_483_647)
MAX_DEPTH = 64  # nesting of parentheses and operators: far beyond a real rule, bounded

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"[^"]*")
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op><>|!=|>=|<=|\|\||[=<>+\-*/(),.\[\]])
""", re.VERBOSE)
KEYWORDS = {"AS", "AND", "OR", "NOT", "LIKE", "IS", "NULL", "IN", "TRUE", "FALSE"}


class SqlError(ValueError):
    """A clause that does not parse: the message says where (for the journal and the log)."""


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, quoted, name, op, end
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise SqlError(f"unexpected {text[at]!r} at {at}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# -- the tree: each node is a function of the document ----------------------------------------
Node = Callable[[Any], Any]
_MISSING = None


def _path(steps: tuple[str | int, ...]) -> Node:
    def get(doc: Any) -> Any:
        value = doc
        for step in steps:
            if isinstance(step, int):
                if not isinstance(value, list) or not -len(value) <= step < len(value):
                    return _MISSING
                value = value[step]
            elif isinstance(value, dict) and step in value:
                value = value[step]
            else:
                return _MISSING
        return value
    return get


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False  # "IS NULL" on either side: every comparison is false
    ln, rn = _number(left), _number(right)
    if ln is not None and rn is not None:
        a, b = ln, rn
    elif isinstance(left, str) and isinstance(right, str):
        a, b = left, right  # type: ignore[assignment]
    elif isinstance(left, bool) and isinstance(right, bool) and op in ("=", "<>", "!="):
        a, b = left, right
    else:
        return False
    if op == "=":
        return a == b
    if op in ("<>", "!="):
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _arith(op: str, left: Any, right: Any) -> Any:
    ln, rn = _number(left), _number(right)
    if ln is None or rn is None:
        return None
    if op == "+":
        return ln + rn
    if op == "-":
        return ln - rn
    if op == "*":
        return ln * rn
    if rn == 0:
        return None
    result = ln / rn
    return int(result) if isinstance(ln, int) and isinstance(rn, int) and result.is_integer() \
        else result


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _either(a: Node, b: Node) -> Node:
    return lambda d: a(d) is True or b(d) is True


def _both(a: Node, b: Node) -> Node:
    return lambda d: a(d) is True and b(d) is True


def _comparison(op: str, a: Node, b: Node) -> Node:
    return lambda d: _compare(op, a(d), b(d))


def _arithmetic(op: str, a: Node, b: Node) -> Node:
    return lambda d: _arith(op, a(d), b(d))


# -- functions (the guide's table 2) ------------------------------------------------------------
def _tags(doc: Any) -> list[Any]:
    header = doc.get("notify_data", {}).get("header", {}) if isinstance(doc, dict) else {}
    tags = header.get("tags") if isinstance(header, dict) else None
    return tags if isinstance(tags, list) else []


def _services(doc: Any) -> list[dict[str, Any]]:
    body = doc.get("notify_data", {}).get("body", {}) if isinstance(doc, dict) else {}
    services = body.get("services") if isinstance(body, dict) else None
    return [s for s in services if isinstance(s, dict)] if isinstance(services, list) else []


def _service_matches(service: dict[str, Any], wanted: Any, fuzzy: Any) -> bool:
    sid = service.get("service_id")
    if not isinstance(sid, str) or not isinstance(wanted, str):
        return False
    return wanted in sid if fuzzy is True else sid == wanted


def _get_tag(doc: Any, key: Any) -> Any:
    return next((t.get("tag_value") for t in _tags(doc)
                 if isinstance(t, dict) and t.get("tag_key") == key), None)


def _contains_tag(doc: Any, key: Any) -> bool:
    return any(isinstance(t, dict) and t.get("tag_key") == key for t in _tags(doc))


def _get_services(doc: Any, sid: Any, fuzzy: Any = False) -> list[dict[str, Any]] | None:
    found = [s for s in _services(doc) if _service_matches(s, sid, fuzzy)]
    return found or None


def _get_service(doc: Any, sid: Any, fuzzy: Any = False) -> Any:
    found = _get_services(doc, sid, fuzzy)
    return found[0] if found else None


def _contains_services(doc: Any, sid: Any, fuzzy: Any = False) -> bool:
    return _get_services(doc, sid, fuzzy) is not None


def _service_properties(doc: Any, sid: Any) -> Any:
    service = _get_service(doc, sid)
    return service.get("properties") if service else None


def _service_property(doc: Any, sid: Any, key: Any) -> Any:
    properties = _service_properties(doc, sid)
    if not isinstance(properties, dict) or not isinstance(key, str):
        return None
    return properties.get(key)


def _strings(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(doc: Any, *args: Any) -> Any:
        texts = [_text(a) if not isinstance(a, int) or isinstance(a, bool) else a for a in args]
        if any(t is None for t in texts):
            return None
        return fn(*texts)
    return wrapped


def _substring(text: str, begin: Any, end: Any = None) -> str | None:
    if not isinstance(begin, int) or (end is not None and not isinstance(end, int)):
        return None
    if begin < 0 or begin > len(text) or (end is not None and not begin <= end <= len(text)):
        return None  # Java's substring would throw: nothing is selected
    return text[begin:end]


# name -> (function of (doc, *args), smallest and largest argument count)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "GET_TAG": (_get_tag, 1, 1),
    "CONTAINS_TAG": (_contains_tag, 1, 1),
    "GET_SERVICE": (_get_service, 1, 2),
    "GET_SERVICES": (_get_services, 1, 2),
    "CONTAINS_SERVICES": (_contains_services, 1, 2),
    "GET_SERVICE_PROPERTIES": (_service_properties, 1, 1),
    "GET_SERVICE_PROPERTY": (_service_property, 2, 2),
    "STARTS_WITH": (_strings(lambda a, b: a.startswith(b)), 2, 2),
    "ENDS_WITH": (_strings(lambda a, b: a.endswith(b)), 2, 2),
    "CONCAT": (_strings(lambda a, b: a + b), 2, 2),
    "REPLACE": (_strings(lambda a, b, c: a.replace(b, c)), 3, 3),
    "SUBSTRING": (_strings(_substring), 2, 3),
    "LOWER": (_strings(str.lower), 1, 1),
    "UPPER": (_strings(str.upper), 1, 1),
}


# -- the parser -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    key: str | None  # None: "*"
    node: Node
    aliased: bool = False  # named by AS (the guide allows ten)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def keyword(self, *words: str) -> bool:
        t = self.token
        return t.kind == "name" and t.text.upper() in words

    def take(self) -> Token:
        t = self.token
        self.at += 1
        return t

    def expect_op(self, op: str) -> None:
        if self.token.kind != "op" or self.token.text != op:
            self.fail(f"{op!r} expected")
        self.at += 1

    def fail(self, what: str) -> None:
        t = self.token
        near = repr(t.text) if t.kind != "end" else "the end"
        raise SqlError(f"{what} at {t.at} (near {near})")

    def end(self) -> None:
        if self.token.kind != "end":
            self.fail("unexpected text")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail("too deeply nested")

    # expression := or
    def expression(self) -> Node:
        self.nested()
        try:
            return self.disjunction()
        finally:
            self.depth -= 1

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.keyword("OR"):
            self.take()
            node = _either(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.keyword("AND"):
            self.take()
            node = _both(node, self.negation())
        return node

    def negation(self) -> Node:
        if self.keyword("NOT"):
            self.take()
            self.nested()
            inner = self.negation()
            self.depth -= 1
            return lambda d: inner(d) is not True
        return self.predicate()

    def predicate(self) -> Node:
        left = self.concat()
        t = self.token
        if t.kind == "op" and t.text in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.take()
            return _comparison(t.text, left, self.concat())
        if self.keyword("IS"):
            self.take()
            negate = self.keyword("NOT")
            if negate:
                self.take()
            if not self.keyword("NULL"):
                self.fail("NULL expected")
            self.take()
            return lambda d: (_is_null(left(d))) is not negate
        negate = self.keyword("NOT")
        if negate:
            self.take()
            if not self.keyword("LIKE", "IN"):
                self.fail("LIKE or IN expected")
        if self.keyword("LIKE"):
            self.take()
            pattern = self.string_constant()
            compiled = _like(pattern)

            def like(d: Any) -> bool:
                value = left(d)
                if not isinstance(value, str):
                    return False
                return (compiled.fullmatch(value) is not None) is not negate
            return like
        if self.keyword("IN"):
            self.take()
            members = self.constant_list()

            def within(d: Any) -> bool:
                value = left(d)
                if value is None:
                    return False
                found = any(_compare("=", value, m) for m in members)
                return found is not negate
            return within
        return left

    def constant_list(self) -> list[Any]:
        self.expect_op("(")
        members: list[Any] = []
        while True:
            t = self.token
            if t.kind == "string":
                members.append(self.string_constant())
            elif t.kind == "number" or (t.kind == "op" and t.text == "-"):
                members.append(self.number_constant())
            else:
                self.fail("a constant expected")
            if self.token.kind == "op" and self.token.text == ",":
                self.take()
                continue
            break
        self.expect_op(")")
        if len({type(m) is str for m in members}) > 1:
            self.fail("IN's constants are of one type")
        return members

    def concat(self) -> Node:
        node = self.additive()
        while self.token.kind == "op" and self.token.text == "||":
            self.take()
            left, right = node, self.additive()

            def joined(d: Any, a: Node = left, b: Node = right) -> Any:
                x, y = _text(a(d)), _text(b(d))
                return None if x is None or y is None else x + y
            node = joined
        return node

    def additive(self) -> Node:
        node = self.term()
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            op = self.take().text
            node = _arithmetic(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.token.kind == "op" and self.token.text in ("*", "/"):
            op = self.take().text
            node = _arithmetic(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.token.kind == "op" and self.token.text == "-":
            if self.tokens[self.at + 1].kind == "number":
                value = self.number_constant()
                return lambda d: value
            self.take()
            self.nested()
            inner = self.unary()
            self.depth -= 1
            return lambda d: _arith("-", 0, inner(d))
        return self.primary()

    def number_constant(self) -> int | float:
        sign = 1
        if self.token.kind == "op" and self.token.text == "-":
            self.take()
            sign = -1
        t = self.token
        if t.kind != "number":
            self.fail("a number expected")
        self.take()
        value = sign * (float(t.text) if "." in t.text else int(t.text))
        if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            self.fail("an integer outside -2147483648..2147483647")
        return value

    def string_constant(self) -> str:
        t = self.token
        if t.kind != "string":
            self.fail("a string constant expected")
        self.take()
        value = t.text[1:-1].replace("''", "'")
        if len(value) > MAX_STRING:
            self.fail(f"a string constant over {MAX_STRING} characters")
        return value

    def primary(self) -> Node:
        t = self.token
        if t.kind == "number":
            value = self.number_constant()
            return lambda d: value
        if t.kind == "string":
            text = self.string_constant()
            return lambda d: text
        if t.kind == "op" and t.text == "(":
            self.take()
            inner = self.expression()
            self.expect_op(")")
            return inner
        if t.kind == "name" and t.text.upper() in ("TRUE", "FALSE"):
            self.take()
            flag = t.text.upper() == "TRUE"
            return lambda d: flag
        if t.kind == "name" and self.tokens[self.at + 1].text == "(" and \
                self.tokens[self.at + 1].kind == "op":
            return self.function()
        if t.kind in ("name", "quoted"):
            return _path(self.path())
        self.fail("a value expected")
        raise AssertionError  # fail raised

    def path(self) -> tuple[str | int, ...]:
        steps: list[str | int] = [self.segment()]
        while self.token.kind == "op" and self.token.text in (".", "["):
            if self.take().text == ".":
                steps.append(self.segment())
                continue
            t = self.token
            if t.kind != "number" or "." in t.text:
                self.fail("an index expected")
            self.take()
            steps.append(int(t.text))
            self.expect_op("]")
        return tuple(steps)

    def segment(self) -> str:
        t = self.token
        if t.kind == "quoted":
            self.take()
            if not re.fullmatch(r"[A-Za-z0-9_-]+", t.text[1:-1]):
                self.fail("a quoted name holds letters, digits, '_' and '-'")
            return t.text[1:-1]
        if t.kind != "name" or t.text.upper() in KEYWORDS:
            self.fail("a name expected")
        self.take()
        return t.text

    def function(self) -> Node:
        name = self.take().text
        found = FUNCTIONS.get(name.upper())
        if found is None:
            self.fail(f"unknown function {name}")
            raise AssertionError
        fn, low, high = found
        self.expect_op("(")
        args: list[Node] = []
        if not (self.token.kind == "op" and self.token.text == ")"):
            args.append(self.expression())
            while self.token.kind == "op" and self.token.text == ",":
                self.take()
                args.append(self.expression())
        self.expect_op(")")
        if not low <= len(args) <= high:
            self.fail(f"{name} takes {low}..{high} arguments")
        def call(d: Any) -> Any:
            try:
                return fn(d, *(a(d) for a in args))
            except (TypeError, ValueError):
                return None  # an argument of the wrong type (UPPER(5)): nothing selected
        return call

    # select := item ("," item)*
    def select(self) -> list[_Item]:
        items = [self.item()]
        while self.token.kind == "op" and self.token.text == ",":
            self.take()
            items.append(self.item())
        self.end()
        if sum(i.aliased for i in items) > MAX_AS:
            raise SqlError(f"more than {MAX_AS} AS clauses")
        return items

    def item(self) -> _Item:
        t = self.token
        if t.kind == "op" and t.text == "*":
            self.take()
            return _Item(None, lambda d: d)
        start = self.at
        node = self.expression()
        plain_path = all(tok.kind in ("name", "quoted") or tok.text in (".", "[", "]")
                         or tok.kind == "number" for tok in self.tokens[start:self.at]) and \
            self.tokens[start].kind in ("name", "quoted") and not (
                self.at - start > 1 and self.tokens[start + 1].text == "(")
        if self.keyword("AS"):
            self.take()
            alias = self.token
            if alias.kind == "quoted":
                name = alias.text[1:-1]
            elif alias.kind == "name" and alias.text.upper() not in KEYWORDS:
                name = alias.text
            else:
                self.fail("a name expected after AS")
                raise AssertionError
            if not re.fullmatch(r"[A-Za-z_-]{1,32}", name):
                self.fail("an AS name of letters, '_' and '-', up to 32")
            self.take()
            return _Item(name, node, aliased=True)
        if not plain_path:
            self.fail("a constant or function needs AS")
        return _Item(self.text[self.tokens[start].at:self.token.at].strip().replace('"', ""),
                      node)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value)


@dataclass(frozen=True)
class Selection:
    """A parsed ``select``: the document each forwarded event becomes."""

    items: tuple[_Item, ...]

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in self.items:
            value = item.node(doc)
            if item.key is None:
                out.update(value)
            elif value is not None:
                out[item.key] = value
        return out


@dataclass(frozen=True)
class Condition:
    """A parsed ``where``: true when the event is forwarded."""

    node: Node

    def holds(self, doc: dict[str, Any]) -> bool:
        try:
            return self.node(doc) is True
        except (TypeError, ValueError, OverflowError, RecursionError):
            return False


def parse_select(text: str) -> Selection:
    return Selection(tuple(_Parser(text).select()))


def parse_where(text: str) -> Condition:
    parser = _Parser(text)
    node = parser.expression()
    parser.end()
    return Condition(node)
