"""The coordinator of a sharded farm: starts the shards (``worker``, one process each), keeps
them running, and serves the farm's one control plane in front of them (``front``).

- **Start.** The farm CA is made once and given to every shard (a camera on one shard checks
  the FTPS certificate of a server on another). When every server has a port in the scenario
  all shards start at once; otherwise shard 0 (the servers and everything coupled,
  ``partition``) starts first and its servers' addresses go to the others.
  The ready file is written once every shard is ready.
- **State.** Each shard keeps its state in ``<state dir>/shard-<i>/`` (a temporary directory
  when the farm has none, removed at stop): a shard that dies is restarted on the same ports
  with the state it saved, and reported while it is down (``GET /v1/farm``'s ``shards``, the
  journal's ``shard_failed`` / ``shard_restarted`` entries); the others keep serving.
- **Journal.** Each shard keeps its own; the coordinator pulls what is new whenever someone
  reads the journal (and every ``journal.POLL`` while a stream is open), orders each pull by
  time and numbers it farm-wide. A server's entry whose client address a member on another
  shard registered as its outbound connection takes that member's correlation id.
- **Clock.** One: the coordinator's, given whole (offset, frozen instant) to every shard before
  a clock call returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ..core.clock import Clock
from ..core.control_routes import ControlError
from ..core.journal import Entry, Journal
from ..core.state import StateStore, atomic_write_bytes, encode_state
from ..scenario import Scenario
from .partition import Rule, shard_of

log = logging.getLogger("emulators.shards")

READY_TIMEOUT = 180.0  # seconds a shard may take to start (a 25,000-camera slice takes ~25 s)
RESTART_LIMIT = 3  # as a member's (farm.py): at most this many restarts in RESTART_WINDOW
RESTART_WINDOW = 60.0
CALL_TIMEOUT = 60.0
POLL_SHARDS = 1.0  # seconds between looks at shards the cluster runs
# Where a shard finds the token its control plane demands (`emulators shard --token-env`'s
# default; a Kubernetes Secret sets it for shards started on their own).
TOKEN_ENV = "EMULATORS_SHARD_TOKEN"


class ShardFailed(RuntimeError):
    pass


class ShardUnavailable(ControlError):
    """A shard did not answer the front (it is down, or going down): 503 in the control
    plane's error form."""

    status = 503
    code = "shard_unavailable"


class Shard:
    def __init__(self, index: int, directory: Path) -> None:
        self.index = index
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None
        # Its ready document without the member lists, which are kept encoded (`members`):
        # 100,000 members' descriptions were 171 MB parsed in the coordinator, 30 MB as JSON.
        self.ready: dict[str, Any] | None = None
        self._members = b'{"emulators":[],"servers":[]}'
        self.member_count = 0
        self.servers: list[dict[str, Any]] = []  # few, kept parsed: other shards look them up
        self.status = "starting"
        self.restarts: list[float] = []
        self.last_failure: str | None = None
        self.after = 0  # the shard journal's last entry pulled
        self.outbound_after = 0

    base: str | None = None  # where the shard's control plane is, when not in its ready doc

    @property
    def api(self) -> str:
        if self.base is not None:
            return self.base.rstrip("/") + "/v1"
        assert self.ready is not None
        return str(self.ready["control"]["api"])

    @property
    def _own(self) -> dict[str, Any]:
        """The ``shard`` part of its ready document (empty before it is ready)."""
        return (self.ready or {}).get("shard") or {}

    @property
    def incarnation(self) -> str | None:
        return self._own.get("incarnation")

    @property
    def bound_ports(self) -> dict[str, dict[str, int]]:
        """member -> the free listener options it bound (``Member.bound_ports``)."""
        return self._own.get("bound_ports") or {}

    def take_ready(self, doc: dict[str, Any]) -> None:
        """The shard's ready document (its ``/v1/farm`` or ready file), now it answers."""
        members = {"emulators": doc.pop("emulators", []), "servers": doc.pop("servers", [])}
        self.member_count = len(members["emulators"]) + len(members["servers"])
        self.servers = members["servers"]
        self._members = encode_state(members)
        self.ready = doc

    def members(self) -> dict[str, list[dict[str, Any]]]:
        """Its members' descriptions as its ready document gave them (emulators, servers)."""
        return json.loads(self._members)

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status,
                "pid": self.process.pid if self.process else None,
                "restarts": len(self.restarts), "last_failure": self.last_failure,
                "members": self.member_count}


