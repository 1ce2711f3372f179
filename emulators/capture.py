"""``emulators capture`` (record a device's replies to its kind's probe script as a quirk
profile) and ``emulators drift`` (replay a profile's requests and say where a device or an
emulator now answers otherwise)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .core.quirks import format as fmt
from .core.quirks import probe, rawhttp
from .core.quirks.redact import Redactor, escape

DEFAULT_TIMEOUT = 10.0
_PLACEHOLDER = re.compile(r"<<|<[a-z-]+>")


class CannotRun(Exception):
    """One line for stderr: why the command cannot do its work (exit 2)."""


def add_parsers(sub: Any) -> None:
    capture = sub.add_parser("capture", help="record a device's answers to its kind's probe "
                                             "script as a quirk profile")
    capture.add_argument("--kind", required=True, help="the kind whose probe script to run")
    capture.add_argument("--target", required=True,
                         help="the device or service, http[s]://host[:port][/base]")
    capture.add_argument("--user", default=None, help="default: the vendor's factory user")
    capture.add_argument("--password", default=None)
    capture.add_argument("--out", type=Path, required=True, help="the profile file to write")
    capture.add_argument("--write", action="store_true",
                         help="also run the steps that change settings (then restore them)")
    capture.add_argument("--keep-secrets", action="store_true",
                         help="do not redact (the file then holds passwords, serials, ...)")
    capture.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                         help="seconds to connect and to wait for each reply (default 10)")
    drift = sub.add_parser("drift", help="replay a quirk profile's requests against a device "
                                         "or an emulator and print every difference")
    drift.add_argument("--profile", type=Path, required=True)
    drift.add_argument("--target", required=True)
    drift.add_argument("--user", default=None)
    drift.add_argument("--password", default=None)
    drift.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    for command in (capture, drift):
        command.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                             help="a value the kind's probe script asks for (repeatable; "
                                  "a cloud's project or organisation id)")
        command.add_argument("--cafile", default=None,
                             help="for an https:// target: the PEM file of the CA to trust "
                                  "(default: the system's trust store)")


def run(args: argparse.Namespace) -> int:
    prog = f"emulators {args.command}"
    try:
        if args.command == "capture":
            return asyncio.run(capture(args))
        return asyncio.run(drift(args))
    except CannotRun as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def tool_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("emulators")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def load_script(kind: str) -> probe.Script:
    from .kinds import UnknownKind, resolve

    try:
        cls = resolve(kind)
    except UnknownKind as exc:
        raise CannotRun(str(exc)) from None
    where = cls.probe_script
    if where is None:
        raise CannotRun(f"kind {kind!r} has no probe script")
    module, _, attr = where.partition(":")
    script = getattr(importlib.import_module(module), attr)
    if not isinstance(script, probe.Script):
        raise CannotRun(f"{where} is not a probe script")
    return script


def _target(url: str, cafile: str | None) -> rawhttp.Target:
    try:
        return rawhttp.Target.parse(url, cafile)
    except ValueError as exc:
        raise CannotRun(str(exc)) from None


def given_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CannotRun(f"--param {pair!r}: NAME=VALUE")
        params[name.strip()] = value
    return params


def _params(script: probe.Script, given: dict[str, str]) -> dict[str, str]:
    try:
        return script.resolve_params(given)
    except ValueError as exc:
        raise CannotRun(str(exc)) from None


# -- recording ---------------------------------------------------------------------------------
def record_reply(raw: rawhttp.RawReply, redactor: Redactor) -> fmt.RecordedReply:
    try:
        body = redactor.text(raw.body.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        body = raw.body  # bytes that are not text are kept as they came (body_base64)
    return fmt.RecordedReply(raw.version, raw.status, escape(raw.reason),
                             tuple((n, redactor.header(n, v)) for n, v in raw.headers), body,
                             raw.line_ending)


_KEPT = re.compile("|".join(re.escape(p) for p in fmt.REQUEST_PLACEHOLDERS)
                   + r"|\{sign\.([\w-]+)\}")


def request_value(value: str, redactor: Redactor, credentials: probe.Credentials,
                  signed: dict[str, str]) -> str:
    """A request value (references filled) as the profile records it: the request
    placeholders kept, a ``{sign.NAME}`` as ``<NAME>`` (computed anew for every request),
    the rest redacted. With --keep-secrets, everything as it was sent."""
    if not redactor.enabled:
        return escape(probe.fill_signed(credentials.fill(value), signed))
    pieces: list[str] = []
    at = 0
    for match in _KEPT.finditer(value):
        pieces += [redactor.text(value[at:match.start()]) if match.start() > at else "",
                   f"<{match[1]}>" if match[1] else match[0]]
        at = match.end()
    return "".join(pieces) + (redactor.text(value[at:]) if at < len(value) else "")


def _is_json(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict | list)
    except (ValueError, RecursionError):
        return False


def record(sent: probe.Sent, redactor: Redactor, credentials: probe.Credentials) -> fmt.Exchange:
    step = sent.step

    def value(text: str) -> str:
        return request_value(text, redactor, credentials, sent.signed)

    request = fmt.RecordedRequest(
        sent.method, value(sent.path), tuple((k, value(v)) for k, v in sent.query),
        tuple((k, value(v)) for k, v in sent.headers),
        None if sent.body is None else value(sent.body), sent.credentials)
    replies: list[fmt.RecordedReply] = []
    for raw in sent.replies:
        reply = record_reply(raw, redactor)
        if not replies or replies[-1] != reply:
            replies.append(reply)
    merge: fmt.Merge | None = None
    if step.read and all(probe.is_key_values(r.body) for r in sent.replies):
        merge = "key-values"
    elif all(_is_json(r.body) for r in sent.replies) and any(
            _PLACEHOLDER.search(r.body.replace(b"<<", b"").decode("utf-8", "replace"))
            for r in replies):
        merge = "json"  # its redacted values take the member's own on replay
    return fmt.Exchange(step.name, request, tuple(replies), merge)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _credentials(script: probe.Script | None, user: str | None,
                 password: str | None) -> probe.Credentials:
    if script is not None:
        user = script.default_user if user is None else user
        password = script.default_password if password is None else password
    return probe.Credentials(user or "", password or "")


def _redactor(script: probe.Script | None, credentials: probe.Credentials,
              target: rawhttp.Target, enabled: bool) -> Redactor:
    user = credentials.user if script is not None and script.user_is_secret else None
    return Redactor(credentials.password, target.host, target.port, enabled=enabled,
                    user=user or None)


async def capture(args: argparse.Namespace) -> int:
    script = load_script(args.kind)
    params = _params(script, given_params(args.param))
    target = _target(args.target, args.cafile)
    credentials = _credentials(script, args.user, args.password)
    redactor = _redactor(script, credentials, target, not args.keep_secrets)
    runner = probe.Runner(target, credentials, args.timeout, params, script.signer)
    steps, skipped = probe.plan(script, args.write)
    if args.write:
        print("warning: --write: settings are changed, then restored:",
              ", ".join(s.name for s in steps if s.writes or s.restore_of) or "(none)")
    model = firmware = None
    exchanges: list[fmt.Exchange] = []
    requests = 0
    for step in steps:
        try:
            sent = await runner.run(step)
        except probe.MissingValue as exc:
            print(f"skipped {step.name}: {exc}")
            continue
        except rawhttp.RawHttpError as exc:
            if exc.unreachable:
                raise CannotRun(f"cannot reach {args.target}: {exc}") from None
            if step.identity:
                raise CannotRun(f"{args.target} gave no readable reply to {step.name}: "
                                f"{exc}") from None
            print(f"no reply recorded for {step.name}: {exc}")
            continue
        requests += len(sent.replies)
        first = sent.replies[0]
        if step.identity and not step.expect_refusal:
            if script.refused(first):
                raise CannotRun(f"{args.target} refused the credentials of "
                                f"{credentials.user!r} ({first.status} {first.reason})")
            found = script.identity(first)
            model, firmware = model or found[0], firmware or found[1]
        exchanges.append(record(sent, redactor, credentials))
    provenance = fmt.Provenance(
        captured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool=f"emulators {tool_version()}", probe_script=script.name,
        model=model, firmware=firmware,
        target="<address>" if redactor.enabled else target.netloc,
        redacted=redactor.enabled, checksum=fmt.checksum(exchanges), params=params or None)
    profile = fmt.Profile(script.kind, tuple(exchanges), provenance)
    try:
        write_atomically(args.out, fmt.dump(profile))
    except OSError as exc:
        raise CannotRun(f"cannot write {args.out}: {exc.strerror or exc}") from None
    if skipped:
        print("skipped (they change settings; --write runs them):",
              ", ".join(s.name for s in skipped))
    print(f"captured {len(exchanges)} exchanges ({requests} requests) from {target.netloc}: "
          f"model {model or '?'}, firmware {firmware or '?'} -> {args.out}")
    return 0


# -- drift -------------------------------------------------------------------------------------
def matches(template: str, value: str) -> bool:
    """``value`` is ``template`` with each placeholder standing for anything (both escaped)."""
    if template == value:
        return True
    pattern = "".join(
        re.escape(piece) if piece == "<<" or not piece.startswith("<") else ".*?"
        for piece in _split(template))
    return re.fullmatch(pattern, value, re.DOTALL) is not None


def _split(template: str) -> list[str]:
    pieces: list[str] = []
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        pieces += [template[at:match.start()], match[0]]
        at = match.end()
    return [*pieces, template[at:]]


def _key_value_shape(text: str) -> str:
    return "\n".join(probe.KEY_VALUE_LINE.sub(lambda m: m[0].replace(m[3], "…", 1) if m[3]
                                              else m[0], line)
                     for line in text.split("\n"))


def _volatile_shape(text: str, names: tuple[str, ...]) -> str:
    """JSON members ``names`` with their values left out (a countdown such as a token's
    ``expire``: another value at every request)."""
    for name in names:
        text = re.sub(rf'("{re.escape(name)}"\s*:\s*)(?:"(?:[^"\\]|\\.)*"|[-\w.+]+)',
                      r"\1…", text)
    return text


def differences(exchange: fmt.Exchange, expected: fmt.RecordedReply,
                got: fmt.RecordedReply,
                volatile: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """(what, the profile's, the target's) for each way ``got`` is not ``expected``; the
    values of the JSON members ``volatile`` are not compared."""
    found: list[tuple[str, str, str]] = []
    want = f"{expected.version} {expected.status} {expected.reason}"
    have = f"{got.version} {got.status} {got.reason}"
    if not matches(want, have):
        found.append(("status line", want, have))
    want_names = [n for n, _ in expected.headers]
    have_names = [n for n, _ in got.headers]
    if want_names != have_names:
        found.append(("header names", ", ".join(want_names), ", ".join(have_names)))
    have_values = dict(got.headers)
    for name, value in expected.headers:
        if name.lower() in ("date", "content-length") or name not in have_values:
            continue
        if not matches(value, have_values[name]):
            found.append((f"header {name}", value, have_values[name]))
    try:
        want_body, have_body = expected.body.decode("utf-8"), got.body.decode("utf-8")
    except UnicodeDecodeError:
        if expected.body != got.body:
            found.append(("body", f"{len(expected.body)} bytes", f"{len(got.body)} bytes"))
        return found
    if exchange.merge == "key-values":
        want_body, have_body = _key_value_shape(want_body), _key_value_shape(have_body)
    if volatile:
        want_body = _volatile_shape(want_body, volatile)
        have_body = _volatile_shape(have_body, volatile)
    if not matches(want_body, have_body):
        found.append(("body", want_body, have_body))
    return found


def _show(text: str) -> str:
    text = text if len(text) <= 2000 else text[:2000] + "..."
    return "\n".join("    " + repr(line)[1:-1] for line in text.split("\n"))


def _as_recorded(exchange: fmt.Exchange) -> probe.Sent:
    """A hand-written exchange (its step not in the kind's script) sent as recorded: the
    request placeholders filled, any other placeholder sent as written."""
    request = exchange.request
    step = probe.Step(exchange.step, request.path, method=request.method)
    credentials: probe.Credential | None = (
        request.credentials if request.credentials in ("right", "wrong", "none")
        else None)  # type: ignore[assignment]
    return probe.Sent(step, _literal(request.path),
                      tuple((k, _literal(v)) for k, v in request.query),
                      tuple((k, _literal(v)) for k, v in request.headers),
                      None if request.body is None else _literal(request.body),
                      credentials, request.method)


def _literal(text: str) -> str:
    return text.replace("<<", "<")


async def drift(args: argparse.Namespace) -> int:
    try:
        profile = fmt.load(args.profile)
    except fmt.ProfileError as exc:
        raise CannotRun(f"cannot read the profile: {exc}") from None
    script: probe.Script | None = None
    with contextlib.suppress(CannotRun, ImportError):
        script = load_script(profile.kind)
    steps = {s.name: s for s in script.steps} if script is not None else {}
    # The params of the capture, unless given again.
    params = {**(profile.provenance.params or {}), **given_params(args.param)}
    if script is not None:
        params = _params(script, params)
    credentials = _credentials(script, args.user, args.password)
    target = _target(args.target, args.cafile)
    redactor = _redactor(script, credentials, target, profile.provenance.redacted)
    runner = probe.Runner(target, credentials, args.timeout, params,
                          script.signer if script is not None else None)
    blocks: list[str] = []
    for exchange in profile.exchanges:
        step = steps.get(exchange.step)
        try:
            sent = runner.prepare(step) if step is not None else _as_recorded(exchange)
        except probe.MissingValue as exc:
            blocks.append(f"step {exchange.step}: not sent: {exc}")
            continue
        for index, expected in enumerate(exchange.replies):
            try:
                raw = await runner.send(sent)
            except rawhttp.RawHttpError as exc:
                if exc.unreachable:
                    raise CannotRun(f"cannot reach {args.target}: {exc}") from None
                blocks.append(f"step {exchange.step}: reply\n  profile:\n"
                              f"{_show(expected.version + ' ' + str(expected.status))}\n"
                              f"  target:\n    no reply: {exc}")
                continue
            if index == 0:
                runner.remember(exchange.step, raw)
                if (script is not None and step is not None and step.identity
                        and not step.expect_refusal and script.refused(raw)):
                    raise CannotRun(f"{args.target} refused the credentials of "
                                    f"{credentials.user!r} ({raw.status} {raw.reason})")
            got = record_reply(raw, redactor)
            volatile = step.volatile if step is not None else ()
            # Ordered states: a reply like any recorded state is no drift (a device's clock
            # or counter moves on between two captures).
            if any(not differences(exchange, state, got, volatile)
                   for state in exchange.replies):
                continue
            for what, want, have in differences(exchange, expected, got, volatile):
                state = f" (reply {index + 1})" if len(exchange.replies) > 1 else ""
                blocks.append(f"step {exchange.step}{state}: {what}\n  profile:\n{_show(want)}"
                              f"\n  target:\n{_show(have)}")
    for block in blocks:
        print(block)
    if blocks:
        print(f"{len(blocks)} difference(s) between {args.profile} and {target.netloc}")
        return 1
    print(f"no drift: {len(profile.exchanges)} exchanges of {args.profile} answered alike by "
          f"{target.netloc}")
    return 0
