"""Redaction of a capture, in one place: what a profile may not carry (the password given,
the target's address, secret-named values, serials, MAC addresses, PEM blocks, secret-looking
values of headers the tool does not know, a cloud's access key, request ids) becomes the
format's placeholders; user names and settings stay as the device sent them. A value once
redacted by its name (a token in a reply) is redacted wherever it appears later (the request
that sends it back)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A name says secret when one of its words is one of these (``ft_password``, ``sessionid``,
# ``publickey``), or one of its tokens is a short one (``sn``, ``mac``: as a substring they
# would hit ``snapcount`` or ``machine``).
_SECRET_WORDS = {"password": "<secret>", "passwd": "<secret>", "secret": "<secret>",
                 "credential": "<secret>", "token": "<token>", "session": "<token>",
                 "cookie": "<token>", "auth": "<token>", "key": "<key>",
                 "serial": "<serial>"}
_SECRET_TOKENS = {"pwd": "<secret>", "pass": "<secret>", "sn": "<serial>", "mac": "<mac>"}
# Headers whose values are known not to be secrets (a value of any other header is kept
# unless it looks like one: default deny).
KNOWN_HEADERS = frozenset(h.lower() for h in (
    "Accept-Ranges", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods",
    "Access-Control-Allow-Origin", "Cache-Control", "Connection", "Content-Disposition",
    "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "Date", "ETag",
    "Expires", "Keep-Alive", "Last-Modified", "Location", "Pragma", "Server",
    "Strict-Transport-Security", "Transfer-Encoding", "Vary", "WWW-Authenticate",
    "X-Content-Type-Options", "X-Frame-Options", "X-XSS-Protection",
    "Content-Security-Policy", "Referrer-Policy"))
_COOKIE_HEADERS = frozenset({"set-cookie", "cookie"})
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_MAC = re.compile(r"(?<![0-9A-Fa-f:-])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"
                  r"(?![0-9A-Fa-f:-])")
# ``name="value"``, ``name='value'`` (INSTAR, ACTi bodies), ``name=value`` up to ; & or the
# line's end.
_KEY_VALUE = re.compile(r"""(?P<name>[A-Za-z_][\w.\[\]'-]*)(?P<sep>\s*=\s*)"""
                        r"""(?:(?P<q>["'])(?P<quoted>[^"'\r\n]*)(?P=q)|(?P<bare>[^\s;&,"'<]+))""")
# ``Serial Number: value`` lines (ACTi's SYSTEM_INFO style; ``Name = value`` too).
_WORDS_LINE = re.compile(r"^(?P<name>[A-Za-z][\w.-]*(?: [\w.-]+)*)(?P<sep>[ \t]*[:=][ \t]*)"
                         r"(?P<value>[^\r\n<]+?)(?P<end>[ \t;]*\r?)$", re.MULTILINE)
_PLACEHOLDER_ONLY = re.compile(r"<[a-z-]+>")
_LONG_RUN = re.compile(r"[A-Fa-f0-9]{24,}|[A-Za-z0-9+/_-]{32,}={0,2}")
_DIGEST_PARAM = re.compile(r"""\b(nonce|cnonce|opaque)=("?)([^",\s]+)\2""")
# A JSON member whose value is a string or a number (``"accessToken": "..."``,
# ``"certSN": 52771``); objects and arrays are walked into by the pattern's later matches.
_JSON_PAIR = re.compile(r'"(?P<name>[A-Za-z_][\w.-]{0,63})"(?P<sep>\s*:\s*)'
                        r'(?:"(?P<quoted>(?:[^"\\\r\n]|\\.)*)"|(?P<num>-?\d+)(?![\d.eE]))')
# JSON names that say secret but hold a kind of thing, not the thing (``auth_type``: "SECRET").
_DESCRIBES = {"type", "mode", "method", "status", "enable", "enabled", "time", "date",
              "expire", "expires", "count", "algorithm", "format", "info", "authority"}
# Names of a per-request id: the service's own, a new one in every reply.
_REQUEST_ID = {"requestid", "xrequestid"}
# A value remembered for later requests and replies only when it is this long (a short one
# would replace ordinary words).
_LEARN_MIN = 6


def secret_placeholder(name: str) -> str | None:
    """The placeholder for a value named ``name``, or None when the name says nothing."""
    lowered = name.lower()
    for word, placeholder in _SECRET_WORDS.items():
        if word in lowered:
            return placeholder
    tokens = re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    for token in tokens:
        if token in _SECRET_TOKENS:
            return _SECRET_TOKENS[token]
    return None


def is_request_id(name: str) -> bool:
    return re.sub(r"[^a-z0-9]", "", name.lower()) in _REQUEST_ID


def _json_placeholder(name: str) -> str | None:
    if is_request_id(name):
        return "<request-id>"
    tokens = re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    if tokens[-1] in _DESCRIBES:
        return None
    return secret_placeholder(name)


def escape(text: str) -> str:
    """A recorded value's own ``<`` is written ``<<`` (placeholders are the only single ``<``)."""
    return text.replace("<", "<<")


@dataclass(frozen=True)
class Redactor:
    """The rules for one capture: the password given and the target's host and port; the
    user too where it names the account (a cloud's access key)."""

    password: str | None
    host: str
    port: int
    enabled: bool = True
    user: str | None = None  # redacted as <user> (None: user names stay)
    # Values redacted by their name, and what they became: redacted wherever they reappear.
    learned: dict[str, str] = field(default_factory=dict, compare=False)

    def _known(self, text: str) -> str:
        if self.password:
            text = text.replace(escape(self.password), "<secret>")
        if self.user:
            text = text.replace(escape(self.user), "<user>")
        for value, placeholder in self.learned.items():
            text = text.replace(value, placeholder)
        return text

    def _learn(self, value: str, placeholder: str) -> None:
        if len(value) >= _LEARN_MIN and placeholder not in ("<request-id>",):
            self.learned[value] = placeholder

    def _json_pair(self, match: re.Match[str]) -> str:
        quoted = match["quoted"]
        value = quoted if quoted is not None else match["num"]
        if not value or _PLACEHOLDER_ONLY.fullmatch(value):
            return match[0]
        placeholder = _json_placeholder(match["name"])
        if placeholder is None and quoted is not None and _PEM.fullmatch(
                quoted.replace("\\n", "\n").replace("\\r", "\r").strip()):
            placeholder = "<pem>"  # the whole value: a member's own PEM takes its place
        if placeholder is None:
            return match[0]
        self._learn(value, placeholder)
        shown = f'"{placeholder}"' if quoted is not None else placeholder
        return f'"{match["name"]}"{match["sep"]}{shown}'

    def _address(self, text: str) -> str:
        host = re.escape(self.host)
        text = re.sub(rf"(?<![\w.]){host}:{self.port}(?!\d)", "<address>", text)
        return re.sub(rf"(?<![\w.-]){host}(?![\w-]|\.\w)", "<address>", text)

    def text(self, text: str) -> str:
        """A body or a value: escaped, then every rule but the header ones applied."""
        text = escape(text)
        if not self.enabled:
            return text
        text = self._known(text)
        text = _JSON_PAIR.sub(self._json_pair, text)
        text = _PEM.sub("<pem>", text)
        text = self._address(text)
        text = _MAC.sub("<mac>", text)
        text = _KEY_VALUE.sub(self._key_value, text)
        return _WORDS_LINE.sub(self._words_line, text)

    @staticmethod
    def _words_line(match: re.Match[str]) -> str:
        placeholder = secret_placeholder(match["name"])
        if placeholder is None:
            return match[0]
        return f"{match['name']}{match['sep']}{placeholder}{match['end']}"

    @staticmethod
    def _key_value(match: re.Match[str]) -> str:
        placeholder = secret_placeholder(match["name"].strip("'[]"))
        value = match["quoted"] if match["q"] else match["bare"]
        if placeholder is None or not value or value.startswith("<"):
            return match[0]
        if match["q"]:
            return f"{match['name']}{match['sep']}{match['q']}{placeholder}{match['q']}"
        return f"{match['name']}{match['sep']}{placeholder}"

    def header(self, name: str, value: str) -> str:
        lowered = name.lower()
        if lowered == "date":
            return "<date>"
        if lowered == "content-length":
            return "<length>"
        value = escape(value)
        if not self.enabled:
            return value
        if is_request_id(name):
            return "<request-id>"
        value = self._known(value)
        value = _MAC.sub("<mac>", self._address(value))
        value = _DIGEST_PARAM.sub(lambda m: f"{m[1]}={m[2]}<token>{m[2]}", value)
        if lowered in _COOKIE_HEADERS:
            return re.sub(r"^([^=;\s]+)=([^;]*)",
                          lambda m: f"{m[1]}=<token>" if m[2] else m[0], value)
        if lowered in KNOWN_HEADERS:
            return value
        placeholder = secret_placeholder(name)
        if placeholder is not None:
            return placeholder
        return _LONG_RUN.sub("<secret>", value)