class Coordinator:
    def __init__(self, scenario: Scenario, source: str | dict[str, Any], count: int,
                 state_dir: Path | None, *, control_port: int | None = None,
                 listen_host: str | None = None, free_ports: bool = False,
                 log_level: str = "WARNING", attach: str | None = None,
                 token: str | None = None) -> None:
        self.scenario = scenario
        self.source = str(source) if isinstance(source, Path) else source  # what shards load
        self.count = count
        self.listen_host = listen_host
        self.free_ports = free_ports
        self.log_level = log_level
        self.control_port = scenario.control.port if control_port is None else control_port
        self._temporary = state_dir is None
        self.root = Path(state_dir) if state_dir is not None else Path(
            tempfile.mkdtemp(prefix="emulators-shards-"))
        # The shards' control planes answer only us: a token made here for shards we start, the
        # one they were given (a Kubernetes Secret) for shards started on their own.
        self.token = token or secrets.token_urlsafe(24)
        self.rule = Rule.of(scenario, count)
        self.owner = shard_of(scenario, count, self.rule)
        self.shards = [Shard(i, self.root / f"shard-{i}") for i in range(count)]
        # attach: the shards run on their own (pods of a StatefulSet) at this URL pattern,
        # "{i}" their index; the coordinator finds them there and starts none.
        self.attach = attach
        for shard in self.shards:
            if attach is not None:
                shard.base = attach.replace("{i}", str(shard.index))
        self.clock = Clock()
        self.journal = Journal(self.clock, scenario.journal.capacity,
                               scenario.journal.excerpt_bytes)
        self.journal.enabled = scenario.journal.enabled
        self.members: dict[str, Any] = {}  # the front's routes name no member objects
        self.http = None
        self.control: Any = None
        self.session: aiohttp.ClientSession | None = None
        self.peers: dict[str, dict[str, Any]] = {}
        self.stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self._sync_lock = asyncio.Lock()
        self._outbound: dict[tuple[str, int], str] = {}
        self._waiting: dict[tuple[str, int], list[Entry]] = {}  # server entries not yet joined
        self.failures: dict[int, str] = {}
        self.fault_ids = len(scenario.faults)  # the front numbers rules given without an id

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        self.root.mkdir(parents=True, exist_ok=True)
        self._share_ca()
        self.session = aiohttp.ClientSession(
            # X-Requested-With: a body-less state change (a reset) is one a page of another
            # origin could not have sent (control/origin.py).
            headers={"Authorization": f"Bearer {self.token}",
                     "X-Requested-With": "emulators-front"},
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT))
        loop = asyncio.get_running_loop()
        if self.attach is not None:
            try:
                await asyncio.gather(*(self._find(s) for s in self.shards))
            except BaseException:
                await self.stop()
                raise
            await self.push_clock()
            self._watchers = [loop.create_task(self._poll(s)) for s in self.shards]
            return self.ready_document()
        try:
            servers = [m for m in self.scenario.members if m.role == "server"]
            if all(m.port for m in servers):
                # Every server's address is in the scenario: all shards start at once.
                self.peers = {m.name: {"host": m.host, "port": m.port} for m in servers}
                await asyncio.gather(*(self._spawn(s) for s in self.shards))
            else:  # shard 0 first: the others learn where its servers listen
                await self._spawn(self.shards[0])
                self.peers = {m["name"]: {"host": m["host"], "port": m["port"]}
                              for m in self.shards[0].servers}
                await asyncio.gather(*(self._spawn(s) for s in self.shards[1:]))
        except BaseException:
            await self.stop()
            raise
        self._watchers = [loop.create_task(self._watch(s)) for s in self.shards]
        return self.ready_document()

    # -- shards started on their own (Kubernetes) ---------------------------------------------
    async def _ready_of(self, shard: Shard) -> dict[str, Any] | None:
        try:
            status, doc = await self.call(shard, "GET", "/v1/farm")
        except ShardUnavailable:
            return None
        return doc if status == 200 and isinstance(doc, dict) else None

    async def _find(self, shard: Shard) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while (doc := await self._ready_of(shard)) is None:
            if time.monotonic() > deadline:
                raise ShardFailed(f"shard {shard.index} not found at {shard.base} after "
                                  f"{READY_TIMEOUT:g} s")
            await asyncio.sleep(0.2)
        shard.take_ready(doc)
        shard.status = "ok"

    async def _poll(self, shard: Shard) -> None:
        """A shard the cluster runs: reported while it does not answer; read again from the
        start of its journal, and given the clock, when a new run of it answers."""
        while not self.stopping:
            await asyncio.sleep(POLL_SHARDS)
            doc = await self._ready_of(shard)
            if doc is None:
                if shard.status == "ok":
                    shard.status = "unreachable"
                    shard.last_failure = f"no answer from {shard.base}"
                    self._note(shard, "shard_failed", {"reason": shard.last_failure})
                continue
            fresh = (doc.get("shard") or {}).get("incarnation") != shard.incarnation
            if fresh or shard.status != "ok":
                shard.take_ready(doc)
                shard.status = "ok"
                if fresh:
                    shard.after = shard.outbound_after = 0
                    shard.restarts.append(time.monotonic())
                    self._note(shard, "shard_restarted", {"restarts": len(shard.restarts)})
                await self.push_clock([shard])

    def _share_ca(self) -> None:
        """One farm CA for every shard: made (or read) in the state root, copied into each
        shard's directory before it starts."""
        from ..core.farm_ca import STATE_NAME, FarmCA

        shared = StateStore(self.root / "_shared")
        FarmCA.load_or_create(shared)
        doc = shared.load(STATE_NAME)
        shared.close()
        for shard in self.shards:
            store = StateStore(shard.directory)
            if store.load(STATE_NAME) is None:
                store.save_now(STATE_NAME, doc)  # type: ignore[arg-type]
            store.close()

    def _args(self, shard: Shard, ports: dict[str, Any] | None) -> dict[str, Any]:
        return {"scenario": self.source, "plan": self.rule.plan(), "index": shard.index,
                "count": self.count, "state_dir": str(shard.directory),
                "ready_file": str(shard.directory / "ready.json"), "peers": self.peers,
                "ports": ports, "listen_host": self.listen_host,
                "free_ports": self.free_ports, "log_level": self.log_level}

    async def _spawn(self, shard: Shard, ports: dict[str, Any] | None = None) -> None:
        ready_file = shard.directory / "ready.json"
        ready_file.unlink(missing_ok=True)
        shard.ready = None
        shard.status = "starting"
        # The token goes in the shard's environment, not its command line: every local user
        # reads a command line (ps), only the shard's own user its environment.
        shard.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "emulators.shards.worker",
            json.dumps(self._args(shard, ports)), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, env={**os.environ, TOKEN_ENV: self.token})
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready_file.exists():
            if shard.process.returncode is not None:
                raise ShardFailed(f"shard {shard.index} exited with {shard.process.returncode} "
                                  "while starting")
            if time.monotonic() > deadline:
                shard.process.kill()
                raise ShardFailed(f"shard {shard.index} not ready after {READY_TIMEOUT:g} s")
            await asyncio.sleep(0.02)
        shard.take_ready(json.loads(ready_file.read_bytes()))
        shard.after = shard.outbound_after = 0
        shard.status = "ok"

    async def _watch(self, shard: Shard) -> None:
        """A shard that exits while the farm runs is reported and restarted, on the ports its
        members had, with the state it saved; after RESTART_LIMIT restarts in RESTART_WINDOW
        seconds it stays down and says so."""
        while not self.stopping:
            assert shard.process is not None
            code = await shard.process.wait()
            if self.stopping:
                return
            reason = f"the shard's process exited with {code}"
            shard.last_failure = reason
            log.error("shard %d failed: %s", shard.index, reason)
            self._note(shard, "shard_failed", {"exit": code})
            now = time.monotonic()
            shard.restarts = [t for t in shard.restarts if t > now - RESTART_WINDOW]
            if len(shard.restarts) >= RESTART_LIMIT:
                shard.status = "failed"
                self.failures[shard.index] = f"{reason}; restarted {len(shard.restarts)} times " \
                                             f"in {RESTART_WINDOW:g} s already, not again"
                log.error("shard %d stays down: %s", shard.index, self.failures[shard.index])
                return
            shard.restarts.append(now)
            shard.status = "restarting"
            try:
                await self._spawn(shard, self._ports_of(shard))
            except (ShardFailed, OSError) as exc:
                shard.status = "failed"
                self.failures[shard.index] = f"{reason}; the restart failed: {exc}"
                log.error("shard %d stays down: %s", shard.index, exc)
                return
            self._note(shard, "shard_restarted", {"restarts": len(shard.restarts)})
            log.warning("shard %d restarted (restart %d)", shard.index, len(shard.restarts))
            if self.control is not None:
                await self.push_clock([shard])

    @staticmethod
    def _ports_of(shard: Shard) -> dict[str, Any]:
        """The ports a shard's members listened on, their listener options' too (a restarted
        device keeps its addresses: an MQTT client reconnects where it was)."""
        members, bound = shard.members(), shard.bound_ports
        return {m["name"]: {"port": m["port"], "options": bound.get(m["name"], {})}
                for m in (*members["emulators"], *members["servers"])}

    def _note(self, shard: Shard, event: str, detail: dict[str, Any]) -> None:
        self.journal.adopt(Entry(0, self.clock.time(), f"shard-{shard.index}", "shard",
                                 "process", event, detail=detail))

    async def stop(self) -> None:
        """SIGTERM to every shard it started (each saves and stops as a farm does), then
        wait; shards the cluster runs are the cluster's to stop."""
        self.stopping = True
        if self.control is not None:
            await self.control.stop()
            self.control = None
        for shard in self.shards if self.attach is None else ():
            if shard.process is not None and shard.process.returncode is None:
                shard.process.send_signal(signal.SIGTERM)
        for shard in self.shards if self.attach is None else ():
            if shard.process is not None:
                try:
                    await asyncio.wait_for(shard.process.wait(), 60)
                except TimeoutError:
                    shard.process.kill()
                    await shard.process.wait()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def exit_status(self) -> int:
        """1 when a shard died for good, else 0 (as a farm with a member that did)."""
        return 1 if self.failures else 0

    # -- calls to shards ---------------------------------------------------------------------
    def live(self) -> list[Shard]:
        return [s for s in self.shards if s.status == "ok" and s.ready is not None]

    async def call(self, shard: Shard, method: str, path: str, body: Any = None
                   ) -> tuple[int, Any]:
        """A JSON call to a shard's control plane: (status, document)."""
        assert self.session is not None
        if shard.base is None and shard.ready is None:
            raise ShardUnavailable(f"shard {shard.index} is {shard.status}")
        url = shard.api.removesuffix("/v1") + path
        try:
            async with self.session.request(method, url, json=body) as reply:
                try:
                    doc = await reply.json(content_type=None)
                except ValueError:
                    doc = None
                return reply.status, doc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ShardUnavailable(f"shard {shard.index} did not answer: "
                                   f"{type(exc).__name__}") from None

    async def everywhere(self, method: str, path: str, body: Any = None
                         ) -> list[tuple[Shard, int, Any]]:
        """The same call to every shard, concurrently; 503 while one is down (a list would
        miss its members, a change would reach only some shards)."""
        down = [s for s in self.shards if s.status != "ok" or s.ready is None]
        if down:
            raise ShardUnavailable(f"shard {down[0].index} is {down[0].status}")
        live = self.shards
        answers = await asyncio.gather(*(self.call(s, method, path, body) for s in live))
        return [(s, status, doc) for s, (status, doc) in zip(live, answers, strict=True)]

    def shard_for(self, name: str) -> Shard:
        """The shard running ``name`` (shard 0 for a name no shard runs: it answers 404)."""
        return self.shards[self.owner.get(name, 0)]

    async def push_clock(self, shards: list[Shard] | None = None) -> None:
        """The coordinator's clock, whole, to every shard (before a clock call returns)."""
        state = self.clock.state()
        targets = shards if shards is not None else self.live()
        answers = await asyncio.gather(*(self.call(s, "PUT", "/v1/shard/clock", state)
                                         for s in targets))
        for shard, (status, _) in zip(targets, answers, strict=True):
            if status != 200:
                raise ShardFailed(f"shard {shard.index} did not take the clock ({status})")

    # -- the journal -------------------------------------------------------------------------
    async def sync(self) -> None:
        """Pull what is new from every shard into the farm's journal, in time order."""
        async with self._sync_lock:
            pulled: list[Entry] = []
            for shard in self.live():
                while True:
                    try:
                        status, doc = await self.call(
                            shard, "GET", f"/v1/shard/journal?after={shard.after}"
                                          f"&outbound_after={shard.outbound_after}")
                    except ShardUnavailable:
                        break  # a shard going down: its watcher reports it
                    if status != 200 or not doc:
                        break
                    for n, host, port, correlation in doc["outbound"]:
                        shard.outbound_after = max(shard.outbound_after, n)
                        self._join(host, port, correlation)
                    for raw in doc["entries"]:
                        shard.after = max(shard.after, raw["seq"])
                        pulled.append(Entry(**raw))
                    if not doc["more"]:
                        break
            pulled.sort(key=lambda e: e.time)
            for entry in pulled:
                if entry.correlation_id is None and entry.client:
                    peer = _peer(entry.client)
                    if peer is not None:
                        entry.correlation_id = self._outbound.get(peer)
                        if entry.correlation_id is None:
                            self._waiting.setdefault(peer, []).append(entry)
                            if len(self._waiting) > 4096:
                                for key in list(self._waiting)[:1024]:
                                    del self._waiting[key]
                self.journal.adopt(entry)

    def _join(self, host: str, port: int, correlation: str) -> None:
        self._outbound[(host, port)] = correlation
        if len(self._outbound) > 16384:
            for key in list(self._outbound)[:4096]:
                del self._outbound[key]
        for entry in self._waiting.pop((host, port), []):
            entry.correlation_id = correlation

    # -- the ready document ------------------------------------------------------------------
    def ready_document(self) -> dict[str, Any]:
        order = {spec.name: i for i, spec in enumerate(self.scenario.members)}
        emulators: list[dict[str, Any]] = []
        servers: list[dict[str, Any]] = []
        ca = None
        for shard in self.shards:
            if shard.ready is None:
                continue
            members = shard.members()
            emulators.extend(members["emulators"])
            servers.extend(members["servers"])
            ca = ca or shard.ready.get("ca")
        control = None
        if self.control is not None:
            control = {"url": self.control.url, "api": self.control.url + "/v1",
                       "token_required": self.control.token is not None}
        return {
            "version": 1, "scenario": self.scenario.name, "pid": os.getpid(),
            "state_dir": None if self._temporary else str(self.root), "control": control,
            "ca": ca,
            "emulators": sorted(emulators, key=lambda m: order.get(m["name"], 0)),
            "servers": sorted(servers, key=lambda m: order.get(m["name"], 0)),
            "shards": [s.describe() for s in self.shards],
        }

    def write_ready_file(self, path: Path | str) -> None:
        atomic_write_bytes(Path(path), encode_state(self.ready_document()))


def _peer(client: str) -> tuple[str, int] | None:
    host, _, port = client.rpartition(":")
    return (host, int(port)) if port.isdigit() else None
