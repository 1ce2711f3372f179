"""Run farms from synchronous code (tests, scripts, notebooks) on a background event loop.

The farm's loop runs in its own thread, so a test may drive an emulator with a blocking client
(curl, ftplib, a vendor SDK) without deadlocking, and an async test with its own loop may too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import scenario as scenario_mod
from .core.member import Member
from .farm import Farm
from .kinds import resolve

T = TypeVar("T")
DEFAULT_TIMEOUT = 60.0


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self, name: str = "emulators-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        """Run a plain function on the loop (members are not thread-safe: touch them here)."""
        async def wrapper() -> T:
            result = fn()
            if isinstance(result, Awaitable):
                return await result
            return result
        return self.run(wrapper(), timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        try:
            self.run(drain(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class MemberHandle:
    """What a test holds of one member: where it listens, how to log in, its state, reset."""

    def __init__(self, farm: RunningFarm, member: Member) -> None:
        self._farm = farm
        self.member = member  # the live object: touch it only through ``call``
        self.name = member.name
        self.kind = member.kind
        self.role = member.role

    @property
    def farm(self) -> RunningFarm:
        """The running farm this member belongs to (its clock, journal, faults)."""
        return self._farm

    @property
    def description(self) -> dict[str, Any]:
        return self._farm.loop.call(self.member.describe)

    @property
    def urls(self) -> dict[str, str]:
        return self._farm.loop.call(self.member.urls)

    @property
    def url(self) -> str:
        """The member's first URL (``http://...`` for a device)."""
        return next(iter(self.urls.values()))

    @property
    def host(self) -> str:
        return self.member.host

    @property
    def port(self) -> int:
        return self.member.port

    @property
    def credentials(self) -> dict[str, Any]:
        return self._farm.loop.call(self.member.credentials)

    def state(self) -> dict[str, Any]:
        return self._farm.loop.call(self.member.state)

    def reset(self) -> None:
        self._farm.loop.run(self.member.reset())

    def call(self, fn: Callable[[Member], Any]) -> Any:
        """Run ``fn(member)`` on the farm's loop and return its result (awaited if async)."""
        return self._farm.loop.call(lambda: fn(self.member))

    def __repr__(self) -> str:
        return f"<MemberHandle {self.kind} {self.name}>"


async def _start(farm: Farm, control_port: int | None) -> dict[str, Any]:
    """Start ``farm``, then its control plane on ``control_port`` (None: no control plane)."""
    await farm.start()
    if control_port is not None:
        from .control.server import ControlPlane

        try:
            await ControlPlane.serve(farm, control_port)
        except BaseException:
            await farm.stop()
            raise
    return farm.ready_document()


