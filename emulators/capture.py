"""``emulators capture`` (record a device's replies to its kind's probe script as a quirk
profile) and ``emulators drift`` (replay a profile's requests and say where a device or an
emulator now answers otherwise)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
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
    capture.add_argument("--target", required=True, help="the device, http://host[:port]")
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


def _target(url: str) -> rawhttp.Target:
    try:
        return rawhttp.Target.parse(url)
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


def _request_value(template: str, filled: str, redactor: Redactor,
                   credentials: probe.Credentials) -> str:
    if not redactor.enabled:
        return credentials.fill(filled)
    if any(p in template for p in fmt.REQUEST_PLACEHOLDERS):
        return template
    return redactor.text(filled)


def record(sent: probe.Sent, redactor: Redactor, credentials: probe.Credentials) -> fmt.Exchange:
    step = sent.step
    request = fmt.RecordedRequest(
        step.method, step.path,
        tuple((k, _request_value(t, v, redactor, credentials))
              for (k, t), (_, v) in zip(step.query, sent.query, strict=True)),
        tuple((k, _request_value(t, v, redactor, credentials))
              for (k, t), (_, v) in zip(step.headers, sent.headers, strict=True)))
    replies: list[fmt.RecordedReply] = []
    for raw in sent.replies:
        reply = record_reply(raw, redactor)
        if not replies or replies[-1] != reply:
            replies.append(reply)
    merge: fmt.Merge | None = "key-values" if step.read and all(
        probe.is_key_values(r.body) for r in sent.replies) else None
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


async def capture(args: argparse.Namespace) -> int:
    script = load_script(args.kind)
    target = _target(args.target)
    credentials = probe.Credentials(
        script.default_user if args.user is None else args.user,
        script.default_password if args.password is None else args.password)
    redactor = Redactor(credentials.password, target.host, target.port,
                        enabled=not args.keep_secrets)
    runner = probe.Runner(target, credentials, args.timeout)
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
            found = script.identity(first.body)
            model, firmware = model or found[0], firmware or found[1]
        exchanges.append(record(sent, redactor, credentials))
    provenance = fmt.Provenance(
        captured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool=f"emulators {tool_version()}", probe_script=script.name,
        model=model, firmware=firmware,
        target="<address>" if redactor.enabled else target.netloc,
        redacted=redactor.enabled, checksum=fmt.checksum(exchanges))
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


def differences(exchange: fmt.Exchange, expected: fmt.RecordedReply,
                got: fmt.RecordedReply) -> list[tuple[str, str, str]]:
    """(what, the profile's, the target's) for each way ``got`` is not ``expected``."""
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
    if not matches(want_body, have_body):
        found.append(("body", want_body, have_body))
    return found


def _show(text: str) -> str:
    text = text if len(text) <= 2000 else text[:2000] + "..."
    return "\n".join("    " + repr(line)[1:-1] for line in text.split("\n"))


async def drift(args: argparse.Namespace) -> int:
    try:
        profile = fmt.load(args.profile)
    except fmt.ProfileError as exc:
        raise CannotRun(f"cannot read the profile: {exc}") from None
    user, password = args.user, args.password
    if user is None or password is None:
        with contextlib.suppress(CannotRun, ImportError):
            script = load_script(profile.kind)
            user = script.default_user if user is None else user
            password = script.default_password if password is None else password
    credentials = probe.Credentials(user or "", password or "")
    target = _target(args.target)
    redactor = Redactor(credentials.password, target.host, target.port,
                        enabled=profile.provenance.redacted)
    runner = probe.Runner(target, credentials, args.timeout)
    blocks: list[str] = []
    for exchange in profile.exchanges:
        request = exchange.request
        query = tuple((k, v.replace("<<", "<")) for k, v in request.query)
        headers = tuple((k, v.replace("<<", "<")) for k, v in request.headers)
        for index, expected in enumerate(exchange.replies):
            try:
                raw = await runner.send(request.method, request.path, query, headers)
            except rawhttp.RawHttpError as exc:
                if exc.unreachable:
                    raise CannotRun(f"cannot reach {args.target}: {exc}") from None
                blocks.append(f"step {exchange.step}: reply\n  profile:\n"
                              f"{_show(expected.version + ' ' + str(expected.status))}\n"
                              f"  target:\n    no reply: {exc}")
                continue
            got = record_reply(raw, redactor)
            # Ordered states: a reply like any recorded state is no drift (a device's clock
            # or counter moves on between two captures).
            if any(not differences(exchange, state, got) for state in exchange.replies):
                continue
            for what, want, have in differences(exchange, expected, got):
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
