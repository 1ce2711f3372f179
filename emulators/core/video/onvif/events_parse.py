"""What the events service reads from a request: xs:duration and xs:dateTime values (termination
times, PullMessages timeouts) and topic filters, each refused with the fault a camera sends."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .. import soap

WSNT = soap.NAMESPACES["wsnt"]
# The topic expression dialects ONVIF Core makes mandatory (events.wsdl, GetEventProperties).
CONCRETE_SET = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
CONCRETE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
TOPIC_DIALECTS = (CONCRETE_SET, CONCRETE)

# xs:duration (XML Schema part 2, 3.2.6) without the sign: a camera takes no negative waits.
_DURATION = re.compile(
    r"P(?:(\d{1,12})Y)?(?:(\d{1,12})M)?(?:(\d{1,12})D)?"
    r"(?:T(?:(\d{1,12})H)?(?:(\d{1,12})M)?(?:(\d{1,12}(?:\.\d{1,9})?)S)?)?")
# Years and months have no fixed length; ONVIF durations are seconds or minutes in practice.
_UNIT_SECONDS = (365 * 86400, 30 * 86400, 86400, 3600, 60, 1)


def invalid(reason: str) -> soap.SoapError:
    """ONVIF Core's generic "the argument value is invalid" fault."""
    return soap.SoapError("env:Sender", "ter:InvalidArgVal", reason)


def duration(text: str | None, what: str) -> float:
    """Seconds of a non-negative xs:duration, or ter:InvalidArgVal."""
    value = (text or "").strip()
    match = _DURATION.fullmatch(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise invalid(f"{what}: {value[:64]!r} is not a non-negative xs:duration")
    return sum(float(part) * unit for part, unit in zip(match.groups(), _UNIT_SECONDS,
                                                        strict=True) if part)


def date_time(text: str | None, what: str) -> float:
    """Seconds since the epoch of an xs:dateTime (UTC when it names no zone)."""
    value = (text or "").strip()
    if len(value) > 64 or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?"
                                           r"(Z|[+-]\d\d:\d\d)?", value):
        raise invalid(f"{what}: {value[:64]!r} is not an xs:dateTime")
    try:
        # fromisoformat takes at most six fractional digits.
        head, dot, rest = value.partition(".")
        if dot:
            digits = re.match(r"\d+", rest)
            assert digits is not None
            value = f"{head}.{digits.group()[:6].ljust(6, '0')}{rest[digits.end():]}"
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{what}: {text!r} is not a valid date and time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def termination(text: str | None, what: str, camera_now: float) -> float:
    """The camera-clock instant an AbsoluteOrRelativeTimeType names: a duration from now or a
    dateTime on the camera's clock."""
    value = (text or "").strip()
    if value.startswith(("P", "-P")):
        return camera_now + duration(value, what)
    return date_time(value, what)


def iso(camera_time: float) -> str:
    """An xs:dateTime in UTC, as ONVIF requires (``Z``, whole seconds)."""
    return datetime.fromtimestamp(int(camera_time), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(seconds: float) -> str:
    return f"PT{int(seconds)}S"


class TopicFilter:
    """A subscription's topic filter: ``None`` patterns pass every topic. A pattern is a topic
    path of local names (the prefix of each step is dropped: the expression's namespace
    declarations are not kept by the parser, and the camera's topics all sit in tns1), with
    ``//.`` for "this topic and every topic below it" and ``|`` between alternatives."""

    def __init__(self, patterns: list[tuple[tuple[str, ...], bool]] | None = None) -> None:
        self.patterns = patterns

    def matches(self, topic: str) -> bool:
        if self.patterns is None:
            return True
        steps = tuple(step.rpartition(":")[2] for step in topic.split("/"))
        for path, subtree in self.patterns:
            if steps == path or (subtree and steps[:len(path)] == path):
                return True
        return False

    @classmethod
    def parse(cls, filter_element: soap.Element | None) -> TopicFilter:
        """The filter of a CreatePullPointSubscription or Subscribe. Message content filters
        are accepted and not applied (the camera's messages carry one source each)."""
        if filter_element is None:
            return cls()
        expressions = filter_element.findall(f"{{{WSNT}}}TopicExpression")
        if not expressions:
            return cls()
        patterns: list[tuple[tuple[str, ...], bool]] = []
        for expression in expressions:
            dialect = (expression.get("Dialect") or "").strip()
            if dialect not in TOPIC_DIALECTS:
                raise invalid(f"TopicExpressionDialectUnknown: {dialect[:200]!r}")
            text = (expression.text or "").strip()
            if not text or len(text) > 4096:
                raise invalid("InvalidTopicExpression: the topic expression is empty or long")
            alternatives = text.split("|") if dialect == CONCRETE_SET else [text]
            for alternative in alternatives:
                patterns.append(_pattern(alternative.strip()))
        return cls(patterns)


_STEP = re.compile(r"(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*")


def _pattern(text: str) -> tuple[tuple[str, ...], bool]:
    subtree = text.endswith("//.")
    if subtree:
        text = text[:-3]
    steps = text.split("/")
    if not text or not all(_STEP.fullmatch(step) for step in steps):
        raise invalid(f"InvalidTopicExpression: {text[:200]!r}")
    return tuple(step.rpartition(":")[2] for step in steps), subtree
