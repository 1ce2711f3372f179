"""``emulators ctl``: the common control-plane actions against a running farm."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    ctl = sub.add_parser("ctl", help="talk to a running farm's control plane")
    where = ctl.add_mutually_exclusive_group()
    where.add_argument("--url", help="the control plane URL (default: from --ready-file, "
                                     "$EMULATORS_CONTROL_URL, or http://127.0.0.1:8700)")
    where.add_argument("--ready-file", type=Path, help="read the URL from a farm's ready file")
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


def _base(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    if args.ready_file:
        return str(json.loads(args.ready_file.read_text())["control"]["url"])
    return os.environ.get("EMULATORS_CONTROL_URL", "http://127.0.0.1:8700").rstrip("/")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(_base(args) + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if args.token:
        req.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace")
        raise SystemExit(f"emulators ctl: {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"emulators ctl: cannot reach {_base(args)}: {exc.reason}") from None


def run(args: argparse.Namespace) -> int:
    action = args.action
    if action == "members":
        out = {"emulators": _call(args, "GET", "/v1/emulators")["emulators"],
               "servers": _call(args, "GET", "/v1/servers")["servers"]}
    elif action == "state":
        out = _call(args, "GET", f"/v1/emulators/{args.name}/state") if _is(args, "emulators") \
            else _call(args, "GET", f"/v1/servers/{args.name}/state")
    elif action == "reset":
        if args.name is None:
            out = _call(args, "POST", "/v1/reset")
        else:
            plural = "emulators" if _is(args, "emulators") else "servers"
            out = _call(args, "POST", f"/v1/{plural}/{args.name}/reset")
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
                raise SystemExit("emulators ctl fault add '<JSON rule>'")
            out = _call(args, "POST", "/v1/faults", json.loads(args.arg))
        elif args.op == "list":
            out = _call(args, "GET", "/v1/faults")
        elif args.op == "rm":
            out = _call(args, "DELETE", f"/v1/faults/{args.arg}")
        else:
            out = _call(args, "DELETE", "/v1/faults")
    elif action == "clock":
        if args.op == "show":
            out = _call(args, "GET", "/v1/clock")
        elif args.op == "advance":
            out = _call(args, "POST", "/v1/clock/advance", {"seconds": float(args.arg or 0)})
        elif args.op == "set":
            out = _call(args, "POST", "/v1/clock/set", {"at": args.arg})
        elif args.op == "freeze":
            out = _call(args, "POST", "/v1/clock/freeze", {"at": args.arg} if args.arg else {})
        else:
            out = _call(args, "POST", f"/v1/clock/{args.op}", {})
    else:  # snapshot
        if args.op == "list":
            out = _call(args, "GET", "/v1/snapshots")
        elif args.name is None:
            raise SystemExit(f"emulators ctl snapshot {args.op} NAME")
        elif args.op == "save":
            out = _call(args, "POST", "/v1/snapshots", {"name": args.name})
        elif args.op == "restore":
            out = _call(args, "POST", f"/v1/snapshots/{args.name}/restore", {})
        else:
            out = _call(args, "DELETE", f"/v1/snapshots/{args.name}")
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


def _is(args: argparse.Namespace, plural: str) -> bool:
    names = {m["name"] for m in _call(args, "GET", f"/v1/{plural}")[plural]}
    return bool(args.name in names)


