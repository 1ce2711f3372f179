"""What the FTP and SFTP servers share: their options (users and their roots, upload and
connection limits), the record of what arrived, the events (each one copied into the farm's
request journal), ``wait_for_upload``, fault checks, and calls onto the farm's loop from a
server thread.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..core.member import KindOptions, Member, UploadTarget
from ..core.state import EncodedRecords, encode_document, encode_state
from ..core.waiters import Waiters
from . import control

log = logging.getLogger("emulators.servers")

Protocol = Literal["ftp", "ftps", "sftp"]
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
# Events kept in the saved state; older ones are dropped first (the journal keeps the rest).
MAX_EVENTS = 1000
# How long an event (a login, a refusal) may wait to be saved. Each save encodes the whole
# history, so events share the next save (usually the upload's) instead of paying for one each.
EVENT_SAVE_DELAY = 0.25
DEFAULT_MAX_UPLOAD = 64 * 1024 * 1024
# Event keys the journal has columns for; the rest go to its ``detail``.
JOURNAL_FIELDS = frozenset({"seq", "time", "server", "kind", "protocol", "event", "user",
                            "remote"})


class UserOptions(KindOptions):
    """One account: ``home`` is a folder under the server's root (default: the user's name)."""

    name: str
    password: str | None = None
    home: str | None = None
    # A read-only account lets a test reproduce "permission error" on upload.
    read_only: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not USER_RE.match(value):
            raise ValueError("user names are 1-64 letters, digits, '_', '.', '@' or '-'")
        return value

    @field_validator("home")
    @classmethod
    def _home(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value or not value.strip("/. "):
            raise ValueError("home is a relative folder under the server's root, without '..'")
        return str(path)

    @property
    def home_dir(self) -> str:
        return self.home or self.name


class ServerOptions(KindOptions):
    users: tuple[UserOptions, ...] = ()
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD, ge=1)
    max_connections_per_ip: int = Field(default=10, ge=1)
    max_login_attempts: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _unique_users(self) -> ServerOptions:
        seen: set[str] = set()
        for user in self.users:
            if user.name in seen:
                raise ValueError(f"user {user.name!r} is listed twice")
            seen.add(user.name)
        return self


class EventHook(list[Callable[[dict[str, Any]], None]]):
    """Subscribers to a server's events, called on the farm's loop with each event dict.

    ``server.on_event.subscribe(fn)`` returns a function that unsubscribes; a subscriber that
    raises is logged and kept, so one broken listener cannot stop the recording.
    """

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self.append(callback)
        return lambda: self.remove(callback) if callback in self else None

    def emit(self, event: dict[str, Any]) -> None:
        for callback in list(self):
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not break the server
                log.exception("event subscriber %r failed", callback)


def sha256_file(path: Path | str) -> tuple[int, str]:
    """Size and SHA-256 of a file (blocking: call it off the event loop)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def is_inside(path: str | Path, root: str | Path) -> bool:
    """True when ``path`` is ``root`` or below it (both already resolved)."""
    path, root = os.fspath(path), os.fspath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class ServerMember(Member):
    """Base of the upload servers: state is what arrived and what happened, not the files
    themselves (those live under ``files_dir()``, one folder per user home)."""

    role = "server"
    Options: ClassVar[type[KindOptions]] = ServerOptions
    options: ServerOptions
    control_routes = control.routes
    control_openapi = control.OPENAPI

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_event = EventHook()
        self._received: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._seq = 0
        # The two lists kept encoded as the state file holds them: every upload saves the
        # whole document, and encoding 6,000 records took 11.6 ms a save where joining their
        # kept encodings takes 0.1 ms (bench/README.md, load). Records never change once
        # appended; received ones are keyed by position, events by their seq.
        self._received_encoded = EncodedRecords()
        self._events_encoded = EncodedRecords()
        self._events_base = 0  # the key of self._events[0]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saving: set[asyncio.Task[None]] = set()
        self._event_save: asyncio.TimerHandle | None = None
        self._upload_waiters: Waiters[dict[str, Any]] = Waiters()

    # -- users -------------------------------------------------------------------------------
    def user(self, username: str) -> UserOptions:
        for user in self.options.users:
            if user.name == username:
                return user
        raise LookupError(f"no user {username!r} on {self.name}")

    def user_root(self, username: str) -> Path:
        """The user's root folder (resolved, so containment checks compare real paths)."""
        return (self.files_dir() / self.user(username).home_dir).resolve()

    def prepare_roots(self) -> None:
        for user in self.options.users:
            self.user_root(user.name).mkdir(parents=True, exist_ok=True)

    def locate_file(self, path: str) -> Path:
        """``<user>/<path under that user's root>`` to a file on disk, refusing escapes.

        Raises LookupError when there is no such user or file, PermissionError for a path
        that leaves the user's root (``..``, absolute, or a symlink pointing out).
        """
        user, _, rest = path.partition("/")
        root = self.user_root(user)
        parts = PurePosixPath(rest).parts
        if not rest or PurePosixPath(rest).is_absolute() or ".." in parts or "\x00" in rest:
            raise PermissionError(f"{path!r} is not a path under a user's root")
        target = Path(os.path.realpath(root.joinpath(*parts)))
        if not is_inside(target, root):
            raise PermissionError(f"{path!r} leads outside the user's root")
        if not target.is_file():
            raise LookupError(f"no file {path!r} on {self.name}")
        return target

    def upload_protocol(self) -> Literal["ftp", "ftps", "sftp"]:
        """The protocol a device reaches this server with."""
        raise NotImplementedError

    def upload_target(self, user: str | None = None) -> UploadTarget:
        """Where a device uploads to this server as ``user`` (the first user when None)."""
        users = self.options.users
        account = self.user(user) if user is not None else (users[0] if users else None)
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return UploadTarget(host, self.port, self.upload_protocol(),
                            account.name if account else None,
                            (account.password or "") if account else None)

    def credentials(self) -> dict[str, Any]:
        return {"users": [{"name": u.name, "password": u.password, "home": u.home_dir,
                           "read_only": u.read_only} for u in self.options.users]}

    # -- state -------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return {"received": [], "events": [], "seq": 0}

    def load_state(self, data: dict[str, Any]) -> None:
        self._received = list(data.get("received", []))
        self._events = list(data.get("events", []))[-MAX_EVENTS:]
        self._seq = int(data.get("seq", 0))
        self._received_encoded.clear()
        for key, record in enumerate(self._received):
            self._received_encoded.put(key, record)
        self._events_encoded.clear()
        for key, record in enumerate(self._events):
            self._events_encoded.put(key, record)
        self._events_base = 0  # the key of self._events[0]

    def dump_state(self) -> dict[str, Any]:
        # Records are never changed once appended, so copying the lists is enough; this runs
        # at every save, and deep-copying every record was most of an upload's time.
        return {"received": list(self._received),
                "events": self._events[-MAX_EVENTS:], "seq": self._seq}

    async def write_state(self) -> None:
        """``encode_state(self.dump_state())``, from the kept encodings of the two lists."""
        doc = self.dump_state()
        parts: dict[str, Any] = {key: [encode_state(value)] for key, value in doc.items()
                                 if key not in ("received", "events")}
        parts["received"] = self._received_encoded.parts()
        parts["events"] = self._events_encoded.parts()
        await self.ctx.store.save_encoded(self.name, encode_document(parts))

    def state(self) -> dict[str, Any]:
        return copy.deepcopy(self.dump_state())  # callers may change what they are given

    async def reset(self) -> None:
        """A reset empties the users' folders too: what arrived before is gone."""
        await asyncio.to_thread(self._wipe_files)
        await super().reset()

    def _wipe_files(self) -> None:
        for child in self.files_dir().iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    async def state_changed(self) -> None:
        """State replaced wholesale (reset, snapshot restore): the users' folders must exist;
        their content is whatever the caller put there (a snapshot brings its files)."""
        await asyncio.to_thread(self.prepare_roots)

    # -- what arrived ------------------------------------------------------------------------
    def received_files(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._received)

    def events(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._events)

    def emit(self, event: str, *, protocol: Protocol, user: str | None = None,
             remote: str | None = None, **detail: Any) -> dict[str, Any]:
        """Record one event (login, login_failed, upload, refused...) and tell subscribers.

        The shape is what a farm-wide journal takes: ``seq`` orders events of this server,
        ``server``/``kind`` say whose it is, ``time`` comes from the farm clock.
        """
        self._seq += 1
        record = {"seq": self._seq, "time": self.clock.time(), "server": self.name,
                  "kind": self.kind, "protocol": protocol, "event": event, "user": user,
                  "remote": remote, **detail}
        self._events.append(record)
        self._events_encoded.put(self._events_base + len(self._events) - 1, record)
        if len(self._events) > MAX_EVENTS:
            del self._events[0]
            self._events_encoded.drop(self._events_base)
            self._events_base += 1
        self._journal(record)
        self.on_event.emit(copy.deepcopy(record))
        return record

    def _journal(self, record: dict[str, Any]) -> None:
        """Copy an event into the farm's request journal, correlated with the HTTP request
        that caused it when the client registered its outbound address (docs/FAULTS.md)."""
        journal = getattr(self.ctx, "journal", None)
        if journal is None:
            return
        remote = record["remote"]
        peer = None
        if remote:
            host, _, port = remote.rpartition(":")
            peer = (host, int(port)) if port.isdigit() else None
        detail = {k: v for k, v in record.items() if k not in JOURNAL_FIELDS}
        journal.record(self.name, self.kind, record["protocol"], record["event"],
                       correlation_id=journal.correlation_for_peer(peer), client=remote,
                       user=record["user"], path=detail.pop("path", None), detail=detail)

    def schedule_save(self) -> asyncio.Future[None] | None:
        """Save soon, from code that cannot await (sync callbacks); await the result to know
        it is on disk. None when no loop runs (the next save will carry the change)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        task = loop.create_task(self.save())
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)
        return task

    async def record_event(self, event: str, **fields: Any) -> dict[str, Any]:
        record = self.emit(event, **fields)
        self.save_soon()
        return record

    def save_soon(self) -> None:
        """Save within EVENT_SAVE_DELAY, unless a save comes first. Without a running loop
        nothing is scheduled (the next save will carry the change)."""
        if self._event_save is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._event_save = loop.call_later(EVENT_SAVE_DELAY, self._save_events)

    def _save_events(self) -> None:
        self._event_save = None
        self.schedule_save()

    async def save(self) -> None:
        if self._event_save is not None:  # this save carries the waiting events
            self._event_save.cancel()
            self._event_save = None
        await super().save()

    async def save_waiting_events(self) -> None:
        """At stop: save events still waiting for their save."""
        if self._event_save is not None:
            await self.save()

    def relative_path(self, user: str, local_path: str | Path) -> str:
        """A file's posix path under the user's root (blocking: resolves symlinks)."""
        real = Path(os.path.realpath(local_path))
        try:
            return real.relative_to(self.user_root(user)).as_posix()
        except (LookupError, ValueError):
            return os.fspath(local_path)

    def inspect_upload(self, user: str, local_path: str | Path) -> tuple[str, int, str]:
        """Path under the user's root, size and SHA-256 of an arrived file (blocking)."""
        size, digest = sha256_file(local_path)
        return self.relative_path(user, local_path), size, digest

    async def record_upload(self, *, user: str, path: str, size: int, sha256: str,
                            protocol: Protocol, remote: str | None = None,
                            **extra: Any) -> dict[str, Any]:
        """Note a completed upload, save, and wake ``wait_for_upload`` callers."""
        rel = path
        record = {"user": user, "path": rel, "size": size, "sha256": sha256,
                  "time": self.clock.time(), "protocol": protocol, **extra}
        self._received.append(record)
        self._received_encoded.put(len(self._received) - 1, record)
        self.emit("upload", protocol=protocol, user=user, remote=remote, path=rel, size=size,
                  sha256=sha256)
        await self.save()
        self._upload_waiters.offer(record, copy.deepcopy)  # each caller its own copy
        return copy.deepcopy(record)

    async def wait_for_upload(self, predicate: Callable[[dict[str, Any]], bool] | None = None,
                              timeout: float = 5.0,  # noqa: ASYNC109 - the agreed signature
                              *, new_only: bool = False) -> dict[str, Any]:
        """The newest received file matching ``predicate`` (any file when None); when none
        has arrived yet (or ``new_only``), wait for the next one. TimeoutError after
        ``timeout`` seconds of real time."""
        match = predicate or (lambda record: True)
        if not new_only:
            for record in reversed(self._received):
                if match(record):
                    return copy.deepcopy(record)
        return await self._upload_waiters.next(match, timeout)

    # -- fault rules (docs/FAULTS.md) -------------------------------------------------------
    def check_fault(self, protocol: Protocol, types: tuple[str, ...], *,
                    command: str | None = None, path: str | None = None) -> Any:
        """The farm's fault rule that fires for this event, or None (loop only)."""
        faults = getattr(self.ctx, "faults", None)
        if faults is None or not faults.rules:
            return None
        return faults.check(self.name, self.kind, protocol, types=types, command=command,
                            path=path, group=self.spec.group)

    def check_fault_from_thread(self, protocol: Protocol, types: tuple[str, ...], *,
                                command: str | None = None, path: str | None = None) -> Any:
        """``check_fault`` from a server thread: the rules belong to the farm's loop."""
        faults = getattr(self.ctx, "faults", None)
        if faults is None or not faults.rules:  # a racy peek, only to skip the round trip
            return None

        async def check() -> Any:
            return self.check_fault(protocol, types, command=command, path=path)

        return self.call_from_thread(check(), wait=True)

    # -- calls from a server thread (pyftpdlib) ---------------------------------------------
    def call_from_thread(self, coro: Coroutine[Any, Any, Any], *, wait: bool,
                         timeout: float = 10.0) -> Any:
        """Run ``coro`` on the farm's loop from another thread; with ``wait`` block until it
        is done (an upload's record is saved before the client hears "226")."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return None
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        if not wait:
            future.add_done_callback(self._log_failure)
            return None
        try:
            return future.result(timeout)
        except Exception:  # noqa: BLE001 - the transfer itself succeeded; say so in the log
            log.exception("%s: recording from the server thread failed", self.name)
            return None

    def submit_from_thread(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Start ``coro`` on the farm's loop from another thread; return its
        ``concurrent.futures.Future`` (None when the loop is gone) without waiting."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return None
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _log_failure(self, future: Any) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("%s: recording from the server thread failed", self.name,
                      exc_info=future.exception())
