"""The ``emulators`` command: run a farm, validate a scenario, list kinds."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import keysmith

if TYPE_CHECKING:
    from . import scenario as scenario_mod
from .core.process import bring_up

log = logging.getLogger("emulators")

# RSA-2048 keys a first start of the default farm uses (the EnOS roots, bound device
# certificates and the key enos-poseidon's tokens are encrypted to, then pki's pool):
# `emulators run` has a forked child make them while it imports (see keysmith). Spare keys
# stay in the pool; a scenario that needs more makes them.
FORKED_KEYS = 5

# Where `emulators run` writes its ready file when --ready-file is not given: a CI job or a
# container can run README's command as it is and still wait for the file.
READY_FILE_ENV = "EMULATORS_READY_FILE"
# The dashboard's page on the control plane (control/dashboard.py serves ui/index.html there).
DASHBOARD = "/ui"
# What a newcomer whose port is taken (another farm, a local broker on 1883) can do about it.
IN_USE_HINT = "stop what uses it or run with --free-ports"


CONTROL_TOKEN_HELP = ("the environment variable holding the control plane's bearer token "
                      "(instead of the scenario's control.token: a Kubernetes Secret, say)")


def _with_control_token(scenario: scenario_mod.Scenario, name: str | None,
                        prog: str) -> scenario_mod.Scenario | None:
    """``scenario`` whose control plane requires the token in ``$name`` (None: as it is);
    None with the reason on stderr when the variable is unset or shorter than a scenario's
    token may be."""
    import dataclasses

    if name is None:
        return scenario
    token = os.environ.get(name, "")
    if len(token) < 8:
        print(f"{prog}: ${name} must hold the control plane's token (8 characters or more)",
              file=sys.stderr)
        return None
    return dataclasses.replace(scenario,
                               control=scenario.control.model_copy(update={"token": token}))


ALLOW_HOST_HELP = ("a host name the control plane also answers (repeatable; added to the "
                   "scenario's control.allowed_hosts): without a token it answers only "
                   "loopback, IP addresses and these names")


def _allow_hosts(scenario: scenario_mod.Scenario, names: list[str]) -> scenario_mod.Scenario:
    """``scenario`` whose control plane also answers ``names`` (``--allow-host``)."""
    import dataclasses

    from pydantic import ValidationError

    from . import scenario as scenario_mod

    if not names:
        return scenario
    try:
        control = scenario_mod.ControlSpec.model_validate({
            **scenario.control.model_dump(),
            "allowed_hosts": (*scenario.control.allowed_hosts, *names)})
    except ValidationError as exc:
        raise scenario_mod.ScenarioInvalid([scenario_mod.Problem(
            ("allowed_hosts",), exc.errors()[0]["msg"])], "--allow-host") from None
    return dataclasses.replace(scenario, control=control)


def _parser() -> argparse.ArgumentParser:
    from . import capture, ctl
    from . import scenario as scenario_mod

    parser = argparse.ArgumentParser(prog="emulators", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a farm until SIGINT or SIGTERM")
    run.add_argument("scenario", nargs="?", default=scenario_mod.DEFAULT_SCENARIO,
                     help="a scenario file, or the name of a built-in one (default: default)")
    run.add_argument("--state-dir", type=Path, default=None,
                     help="keep state here across restarts (default: in memory only)")
    run.add_argument("--ready-file", type=Path, default=os.environ.get(READY_FILE_ENV) or None,
                     help="write the ready document here once every member listens "
                          f"(default: ${READY_FILE_ENV}, if set)")
    run.add_argument("--control-port", type=int, default=None,
                     help="override the scenario's control-plane port (0: a free port)")
    run.add_argument("--listen-host", default=None,
                     help="listen on this address instead of the scenario's hosts (a container "
                          "uses 0.0.0.0); fleets spread over addresses keep theirs")
    run.add_argument("--free-ports", action="store_true",
                     help="every listener on a free port, the control plane's too unless "
                          "--control-port says (as tests want it)")
    run.add_argument("--shards", type=int, default=1,
                     help="run the farm as N worker processes behind one control plane "
                          "(default 1: one process); fleets are dealt out across them")
    run.add_argument("--control-token-env", default=None, metavar="NAME",
                     help=CONTROL_TOKEN_HELP)
    run.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                     help=ALLOW_HOST_HELP)
    run.add_argument("--log-level", default="WARNING")

    shard = sub.add_parser("shard", help="run one shard of a sharded farm on its own (a "
                                         "Kubernetes pod; `run --shards N` starts its own)")
    shard.add_argument("scenario")
    shard.add_argument("--count", type=int, required=True, help="how many shards the farm has")
    which = shard.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="this shard's index, from 0")
    which.add_argument("--index-from-hostname", action="store_true",
                       help="the number ending the host name (a StatefulSet pod's ordinal)")
    shard.add_argument("--state-dir", type=Path, required=True)
    shard.add_argument("--control-host", default="127.0.0.1")
    shard.add_argument("--control-port", type=int, default=9000)
    shard.add_argument("--peer-host", required=True,
                       help="where shard 0's servers are (their scenario ports on this host)")
    shard.add_argument("--ca-from", default=None,
                       help="shard 0's control plane, to take the farm CA from (shards > 0)")
    shard.add_argument("--token-env", default="EMULATORS_SHARD_TOKEN",
                       help="the environment variable holding the shards' control token")
    shard.add_argument("--listen-host", default=None)
    shard.add_argument("--ready-file", type=Path, default=None)
    shard.add_argument("--log-level", default="WARNING")

    front = sub.add_parser("front", help="serve a sharded farm's control plane in front of "
                                         "shards started on their own (`emulators shard`)")
    front.add_argument("scenario")
    front.add_argument("--count", type=int, required=True)
    front.add_argument("--shards-at", required=True,
                       help="the shards' control planes, {i} their index "
                            "(http://farm-shard-{i}.farm-shard:9000)")
    front.add_argument("--token-env", default="EMULATORS_SHARD_TOKEN")
    front.add_argument("--control-host", default=None)
    front.add_argument("--control-port", type=int, default=None)
    front.add_argument("--control-token-env", default=None, metavar="NAME",
                       help=CONTROL_TOKEN_HELP)
    front.add_argument("--ready-file", type=Path, default=None)
    front.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help=ALLOW_HOST_HELP)
    front.add_argument("--log-level", default="WARNING")

    validate = sub.add_parser("validate", help="check scenario files and report every problem")
    validate.add_argument("scenarios", nargs="+")

    sub.add_parser("kinds", help="list the kinds a scenario may use")
    ctl.add_parser(sub)
    capture.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["run"]:
        keysmith.start(FORKED_KEYS)  # before the imports below, while no thread exists
    from . import ctl
    from . import scenario as scenario_mod
    from .kinds import KINDS

    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.scenarios)
    if args.command == "ctl":
        return ctl.run(args)
    if args.command == "kinds":
        for kind in sorted(KINDS):
            print(kind)
        return 0
    if args.command in ("capture", "drift"):
        from . import capture

        return capture.run(args)
    if args.command in ("shard", "front"):
        logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return _shard_or_front(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = _allow_hosts(scenario_mod.load(args.scenario), args.allow_host)
    except scenario_mod.ScenarioInvalid as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    with_token = _with_control_token(scenario, args.control_token_env, "emulators run")
    if with_token is None:
        return 2
    scenario = with_token
    if args.free_ports:
        scenario = scenario_mod.with_free_ports(scenario)
    if args.listen_host:
        scenario = scenario_mod.rebind(scenario, args.listen_host)
    if args.shards < 1:
        print("emulators: --shards must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.shards > 1:
            # The coordinator makes no key (its shards make their own): the child forked for
            # them is ended and reaped now, or it stays a zombie as long as the farm runs.
            keysmith.abandon()
            # what the shards load: the file as an absolute path (they may start elsewhere)
            found = Path(args.scenario)
            args.scenario_source = str(found.resolve()) if found.exists() else args.scenario
            return asyncio.run(_run_shards(scenario, args))
        return asyncio.run(_run(scenario, args.state_dir, args.ready_file, args.control_port))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def _validate(paths: list[str]) -> int:
    from . import scenario as scenario_mod

    status = 0
    for path in paths:
        try:
            scenario = scenario_mod.load(path)
        except scenario_mod.ScenarioInvalid as exc:
            print(exc.report())
            status = 1
            continue
        print(f"{path}: ok ({len(scenario.members)} members)")
    return status


async def _run(scenario: scenario_mod.Scenario, state_dir: Path | None, ready_file: Path | None,
               control_port: int | None) -> int:
    from . import keypool
    from .control.server import ControlPlane
    from .core.state import StateError
    from .farm import Farm, PortInUse

    farm = Farm(scenario, state_dir)

    def start_failed(exc: Exception) -> str:
        if isinstance(exc, PortInUse):
            return f"emulators run: {exc}; {IN_USE_HINT}"
        return f"emulators: cannot start the farm: {exc}"

    def control_failed(exc: OSError) -> str:
        if exc.errno == errno.EADDRINUSE:
            control = scenario.control
            port = control.port if control_port is None else control_port
            return (f"emulators run: the control plane's port {port} is already in use "
                    f"({control.host}:{port}); stop what uses it, or run with --control-port 0 "
                    "or --free-ports")
        return f"emulators: cannot start the control plane: {exc}"

    return await bring_up(
        farm, lambda: ControlPlane.serve(farm, control_port),
        start_errors=(OSError, StateError), start_failed=start_failed,
        control_failed=control_failed, announce=lambda: _announce(farm, "emulators run"),
        ready_file=ready_file,
        settle=keypool.take_forked_keys,  # spare keys into the pool; the child is reaped
        stopped="emulators: stopped")  # exits 1 when a member died and could not restart


def _announce(served: Any, prog: str) -> None:
    """The ready document on stdout, and where the dashboard is on stderr."""
    document = served.ready_document()
    print(json.dumps(document, indent=1), flush=True)
    print(f"{prog}: ready; the dashboard is at {document['control']['url']}{DASHBOARD}",
          file=sys.stderr, flush=True)


def _shard_or_front(args: argparse.Namespace) -> int:
    """`emulators shard` / `emulators front`: the two halves of a sharded farm started on their
    own, as deploy/kubernetes/ runs them."""
    import re

    from . import scenario as scenario_mod

    token = os.environ.get(args.token_env)
    if not token:
        print(f"emulators {args.command}: ${args.token_env} must hold the shards' token",
              file=sys.stderr)
        return 2
    from .shards.partition import Rule

    if args.command == "shard" and args.count < 1:
        print("emulators shard: --count must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.command == "front":
            scenario = _allow_hosts(scenario_mod.load(args.scenario), args.allow_host)
        else:  # a pod stamps its own members only (the front checks the whole)
            rule, scenario = Rule.of_source(args.scenario, args.count)
    except scenario_mod.ScenarioInvalid as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    source = str(Path(args.scenario).resolve()) if Path(args.scenario).exists() else args.scenario
    if args.command == "front":
        with_token = _with_control_token(scenario, args.control_token_env, "emulators front")
        if with_token is None:
            return 2
        return asyncio.run(_front(with_token, source, args, token))
    from .shards import worker

    index = args.index
    if args.index_from_hostname:
        import socket

        found = re.search(r"(\d+)$", socket.gethostname())
        if not found:
            print(f"emulators shard: host name {socket.gethostname()!r} ends in no number",
                  file=sys.stderr)
            return 2
        index = int(found.group(1))
    if not 0 <= index < args.count:
        print(f"emulators shard: index {index} is not below --count {args.count}",
              file=sys.stderr)
        return 2
    return asyncio.run(worker.run({
        "scenario": source, "plan": rule.plan(), "index": index,
        "count": args.count, "token": token,
        "state_dir": str(args.state_dir), "ready_file": args.ready_file and str(args.ready_file),
        "control_host": args.control_host, "control_port": args.control_port,
        "peer_host": args.peer_host, "ca_from": args.ca_from, "listen_host": args.listen_host,
        "spawned": False}))


async def _front(scenario: scenario_mod.Scenario, source: str, args: argparse.Namespace,
                 token: str) -> int:
    from .shards.coordinator import Coordinator

    coordinator = Coordinator(scenario, source, args.count, None, attach=args.shards_at,
                              token=token, log_level=args.log_level)
    return await _serve_sharded(coordinator, args.control_host, args.control_port,
                                args.ready_file, "emulators front")


async def _run_shards(scenario: scenario_mod.Scenario, args: argparse.Namespace) -> int:
    from .shards.coordinator import Coordinator

    coordinator = Coordinator(scenario, args.scenario_source, args.shards, args.state_dir,
                              listen_host=args.listen_host, free_ports=args.free_ports,
                              log_level=args.log_level)
    return await _serve_sharded(coordinator, args.listen_host, args.control_port,
                                args.ready_file, "emulators")


async def _serve_sharded(coordinator: Any, host: str | None, port: int | None,
                         ready_file: Path | None, prog: str) -> int:
    """A sharded farm until SIGINT / SIGTERM: the shards (started or found), the front control
    plane on ``host``/``port`` (the scenario's where None), the ready file and document."""
    from .shards.coordinator import ShardFailed
    from .shards.front import FrontPlane

    async def start_control() -> None:
        control = coordinator.scenario.control
        plane = FrontPlane(coordinator, host or control.host,
                           control.port if port is None else port, control.token)
        await plane.start()
        coordinator.control = plane

    return await bring_up(
        coordinator, start_control, start_errors=(ShardFailed, OSError),
        start_failed=lambda exc: f"{prog}: cannot start the farm: {exc}",
        control_failed=lambda exc: f"{prog}: cannot start the control plane: {exc}",
        announce=lambda: _announce(coordinator, prog), ready_file=ready_file,
        stopped=f"{prog}: stopped")


if __name__ == "__main__":
    sys.exit(main())
