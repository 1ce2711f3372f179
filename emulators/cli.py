"""The ``emulators`` command: run a farm, validate a scenario, list kinds."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import keysmith

if TYPE_CHECKING:
    from . import scenario as scenario_mod

log = logging.getLogger("emulators")

# RSA-2048 keys a first start of the default farm uses (the EnOS roots, bound device
# certificates and the key enos-poseidon's tokens are encrypted to, then pki's pool):
# `emulators run` has a forked child make them while it imports (see keysmith). Spare keys
# stay in the pool; a scenario that needs more makes them.
FORKED_KEYS = 5

# Where `emulators run` writes its ready file when --ready-file is not given: a CI job or a
# container can run README's command as it is and still wait for the file.
READY_FILE_ENV = "EMULATORS_READY_FILE"


def _parser() -> argparse.ArgumentParser:
    from . import ctl
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
    run.add_argument("--shards", type=int, default=1,
                     help="run the farm as N worker processes behind one control plane "
                          "(default 1: one process); fleets are dealt out across them")
    run.add_argument("--log-level", default="WARNING")

    validate = sub.add_parser("validate", help="check scenario files and report every problem")
    validate.add_argument("scenarios", nargs="+")

    sub.add_parser("kinds", help="list the kinds a scenario may use")
    ctl.add_parser(sub)
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
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioInvalid as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    if args.listen_host:
        scenario = scenario_mod.rebind(scenario, args.listen_host)
    if args.shards < 1:
        print("emulators: --shards must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.shards > 1:
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
    from .control import ControlPlane
    from .core.state import StateError
    from .farm import Farm

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    farm = Farm(scenario, state_dir)
    try:
        await farm.start()
    except (OSError, StateError) as exc:
        print(f"emulators: cannot start the farm: {exc}", file=sys.stderr)
        return 1
    try:
        await ControlPlane.serve(farm, control_port)
    except OSError as exc:
        await farm.stop()
        print(f"emulators: cannot start the control plane: {exc}", file=sys.stderr)
        return 1
    document = farm.ready_document()
    if ready_file is not None:
        farm.write_ready_file(ready_file)
    print(json.dumps(document, indent=1), flush=True)
    from . import keypool

    await keypool.take_forked_keys()  # spare keys into the pool; the child is reaped
    try:
        await stop.wait()
    finally:
        await farm.stop()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)  # noqa: ASYNC240 - the loop is shutting down
    print("emulators: stopped", file=sys.stderr)
    return farm.exit_status  # 1 when a member died and could not be restarted


async def _run_shards(scenario: scenario_mod.Scenario, args: argparse.Namespace) -> int:
    from .shards.coordinator import Coordinator, ShardFailed
    from .shards.front import FrontPlane

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    source = args.scenario
    if Path(source).exists():
        source = str(Path(source).resolve())
    coordinator = Coordinator(scenario, source, args.shards, args.state_dir,
                              listen_host=args.listen_host, log_level=args.log_level)
    try:
        await coordinator.start()
    except (ShardFailed, OSError) as exc:
        print(f"emulators: cannot start the farm: {exc}", file=sys.stderr)
        return 1
    control = scenario.control
    port = control.port if args.control_port is None else args.control_port
    plane = FrontPlane(coordinator, args.listen_host or control.host, port, control.token)
    try:
        await plane.start()
    except OSError as exc:
        await coordinator.stop()
        print(f"emulators: cannot start the control plane: {exc}", file=sys.stderr)
        return 1
    coordinator.control = plane
    if args.ready_file is not None:
        coordinator.write_ready_file(args.ready_file)
    print(json.dumps(coordinator.ready_document(), indent=1), flush=True)
    try:
        await stop.wait()
    finally:
        await coordinator.stop()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)  # noqa: ASYNC240 - the loop is shutting down
    print("emulators: stopped", file=sys.stderr)
    return coordinator.exit_status


if __name__ == "__main__":
    sys.exit(main())
