"""``emulators ctl``: the common control-plane actions against a running farm."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    ctl = sub.add_parser("ctl", help="talk to a running farm's control plane")
    ctl.add_argument("--url", help="the control plane URL, with or without its /v1 (default: "
                                   "from --ready-file, $EMULATORS_CONTROL_URL, or "
                                   "http://127.0.0.1:8700); wins over --ready-file's")
    ctl.add_argument("--ready-file", type=Path,
                     help="a farm's ready file: its control URL, and whether it needs a token")
    ctl.add_argument("--token", default=os.environ.get("EMULATORS_CONTROL_TOKEN"))
    cmds = ctl.add_subparsers(dest="action", required=True)
    cmds.add_parser("members", help="list emulators and servers")
    state = cmds.add_parser("state", help="a member's state")
    state.add_argument("name")
    reset = cmds.add_parser("reset", help="reset a member, or the whole farm")
    reset.add_argument("name", nargs="?")
    journal = cmds.add_parser("journal", help="query (or --clear) the request journal")
    journal.add_argument("--clear", action="store_true")
    for key in ("member", "kind", "protocol", "event", "method", "path", "status",
                "correlation_id", "limit"):
        journal.add_argument(f"--{key.replace('_', '-')}", dest=key)
    fault = cmds.add_parser("fault", help="add (JSON rule), list, rm ID or clear fault rules")
    fault.add_argument("op", choices=["add", "list", "rm", "clear"])
    fault.add_argument("arg", nargs="?")
    clock = cmds.add_parser("clock", help="show, freeze, unfreeze, advance SECONDS, set ISO, reset")
    clock.add_argument("op", choices=["show", "freeze", "unfreeze", "advance", "set", "reset"],
                       nargs="?", default="show")
    clock.add_argument("arg", nargs="?")
    snap = cmds.add_parser("snapshot", help="list, save NAME, restore NAME, rm NAME")
    snap.add_argument("op", choices=["list", "save", "restore", "rm"])
    snap.add_argument("name", nargs="?")


class CtlError(SystemExit):
    """A failure told in one line on stderr (exit status 1), never a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(f"emulators ctl: {message}")


