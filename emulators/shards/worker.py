"""One shard: today's farm over the shard's slice of the scenario, with a private control plane
(loopback, a token only the coordinator knows) that also answers the coordinator's own routes
under ``/v1/shard/``: the journal since a number, with the outbound connections members
registered (the coordinator correlates across shards with them), and the clock's state.

Started by the coordinator as ``python -m emulators.shards.worker`` with a JSON document of
arguments and the token in its environment (``EMULATORS_SHARD_TOKEN``); it writes its ready
document where that says and stops on SIGTERM or SIGINT, or when its coordinator is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from ..core.control_routes import FARM, BadRequest, read_json
from ..core.member import Member, MemberSpec
from ..core.process import bring_up
from ..kinds import resolve
from ..scenario import Scenario
from .partition import Rule, slices

log = logging.getLogger("emulators.shards")

routes = web.RouteTableDef()
PULL_LIMIT = 5000  # entries a pull returns at most (the coordinator asks again for more)


@routes.get("/v1/shard/journal", allow_head=False)
async def shard_journal(request: web.Request) -> web.Response:
    farm = request.app[FARM]
    try:
        after = int(request.query.get("after", "0"))
        outbound_after = int(request.query.get("outbound_after", "0"))
    except ValueError:
        raise BadRequest("after and outbound_after are numbers") from None
    entries = farm.journal.after(after, PULL_LIMIT)
    outbound = [list(o) for o in farm.journal.outbound_log if o[0] > outbound_after]
    return web.json_response({"entries": [e.to_dict() for e in entries],
                              "more": len(entries) == PULL_LIMIT, "outbound": outbound})


@routes.get("/v1/shard/ca", allow_head=False)
async def shard_ca(request: web.Request) -> web.Response:
    """The farm CA (certificate and key), for shards started on their own (Kubernetes): the
    others take shard 0's, so a camera on one checks the certificate of a server on another."""
    from ..core.farm_ca import STATE_NAME

    farm = request.app[FARM]
    farm.ctx.ca  # noqa: B018 - made now if no member needed it yet
    return web.json_response(farm.store.load(STATE_NAME))


@routes.put("/v1/shard/clock")
async def shard_clock(request: web.Request) -> web.Response:
    farm = request.app[FARM]
    body = await read_json(request)
    try:
        farm.clock.restore(body)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"clock state: {exc}") from None
    return web.json_response(farm.clock.describe())


def shard_scenario(scenario: Scenario, index: int, count: int, token: str,
                   ports: dict[str, dict[str, Any]] | None = None, *,
                   control_host: str = "127.0.0.1", control_port: int = 0,
                   rule: Rule | None = None) -> Scenario:
    """The scenario of shard ``index``: its members (on the ports they had, when a restart
    gives them), its control plane private on loopback behind ``token``."""
    mine = set(slices(scenario, count, rule)[index])
    members = []
    for spec in scenario.members:
        if spec.name not in mine:
            continue
        kept = (ports or {}).get(spec.name)
        if kept:
            spec = dataclasses.replace(
                spec, port=kept["port"],
                options=spec.options.model_copy(update=kept.get("options", {})))
        members.append(spec)
    control = scenario.control.model_copy(update={"host": control_host, "port": control_port,
                                                  "token": token})
    return dataclasses.replace(scenario, members=tuple(members), control=control)


class Elsewhere:
    """Members of other shards, as a member here looks them up: an unstarted copy of each,
    built from the scenario with the address its shard reported."""

    def __init__(self, scenario: Scenario, peers: dict[str, dict[str, Any]]) -> None:
        self.specs = {spec.name: spec for spec in scenario.members}
        self.peers = peers
        self.ctx: Any = None  # the shard's farm context, set once the farm exists
        self._made: dict[str, Member] = {}

    def __call__(self, name: str) -> Member:
        if name not in self._made:
            spec, peer = self.specs.get(name), self.peers.get(name)
            if spec is None or peer is None:
                raise LookupError(f"no member named {name!r}")
            copy = MemberSpec(spec.name, spec.kind, spec.role, peer.get("host", spec.host),
                              peer["port"], spec.options, spec.group, spec.index,
                              spec.raw_options)
            self._made[name] = resolve(spec.kind)(copy, self.ctx)
        return self._made[name]


def peers_at(scenario: Scenario, index: int, count: int, host: str,
             rule: Rule | None = None) -> dict[str, Any]:
    """Members of other shards at ``host`` on their scenario ports (a shard started on its own,
    as a Kubernetes pod is: shard 0's servers behind one name)."""
    mine = set(slices(scenario, count, rule)[index])
    return {m.name: {"host": host, "port": m.port} for m in scenario.members
            if m.name not in mine}