class JournalChecks:
    """Assertions over ``journal(**filters)``, for a farm in this process or behind a control
    plane alike."""

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def assert_requested(self, count: int | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Fail unless the journal has a matching entry (exactly ``count``, when given)."""
        found = self.journal(**filters)
        if not found or (count is not None and len(found) != count):
            raise AssertionError(f"expected {count if count is not None else 'some'} journal "
                                 f"entries matching {filters}, found {len(found)}")
        return found

    def assert_not_requested(self, **filters: Any) -> None:
        found = self.journal(**filters)
        if found:
            raise AssertionError(f"expected no journal entry matching {filters}, found "
                                 f"{len(found)}: first {found[0]}")


class RunningFarm(JournalChecks):
    """A started farm, driven from synchronous code."""

    def __init__(self, farm: Farm, loop: LoopThread) -> None:
        self.farm = farm
        self.loop = loop
        self.ready: dict[str, Any] = {}
        self.members: dict[str, MemberHandle] = {}

    @classmethod
    def start(
        cls,
        source: str | Path | dict[str, Any] | scenario_mod.Scenario = scenario_mod.DEFAULT_SCENARIO,
        state_dir: Path | str | None = None,
        *,
        loop: LoopThread | None = None,
        control: bool = True,
        control_port: int = 0,
        free_ports: bool = True,
    ) -> RunningFarm:
        """Start a farm; with ``free_ports`` (the default) every listener takes a free port
        whatever the scenario says, so tests never collide with each other or a running farm."""
        scenario = (source if isinstance(source, scenario_mod.Scenario)
                    else scenario_mod.load(source))
        if free_ports:
            scenario = scenario_mod.with_free_ports(scenario)
        loop = loop or shared_loop()
        farm = loop.call(lambda: Farm(scenario, state_dir))
        running = cls(farm, loop)
        running.ready = loop.run(_start(farm, control_port if control else None))
        running.members = {name: MemberHandle(running, m) for name, m in farm.members.items()}
        return running

    def __getitem__(self, name: str) -> MemberHandle:
        return self.members[name]

    @property
    def emulators(self) -> list[MemberHandle]:
        return [h for h in self.members.values() if h.role == "emulator"]

    @property
    def servers(self) -> list[MemberHandle]:
        return [h for h in self.members.values() if h.role == "server"]

    def group(self, name: str) -> list[MemberHandle]:
        """The members stamped out of one scenario entry (a fleet), in order."""
        return [h for h in self.members.values() if h.member.spec.group == name]

    @property
    def control_url(self) -> str:
        if self.farm.control is None:
            raise RuntimeError("this farm runs without a control plane")
        return f"{self.farm.control.url}/v1"

    @property
    def clock(self):
        return self.farm.clock

    def reset(self, name: str | None = None) -> None:
        self.loop.run(self.farm.reset(name))

    # -- the request journal ---------------------------------------------------------------
    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """Journal entries matching ``filters`` (member, kind, protocol, event, method, path,
        status, correlation_id, since, until, after_seq, limit), oldest first."""
        return self.loop.call(lambda: [e.to_dict() for e in self.farm.journal.query(**filters)])

    def wait_for(self, timeout: float = 5.0, *, include_past: bool = True,
                 **filters: Any) -> dict[str, Any]:
        """Wait until the journal has an entry matching ``filters``; return it."""
        from .core.journal import _matches

        keys = ("member", "kind", "protocol", "event", "method", "path", "status",
                "correlation_id", "since", "until", "after_seq")
        args = [filters.get(k) for k in keys]

        async def wait() -> dict[str, Any]:
            entry = await self.farm.journal.wait_for(lambda e: _matches(e, *args), timeout,
                                                     include_past=include_past)
            return entry.to_dict()

        try:
            return self.loop.run(wait(), timeout + 5)
        except TimeoutError:
            raise AssertionError(
                f"no journal entry matching {filters} within {timeout} s") from None

    def wait_for_upload(self, server: str | None = None, timeout: float = 5.0,
                        **filters: Any) -> dict[str, Any]:
        """Wait until a file arrives at ``server`` (any server when None)."""
        return self.wait_for(timeout, event="upload", member=server or "*", **filters)

    def clear_journal(self) -> None:
        self.loop.call(self.farm.journal.clear)

    # -- faults ----------------------------------------------------------------------------
    def add_fault(self, **spec: Any) -> str:
        """Add a fault rule (see docs/FAULTS.md); returns its id."""
        return self.loop.call(lambda: self.farm.faults.add(spec).id)

    def faults(self) -> list[dict[str, Any]]:
        return self.loop.call(lambda: [r.to_dict() for r in self.farm.faults.list()])

    def remove_fault(self, rule_id: str) -> None:
        self.loop.call(lambda: self.farm.faults.remove(rule_id))

    def clear_faults(self) -> None:
        self.loop.call(self.farm.faults.clear)

    # -- the clock -------------------------------------------------------------------------
    def freeze_clock(self, at: float | None = None) -> None:
        self.loop.call(lambda: self.farm.clock.freeze(at))

    def advance_clock(self, seconds: float) -> None:
        self.loop.call(lambda: self.farm.clock.advance(seconds))

    def set_clock(self, at: float) -> None:
        self.loop.call(lambda: self.farm.clock.set(at))

    def reset_clock(self) -> None:
        self.loop.call(self.farm.clock.reset)

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        return self.loop.run(self.farm.snapshots.save(name, members))

    def restore(self, name: str, members: list[str] | None = None) -> list[str]:
        return self.loop.run(self.farm.snapshots.restore(name, members))

    def stop(self) -> None:
        if self.farm.started:
            self.loop.run(self.farm.stop())

    def __enter__(self) -> RunningFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RemoteMember:
    """A member of a sharded farm as a test holds it: where it listens and how to log in (it
    runs in another process: its state and reset go through the control plane)."""

    def __init__(self, farm: ShardedFarm, description: dict[str, Any]) -> None:
        self._farm = farm
        self.name = description["name"]
        self.kind = description["kind"]
        self.role = description["role"]
        self.group: str = description["group"]
        self.host: str = description["host"]
        self.port: int = description["port"]
        # Its first URL (the device's own address) does not change while the farm runs.
        self._url: str | None = next(iter(description["urls"].values()), None)

    @property
    def farm(self) -> ShardedFarm:
        return self._farm

    @property
    def description(self) -> dict[str, Any]:
        """What the control plane says of the member now (``GET /v1/<plural>/<name>``)."""
        return self._farm.api("GET", self._route())  # type: ignore[no-any-return]

    @property
    def urls(self) -> dict[str, str]:
        """Its URLs now (an ACTi camera's ``https`` comes and goes with its certificate)."""
        return self.description["urls"]  # type: ignore[no-any-return]

    @property
    def credentials(self) -> dict[str, Any]:
        return self.description["credentials"]  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        """The member's first URL (``http://...`` for a device)."""
        if self._url is None:
            raise LookupError(f"{self.name} listens on nothing of its own")
        return self._url

    def _route(self) -> str:
        return f"/v1/{'servers' if self.role == 'server' else 'emulators'}/{self.name}"

    def state(self) -> dict[str, Any]:
        return self._farm.api("GET", self._route() + "/state")  # type: ignore[no-any-return]

    def reset(self) -> None:
        self._farm.api("POST", self._route() + "/reset")

    def call(self, fn: Callable[[Member], Any]) -> Any:
        raise TypeError(f"{self.name} runs in a shard's process: use its state() or the "
                        "control plane, not call()")

    def __repr__(self) -> str:
        return f"<RemoteMember {self.kind} {self.name}>"


class ShardedClock:
    """The farm clock of a sharded farm, through its control plane."""

    def __init__(self, farm: ShardedFarm) -> None:
        self._farm = farm

    def time(self) -> float:
        return float(self._farm.api("GET", "/v1/clock")["time"])

    @property
    def frozen(self) -> bool:
        return bool(self._farm.api("GET", "/v1/clock")["frozen"])

    def freeze(self, at: float | None = None) -> None:
        self._farm.api("POST", "/v1/clock/freeze", {} if at is None else {"time": at})

    def unfreeze(self) -> None:
        self._farm.api("POST", "/v1/clock/unfreeze")

    def set(self, at: float) -> None:
        self._farm.api("POST", "/v1/clock/set", {"time": at})

    def advance(self, seconds: float) -> None:
        self._farm.api("POST", "/v1/clock/advance", {"seconds": seconds})

    def reset(self) -> None:
        self._farm.api("POST", "/v1/clock/reset")


class ShardedFarm(JournalChecks):
    """``emulators run --shards N`` in a process of its own, driven from synchronous code
    with the surface of ``RunningFarm`` that does not need the members in this process: the
    members' addresses and credentials, the journal, faults, the clock, reset, snapshots,
    uploads received. ``farm_factory(..., shards=N)`` starts one."""

    def __init__(self, process: subprocess.Popen[bytes], ready: dict[str, Any],
                 workdir: Path, cleanup: Any) -> None:
        self.process = process
        self.ready = ready
        self.workdir = workdir
        self._cleanup = cleanup
        self.members = {m["name"]: RemoteMember(self, m)
                        for m in (*ready["emulators"], *ready["servers"])}
        self.clock = ShardedClock(self)

    @classmethod
    def start(cls, source: str | Path | dict[str, Any], shards: int,
              state_dir: str | Path | None = None, *, free_ports: bool = True,
              timeout: float = 120, options: tuple[str, ...] = ()) -> ShardedFarm:
        """``options``: more of `emulators run`'s options (``("--allow-host", "farm")``)."""
        import tempfile

        from . import scenario as scenario_mod

        tmp = tempfile.TemporaryDirectory(prefix="emulators-sharded-")
        workdir = Path(tmp.name)
        if isinstance(source, dict):
            scenario_mod.load(source)  # invalid: raised here, as RunningFarm.start does
            path = workdir / "scenario.yaml"
            path.write_text(yaml.safe_dump(source))
            source = str(path)
        ready_file = workdir / "ready.json"
        args = [sys.executable, "-m", "emulators", "run", str(source), "--shards", str(shards),
                "--ready-file", str(ready_file), "--control-port", "0"]
        if free_ports:
            args.append("--free-ports")
        if state_dir is not None:
            args += ["--state-dir", str(state_dir)]
        args += options
        with (workdir / "stderr").open("wb") as err:
            process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while not ready_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                message = (workdir / "stderr").read_text(errors="replace")[-2000:]
                tmp.cleanup()
                raise RuntimeError(f"the sharded farm did not start: {message}")
            time.sleep(0.02)
        try:
            return cls(process, json.loads(ready_file.read_text()), workdir, tmp.cleanup)
        except BaseException:  # a farm nobody holds must not outlive the call
            process.kill()
            process.wait()
            tmp.cleanup()
            raise

    # -- the control plane -------------------------------------------------------------------
    @property
    def control_url(self) -> str:
        return str(self.ready["control"]["api"])

    def _request(self, method: str, route: str, body: Any = None) -> tuple[int, bytes]:
        """``route`` on the control plane: the status and the reply's bytes (errors too)."""
        import urllib.error
        import urllib.request

        data = json.dumps(body if body is not None else {}).encode() if method in (
            "POST", "PUT") else None
        request = urllib.request.Request(self.control_url.removesuffix("/v1") + route,
                                         data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def api(self, method: str, route: str, body: Any = None) -> Any:
        """The JSON answer of ``route``; RuntimeError with the control error when not 2xx."""
        status, raw = self._request(method, route, body)
        if status >= 300:
            raise RuntimeError(f"{method} {route}: {status} {raw[:500].decode(errors='replace')}")
        return json.loads(raw)

    def __getitem__(self, name: str) -> RemoteMember:
        return self.members[name]

    @property
    def emulators(self) -> list[RemoteMember]:
        return [m for m in self.members.values() if m.role == "emulator"]

    @property
    def servers(self) -> list[RemoteMember]:
        return [m for m in self.members.values() if m.role == "server"]

    def group(self, name: str) -> list[RemoteMember]:
        return [m for m in self.members.values() if m.group == name]

    def shards(self) -> list[dict[str, Any]]:
        return self.api("GET", "/v1/farm")["shards"]  # type: ignore[no-any-return]

    def reset(self, name: str | None = None) -> None:
        if name is None:
            self.api("POST", "/v1/reset")
        else:
            self.members[name].reset()

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        import urllib.parse

        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        return self.api("GET", f"/v1/journal?{query}")["entries"]  # type: ignore[no-any-return]

    def clear_journal(self) -> None:
        self.api("DELETE", "/v1/journal")

    def wait_for_upload(self, server: str | None = None, timeout: float = 5.0, *,
                        path: str | None = None, user: str | None = None) -> dict[str, Any]:
        """The first upload (journal entry) to ``server`` matching ``path`` (a shell pattern)
        and ``user``, waiting up to ``timeout`` seconds for it."""
        import fnmatch

        deadline = time.monotonic() + timeout
        while True:
            for entry in self.journal(event="upload", member=server):
                if (path is None or fnmatch.fnmatchcase(entry.get("path") or "", path)) and (
                        user is None or entry.get("user") == user):
                    return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"no upload to {server or 'any server'} matching {path!r}")
            time.sleep(0.05)

    # -- what the servers received, through their control routes ------------------------------
    def files(self, server: str, user: str | None = None) -> list[dict[str, Any]]:
        """The files ``server`` received, oldest first (``GET /v1/servers/<name>/files``)."""
        import urllib.parse

        query = "?" + urllib.parse.urlencode({"user": user}) if user is not None else ""
        return self.api("GET", f"/v1/servers/{server}/files{query}")["files"]  # type: ignore[no-any-return]

    def file(self, server: str, user: str, path: str) -> bytes | None:
        """The bytes of ``path`` under ``user``'s root on ``server``; None when there is no
        such file (the route's 404)."""
        import urllib.parse

        route = f"/v1/servers/{server}/files/{user}/{urllib.parse.quote(path.lstrip('/'))}"
        status, raw = self._request("GET", route)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET {route}: {status} {raw[:200]!r}")
        return raw

    def events(self, server: str) -> list[dict[str, Any]]:
        """A server's session events (logins, failures, uploads)."""
        return self.api("GET", f"/v1/servers/{server}/events")["events"]  # type: ignore[no-any-return]

    def set_authorized_keys(self, server: str, user: str, lines: list[str]) -> list[str]:
        return self.api("PUT", f"/v1/servers/{server}/users/{user}/authorized_keys",  # type: ignore[no-any-return]
                        {"authorized_keys": lines})["authorized_keys"]

    def authorize_key(self, server: str, user: str, line: str) -> list[str]:
        return self.api("POST", f"/v1/servers/{server}/users/{user}/authorized_keys",  # type: ignore[no-any-return]
                        {"key": line})["authorized_keys"]

    def alarm(self, name: str) -> dict[str, Any]:
        """An INSTAR camera's alarm, as its motion detector would raise it."""
        return self.api("POST", f"/v1/emulators/{name}/alarm")  # type: ignore[no-any-return]

    # -- the clock, under RunningFarm's names ------------------------------------------------
    def freeze_clock(self, at: float | None = None) -> None:
        self.clock.freeze(at)

    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def set_clock(self, at: float) -> None:
        self.clock.set(at)

    def reset_clock(self) -> None:
        self.clock.reset()

    def add_fault(self, **spec: Any) -> str:
        return str(self.api("POST", "/v1/faults", spec)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return self.api("GET", "/v1/faults")["faults"]  # type: ignore[no-any-return]

    def remove_fault(self, rule_id: str) -> None:
        self.api("DELETE", f"/v1/faults/{rule_id}")

    def clear_faults(self) -> None:
        self.api("DELETE", "/v1/faults")

    def snapshot(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if members is not None:
            body["members"] = members
        return self.api("POST", "/v1/snapshots", body)  # type: ignore[no-any-return]

    def restore(self, name: str, members: list[str] | None = None) -> list[str]:
        body = {"members": members} if members is not None else {}
        return self.api("POST", f"/v1/snapshots/{name}/restore", body)["restored"]  # type: ignore[no-any-return]

    def stop(self) -> int:
        """SIGTERM, as a user stops it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._cleanup()
        return self.process.returncode

    def __enter__(self) -> ShardedFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_counter = itertools.count(1)


def single_member_scenario(kind: str, name: str | None = None, **options: Any) -> dict[str, Any]:
    """A one-member scenario dict for ``kind`` with the given options. Every further listener
    of the kind (an option ``*_port`` whose default is a fixed port) takes a free port unless
    the options name one: a test's member never sits on a well-known port by accident."""
    cls = resolve(kind)
    default_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind.rsplit(":", 1)[-1]).strip("-.").lower()
    free = {field_name: 0 for field_name, info in cls.Options.model_fields.items()
            if field_name.endswith("_port") and isinstance(info.default, int) and info.default}
    entry = {"name": name or f"{default_name}-{next(_counter)}", "kind": kind, **free,
             **options}
    section = "servers" if cls.role == "server" else "emulators"
    return {"name": f"single-{kind}", section: [entry]}


_shared: LoopThread | None = None
_shared_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """One background loop for the process, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.loop.is_closed():
            _shared = LoopThread()
        return _shared


def close_shared_loop() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None