def _ready(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.ready_file:
        return None
    try:
        control = json.loads(args.ready_file.read_text())["control"]
        if not isinstance(control, dict) or not isinstance(control.get("url"), str):
            raise TypeError
    except OSError as exc:
        raise CtlError(f"cannot read {args.ready_file}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise CtlError(f"{args.ready_file} is not a farm's ready file (no control.url)") from None
    return control


def _base(args: argparse.Namespace) -> str:
    """The control plane's root URL: --url (its ``/v1`` or not), else the ready file's, else
    $EMULATORS_CONTROL_URL, else the default port."""
    ready = _ready(args)
    if args.url:
        url = str(args.url)
    elif ready is not None:
        url = ready["url"]
    else:
        url = os.environ.get("EMULATORS_CONTROL_URL", "http://127.0.0.1:8700")
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _segment(value: str) -> str:
    """A name as one URL path segment (a '/' or '?' in it stays part of the name)."""
    return urllib.parse.quote(value, safe="")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    base = args.base
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    # A state change without a body (a reset) must still say it is no web page's doing.
    req.add_header("X-Requested-With", "emulators-ctl")
    if args.token:
        req.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        raise CtlError(f"{exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise CtlError(f"cannot reach {base}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # a reset connection, a reply that is not JSON
        raise CtlError(f"{method} {base}{path} failed: {exc}") from None


def _output(out: Any) -> int:
    """Print ``out``; a reader that stops early (``| head``) ends the command quietly, with
    the status of a program killed by SIGPIPE, as any other tool in the pipe would."""
    try:
        json.dump(out, sys.stdout, indent=1)
        print()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's advice: point stdout at /dev/null so the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    return 0


def run(args: argparse.Namespace) -> int:
    args.base = _base(args)
    ready = _ready(args)
    if ready is not None and ready.get("token_required") and not args.token:
        raise CtlError("this farm requires a token: give --token or $EMULATORS_CONTROL_TOKEN")
    return _output(_act(args))


def _act(args: argparse.Namespace) -> Any:
    action = args.action
    if action == "members":
        out = {"emulators": _call(args, "GET", "/v1/emulators")["emulators"],
               "servers": _call(args, "GET", "/v1/servers")["servers"]}
    elif action == "state":
        out = _call(args, "GET", f"/v1/{_plural_of(args)}/{_segment(args.name)}/state")
    elif action == "reset":
        if args.name is None:
            out = _call(args, "POST", "/v1/reset")
        else:
            out = _call(args, "POST", f"/v1/{_plural_of(args)}/{_segment(args.name)}/reset")
    elif action == "journal":
        if args.clear:
            out = _call(args, "DELETE", "/v1/journal")
        else:
            keys = ("member", "kind", "protocol", "event", "method", "path", "status",
                    "correlation_id", "limit")
            query = urllib.parse.urlencode({k: getattr(args, k) for k in keys
                                            if getattr(args, k) is not None})
            out = _call(args, "GET", "/v1/journal" + (f"?{query}" if query else ""))
    elif action == "fault":
        if args.op == "add":
            if not args.arg:
                raise CtlError("fault add '<JSON rule>'")
            try:
                rule = json.loads(args.arg)
            except ValueError as exc:
                raise CtlError(f"the fault rule is not JSON: {exc}") from None
            out = _call(args, "POST", "/v1/faults", rule)
        elif args.op == "list":
            out = _call(args, "GET", "/v1/faults")
        elif args.op == "rm":
            if not args.arg:
                raise CtlError("fault rm ID")
            out = _call(args, "DELETE", f"/v1/faults/{_segment(args.arg)}")
        else:
            out = _call(args, "DELETE", "/v1/faults")
    elif action == "clock":
        if args.op == "show":
            out = _call(args, "GET", "/v1/clock")
        elif args.op == "advance":
            try:
                seconds = float(args.arg or 0)
            except ValueError:
                raise CtlError(f"clock advance SECONDS: {args.arg!r} is not a number") from None
            out = _call(args, "POST", "/v1/clock/advance", {"seconds": seconds})
        elif args.op == "set":
            if not args.arg:
                raise CtlError("clock set ISO (e.g. 2030-01-01T00:00:00Z)")
            out = _call(args, "POST", "/v1/clock/set", {"at": args.arg})
        elif args.op == "freeze":
            out = _call(args, "POST", "/v1/clock/freeze", {"at": args.arg} if args.arg else {})
        else:
            out = _call(args, "POST", f"/v1/clock/{args.op}", {})
    else:  # snapshot
        if args.op == "list":
            out = _call(args, "GET", "/v1/snapshots")
        elif args.name is None:
            raise CtlError(f"snapshot {args.op} NAME")
        elif args.op == "save":
            out = _call(args, "POST", "/v1/snapshots", {"name": args.name})
        elif args.op == "restore":
            out = _call(args, "POST", f"/v1/snapshots/{_segment(args.name)}/restore", {})
        else:
            out = _call(args, "DELETE", f"/v1/snapshots/{_segment(args.name)}")
    return out


def _plural_of(args: argparse.Namespace) -> str:
    """Whether NAME is an emulator or a server; a name that is neither says so, and lists
    what there is."""
    found = {plural: sorted(m["name"] for m in _call(args, "GET", f"/v1/{plural}")[plural])
             for plural in ("emulators", "servers")}
    for plural, names in found.items():
        if args.name in names:
            return plural
    raise CtlError(f"no member named {args.name!r} (emulators: "
                   f"{', '.join(found['emulators']) or 'none'}; servers: "
                   f"{', '.join(found['servers']) or 'none'})")