async def fetch_ca(url: str, token: str, directory: Path, patience: float = 300) -> None:
    """Shard 0's farm CA into this shard's state directory (kept there: a restart has it)."""
    import aiohttp

    from ..core.farm_ca import STATE_NAME
    from ..core.state import StateStore

    store = StateStore(directory)
    try:
        if store.load(STATE_NAME) is not None:
            return
        deadline = asyncio.get_running_loop().time() + patience
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            while True:
                try:
                    async with http.get(url.rstrip("/") + "/v1/shard/ca") as reply:
                        if reply.status == 200:
                            store.save_now(STATE_NAME, await reply.json())
                            return
                except (aiohttp.ClientError, OSError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise OSError(f"no farm CA from {url} after {patience:g} s")
                await asyncio.sleep(1.0)
    finally:
        store.close()


async def run(args: dict[str, Any]) -> int:
    from ..control.server import ControlPlane
    from ..core.state import StateError
    from ..farm import Farm
    from ..scenario import load

    index, count = args["index"], args["count"]
    rule = Rule.from_plan(args["plan"])
    # Only what this shard runs or looks up is stamped (the coordinator checked the whole).
    scenario = load(args["scenario"], keep=rule.keep(index))
    if args.get("free_ports"):
        from ..scenario import with_free_ports

        scenario = with_free_ports(scenario)
    if args.get("listen_host"):
        from ..scenario import rebind

        scenario = rebind(scenario, args["listen_host"])
    sub = shard_scenario(scenario, index, count, args["token"], args.get("ports"),
                         control_host=args.get("control_host", "127.0.0.1"),
                         control_port=args.get("control_port", 0), rule=rule)
    peers = args.get("peers")
    if peers is None and args.get("peer_host"):
        peers = peers_at(scenario, index, count, args["peer_host"], rule)
    if args.get("ca_from") and index != 0:
        try:
            await fetch_ca(args["ca_from"], args["token"], Path(args["state_dir"]))
        except OSError as exc:
            print(f"emulators shard {index}: {exc}", file=sys.stderr)
            return 1
    elsewhere = Elsewhere(scenario, peers or {})
    farm = Farm(sub, args["state_dir"], elsewhere=elsewhere)
    elsewhere.ctx = farm.ctx

    async def start_control() -> None:
        plane = ControlPlane(farm, sub.control.host, sub.control.port, token=args["token"])
        plane.app_parts = {"tables": (routes,)}
        await plane.start()
        farm.control = plane
        # Which run of this shard it is: the coordinator starts reading a new run's journal
        # from its beginning (a pod's process id is 1 every time, so that cannot say it).
        incarnation = uuid.uuid4().hex
        # The listener options each member bound (free ports made numbers): a restart of this
        # shard starts them there again (the coordinator gives them back as ``ports``).
        bound = {m.name: ports for m in farm.members.values() if (ports := m.bound_ports())}
        farm.shard = {"index": index, "count": count, "incarnation": incarnation,
                      "bound_ports": bound}

    def announce() -> None:
        assert farm.control is not None
        print(f"emulators shard {index}/{count}: ready, control plane on {farm.control.url}",
              file=sys.stderr, flush=True)

    parent = os.getppid()

    async def orphaned(stop: asyncio.Event) -> None:  # the coordinator died without stopping us
        while os.getppid() == parent:  # noqa: ASYNC110 - no event says a parent died
            await asyncio.sleep(1.0)
        log.error("shard %d: the coordinator is gone; stopping", index)
        stop.set()

    ready_file = args.get("ready_file")
    return await bring_up(
        farm, start_control, start_errors=(OSError, StateError),
        start_failed=lambda exc: f"emulators shard {index}: cannot start: {exc}",
        control_failed=lambda exc: (f"emulators shard {index}: cannot start its control "
                                    f"plane: {exc}"),
        announce=announce, ready_file=Path(ready_file) if ready_file else None,
        remove_ready_file=False, watch=orphaned if args.get("spawned", True) else None)


def main() -> int:
    from .coordinator import TOKEN_ENV

    args = json.loads(sys.argv[1])
    # Given in the environment (a command line is every local user's to read); taken out of
    # it, so nothing this process starts inherits it.
    args["token"] = os.environ.pop(TOKEN_ENV, None)
    if not args["token"]:
        print(f"emulators shard: ${TOKEN_ENV} must hold the shards' token", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.get("log_level", "WARNING").upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s shard-{args['index']} %(name)s: "
                               "%(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
