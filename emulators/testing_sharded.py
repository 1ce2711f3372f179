"""A sharded farm from synchronous code: ``emulators run --shards N`` in a process of its own,
driven through its control plane with the surface of ``testing.RunningFarm`` that does not
need the members in this process (``testing`` exports it; ``farm_factory(..., shards=N)``
starts one). ``FarmChecks`` is what both kinds of farm share: the journal assertions and the
members by name, role and fleet.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import yaml

from .core.member import Member


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


class _Held(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def group(self) -> str: ...


H = TypeVar("H", bound=_Held)


class FarmChecks(JournalChecks, Generic[H]):
    """The journal assertions and the members by name, role and fleet: what a test reads of
    either kind of farm alike (``members`` is what each holds of a member)."""

    members: dict[str, H]

    def __getitem__(self, name: str) -> H:
        return self.members[name]

    @property
    def emulators(self) -> list[H]:
        return [m for m in self.members.values() if m.role == "emulator"]

    @property
    def servers(self) -> list[H]:
        return [m for m in self.members.values() if m.role == "server"]

    def group(self, name: str) -> list[H]:
        """The members stamped out of one scenario entry (a fleet), in order."""
        return [m for m in self.members.values() if m.group == name]


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
        # The web URL first: the control plane's JSON lists urls by label in sorted order, and
        # "amqps" sorts before "http".
        urls = list(description["urls"].values())
        self._url: str | None = next((u for u in urls if u.startswith(("http://", "https://"))),
                                     urls[0] if urls else None)

    @property
    def farm(self) -> ShardedFarm:
        return self._farm

    @property
    def description(self) -> dict[str, Any]:
        """What the control plane says of the member now (``GET /v1/<plural>/<name>``)."""
        return self._farm.api("GET", self._route())

    @property
    def urls(self) -> dict[str, str]:
        """Its URLs now (an ACTi camera's ``https`` comes and goes with its certificate)."""
        return self.description["urls"]

    @property
    def credentials(self) -> dict[str, Any]:
        return self.description["credentials"]

    @property
    def url(self) -> str:
        """The member's first URL (``http://...`` for a device)."""
        if self._url is None:
            raise LookupError(f"{self.name} listens on nothing of its own")
        return self._url

    def _route(self) -> str:
        return f"/v1/{'servers' if self.role == 'server' else 'emulators'}/{self.name}"

    def state(self) -> dict[str, Any]:
        return self._farm.api("GET", self._route() + "/state")

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


class ShardedFarm(FarmChecks[RemoteMember]):
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

    def shards(self) -> list[dict[str, Any]]:
        return self.api("GET", "/v1/farm")["shards"]

    def reset(self, name: str | None = None) -> None:
        if name is None:
            self.api("POST", "/v1/reset")
        else:
            self.members[name].reset()

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        import urllib.parse

        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        return self.api("GET", f"/v1/journal?{query}")["entries"]

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
        return self.api("GET", f"/v1/servers/{server}/files{query}")["files"]

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
        return self.api("GET", f"/v1/servers/{server}/events")["events"]

    def set_authorized_keys(self, server: str, user: str, lines: list[str]) -> list[str]:
        return self.api("PUT", f"/v1/servers/{server}/users/{user}/authorized_keys",
                        {"authorized_keys": lines})["authorized_keys"]

    def authorize_key(self, server: str, user: str, line: str) -> list[str]:
        return self.api("POST", f"/v1/servers/{server}/users/{user}/authorized_keys",
                        {"key": line})["authorized_keys"]

    def alarm(self, name: str) -> dict[str, Any]:
        """An INSTAR camera's alarm, as its motion detector would raise it."""
        return self.api("POST", f"/v1/emulators/{name}/alarm")

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
        return self.api("GET", "/v1/faults")["faults"]

    def remove_fault(self, rule_id: str) -> None:
        self.api("DELETE", f"/v1/faults/{rule_id}")

    def clear_faults(self) -> None:
        self.api("DELETE", "/v1/faults")

    def snapshot(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if members is not None:
            body["members"] = members
        return self.api("POST", "/v1/snapshots", body)

    def restore(self, name: str, members: list[str] | None = None) -> list[str]:
        body = {"members": members} if members is not None else {}
        return self.api("POST", f"/v1/snapshots/{name}/restore", body)["restored"]

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
