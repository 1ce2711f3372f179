"""The farm's SFTP upload server (asyncssh): password and public-key users, a persistent
Ed25519 host key, and uploads confined to each user's root.

asyncssh's chroot already clamps ``..`` at the root, but it follows symlinks that exist
inside the root; every path is therefore resolved and checked for containment here.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

import asyncssh
from pydantic import Field, field_validator, model_validator

from ..core.state import TMP_MARKER
from .asyncssh_internals import CLIENT_CLOSES_KNOWN, client_close_running
from .common import ServerMember, ServerOptions, UserOptions, is_inside
from .exceptions import (
    SSH_TOO_MANY_AUTH_FAILURES,
    SSH_TOO_MANY_CONNECTIONS,
    AuthorizedKeyError,
    SftpRefusal,
)

log = logging.getLogger("emulators.servers.sftp")

HOST_KEY_ALG = "ssh-ed25519"
WRITE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
# An open that replaces a whole file (what `put` and cameras send) is written under a
# temporary name and moved over the target only when the client closes it: an upload that
# does not complete (the session gone with the file open, refused, cut) leaves the previous
# file exactly as it was, and the record listing it stays true. A farm killed mid-upload
# leaves the temporary file, swept at the next start (TMP_MARKER). Reads, appends and
# in-place updates write in place.
REPLACE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_TRUNC
IN_PLACE_FLAGS = asyncssh.FXF_READ | asyncssh.FXF_APPEND | asyncssh.FXF_EXCL
_TMP_IDS = itertools.count(1)


def parse_key_line(line: str) -> str:
    """Check one ``authorized_keys`` line (options allowed) and return it trimmed."""
    text = line.strip()
    if not text or "\n" in text or "\r" in text or text.startswith("#"):
        raise AuthorizedKeyError("an authorized_keys entry is one non-empty line")
    try:
        asyncssh.import_authorized_keys(text)
    except (ValueError, asyncssh.KeyImportError) as exc:
        raise AuthorizedKeyError(f"not an OpenSSH public key line: {exc}") from None
    return text


class SftpUserOptions(UserOptions):
    authorized_keys: tuple[str, ...] = ()

    @field_validator("authorized_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(parse_key_line(line) for line in value)


class SftpOptions(ServerOptions):
    users: tuple[SftpUserOptions, ...] = ()
    max_login_attempts: int = Field(default=6, ge=1)  # OpenSSH's MaxAuthTries
    # A fixed host key (OpenSSH private key text); by default one is made on first start.
    host_key: str | None = None
    # The software field of "SSH-2.0-<...>": no name or version of the real software.
    server_version: str = Field(default="Server", pattern=r"^[!-,.-~]{1,64}$")
    login_timeout: float = Field(default=120, gt=0)

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                asyncssh.import_private_key(value)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise ValueError(f"host_key is not an OpenSSH private key: {exc}") from None
        return value

    @model_validator(mode="after")
    def _users(self) -> SftpOptions:
        if not self.users:
            raise ValueError("an SFTP server needs at least one user")
        return self


@dataclass
class _Upload:
    user: str
    local: str  # the file the upload lands in
    tmp: str | None = None  # where a replacing upload is written until its close
    refused: bool = False
    # Set by a fault rule when the upload opens (docs/FAULTS.md).
    fault: Any = None


class _SSHServer(asyncssh.SSHServer):
    """One per connection: authentication, the per-IP cap and the login-attempt limit."""

    def __init__(self, member: SftpServer) -> None:
        self.member = member
        self.conn: asyncssh.SSHServerConnection | None = None
        self.ip = ""
        self.remote: str | None = None
        self.failures = 0
        self.over_cap = False
        self.method: str | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.ip, self.remote = peer[0], f"{peer[0]}:{peer[1]}"
        member = self.member
        member.connections.add(conn)
        count = member.per_ip.get(self.ip, 0) + 1
        member.per_ip[self.ip] = count
        self.over_cap = count > member.options.max_connections_per_ip

    def connection_lost(self, exc: Exception | None) -> None:
        member = self.member
        if self.conn is not None:
            member.connections.discard(self.conn)
        left = member.per_ip.get(self.ip, 1) - 1
        if left > 0:
            member.per_ip[self.ip] = left
        else:
            member.per_ip.pop(self.ip, None)

    async def begin_auth(self, username: str) -> bool:
        if self.over_cap and self.conn is not None:
            # Refused here rather than at accept: only after the version exchange can the
            # client be told why (a disconnect before it reads as a reset connection).
            await self.member.record_event("refused", protocol="sftp", user=username,
                                           remote=self.remote, reason="too_many_connections")
            self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, SSH_TOO_MANY_CONNECTIONS)
        return True  # every user must authenticate

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def _refuse_by_fault(self, command: str) -> bool:
        """A refuse_login fault rule: the login fails exactly like a wrong credential."""
        return self.member.check_fault("sftp", ("refuse_login",), command=command) is not None

    async def validate_password(self, username: str, password: str) -> bool:
        user = self.member.find_user(username)
        expected = (user.password if user is not None else None) or ""
        if user is not None and user.password is not None and hmac.compare_digest(
                expected.encode(), password.encode()) and not self._refuse_by_fault("password"):
            self.method = "password"
            return True
        await self._failed(username, "password")
        return False

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        keys = self.member.authorized_keys_for(username)
        if (keys is not None and keys.validate(key, self.ip, self.ip) is not None
                and not self._refuse_by_fault("publickey")):
            self.method = "publickey"
            return True
        await self._failed(username, "publickey")
        return False

    async def _failed(self, username: str, method: str) -> None:
        self.failures += 1
        member = self.member
        member.emit("login_failed", protocol="sftp", user=username, remote=self.remote,
                    method=method)
        if self.failures >= member.options.max_login_attempts and self.conn is not None:
            member.emit("refused", protocol="sftp", user=username, remote=self.remote,
                        reason="too_many_login_attempts")
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                 SSH_TOO_MANY_AUTH_FAILURES)
        member.save_soon()

    async def auth_completed(self) -> None:
        assert self.conn is not None
        await self.member.record_event("login", protocol="sftp",
                                       user=self.conn.get_extra_info("username"),
                                       remote=self.remote, method=self.method)


class _SFTPServer(asyncssh.SFTPServer):
    """One per SFTP session: the user's root as a chroot, checked against symlink escapes."""

    def __init__(self, chan: asyncssh.SSHServerChannel, member: SftpServer) -> None:
        self.member = member
        self.username: str = chan.get_extra_info("username")
        peer = chan.get_extra_info("peername") or ("", 0)
        self.remote = f"{peer[0]}:{peer[1]}"
        self.user = member.user(self.username)
        root = member.user_root(self.username)
        super().__init__(chan, chroot=os.fsencode(root))
        self.root = os.fsencode(os.path.realpath(root))
        self.uploads: dict[int, _Upload] = {}

    # -- confinement -------------------------------------------------------------------------
    def _refuse(self, error: asyncssh.SFTPError, reason: str, path: bytes,
                **detail: Any) -> asyncssh.SFTPError:
        self.member.emit("refused", protocol="sftp", user=self.username, remote=self.remote,
                         reason=reason, path=path.decode("utf-8", "backslashreplace"), **detail)
        self.member.schedule_save()
        return error

    def _confined(self, path: bytes, *, follow: bool) -> bytes:
        # A NUL cannot reach the file system and names are kept as UTF-8 (records, JSON).
        if b"\x00" in path or not _is_utf8(path):
            raise self._refuse(SftpRefusal.bad_name(), "bad_name", path)
        local = super().map_path(path)  # the chroot: '..' stops at the user's root
        if follow:
            real = os.path.realpath(local)
        else:  # the entry itself (lstat, remove): resolve only the folders leading to it
            parent, name = os.path.split(local)
            real = os.path.join(os.path.realpath(parent), name) if name else local
        if not is_inside(os.fsdecode(real), os.fsdecode(self.root)):
            raise self._refuse(SftpRefusal.outside_root(), "outside_root", path)
        return local

    def map_path(self, path: bytes) -> bytes:
        return self._confined(path, follow=True)

    def _writable(self, path: bytes) -> None:
        if self.user.read_only:
            raise self._refuse(SftpRefusal.read_only(), "read_only", path)

    def lstat(self, path: bytes) -> os.stat_result:
        return os.lstat(self._confined(path, follow=False))

    def remove(self, path: bytes) -> None:
        self._writable(path)
        os.remove(self._confined(path, follow=False))

    def readlink(self, path: bytes) -> bytes:
        self._confined(path, follow=False)
        return super().readlink(path)  # type: ignore[return-value]

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        # A link is how a later request would leave the root: cameras never need one.
        raise self._refuse(SftpRefusal.links_refused(), "link", newpath)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise self._refuse(SftpRefusal.links_refused(), "link", newpath)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._writable(path)
        super().mkdir(path, attrs)

    def rmdir(self, path: bytes) -> None:
        self._writable(path)
        super().rmdir(path)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable(newpath)
        super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable(newpath)
        super().posix_rename(oldpath, newpath)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._writable(path)
        super().setstat(path, attrs)

    # -- uploads -----------------------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        writing = bool(pflags & WRITE_FLAGS)
        if writing:
            self._writable(path)
        if pflags & REPLACE_FLAGS == REPLACE_FLAGS and not pflags & IN_PLACE_FLAGS:
            file_obj, target, tmp = self._open_replacing(path, attrs)
            self._track(file_obj, target, tmp)
            return file_obj
        file_obj = super().open(path, pflags, attrs)
        if writing:
            self._track(file_obj, os.fsdecode(self.map_path(path)))
        return file_obj

    def _open_replacing(self, path: bytes,
                        attrs: asyncssh.SFTPAttrs) -> tuple[object, str, str]:
        # Confined, and through a symlink inside the root: replace what it points at, as
        # writing through it would, not the link itself (the FTP server does the same).
        target = os.path.realpath(os.fsdecode(self.map_path(path)))
        head, tail = os.path.split(target)
        tmp = os.path.join(head, f".{tail}{TMP_MARKER}sftp-{os.getpid()}-{next(_TMP_IDS)}")
        perms = 0o666 if attrs.permissions is None else attrs.permissions
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perms)
        return os.fdopen(fd, "wb", buffering=0), target, tmp

    def _track(self, file_obj: object, local: str, tmp: str | None = None) -> None:
        upload = _Upload(self.username, local, tmp)
        upload.fault = self.member.check_fault(
            "sftp", ("disk_full", "cut_transfer", "throttle"), command="open",
            path=self._rel(local))
        self.uploads[id(file_obj)] = upload

    def open56(self, path: bytes, desired_access: int, flags: int,
               attrs: asyncssh.SFTPAttrs) -> object:
        writing = bool(desired_access & (asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA))
        if writing:
            self._writable(path)
        file_obj = super().open56(path, desired_access, flags, attrs)
        if writing:
            self._track(file_obj, os.fsdecode(self.map_path(path)))
        return file_obj

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        upload = self.uploads.get(id(file_obj))
        if upload is not None and offset + len(data) > self.member.options.max_upload_bytes:
            upload.refused = True
            raise self._refuse(SftpRefusal.upload_too_large(), "upload_too_large",
                               os.fsencode(self._rel(upload.local)))
        fault = upload.fault if upload is not None else None
        if fault is not None and upload is not None:
            if fault.fault == "disk_full":
                upload.refused = True
                raise self._refuse(SftpRefusal.disk_full(), "fault",
                                   os.fsencode(self._rel(upload.local)), fault=fault.id)
            if fault.fault == "throttle":
                await asyncio.sleep(len(data) / fault.bytes_per_second)
            elif offset + len(data) > (fault.after_bytes or 0):
                # cut_transfer: keep what came before the cut, then drop the connection.
                kept = max(0, (fault.after_bytes or 0) - offset)
                super().write(file_obj, offset, data[:kept])
                self.connection.abort()
                return kept
        return super().write(file_obj, offset, data)  # type: ignore[return-value]

    def _rel(self, local: str) -> str:
        return os.path.relpath(os.path.realpath(local), os.fsdecode(self.root))

    async def close(self, file_obj: object) -> None:
        super().close(file_obj)
        upload = self.uploads.pop(id(file_obj), None)
        if upload is None:
            return
        by_client = (client_close_running() if CLIENT_CLOSES_KNOWN
                     else not self.channel.is_closing())
        if not by_client:
            # asyncssh closes the files an ended session left open: not a finished upload.
            self._incomplete(upload)
            self.member.schedule_save()
        else:
            await self._finish(upload)

    def _incomplete(self, upload: _Upload) -> None:
        _drop(upload)
        self.member.emit("upload_incomplete", protocol="sftp", user=upload.user,
                         remote=self.remote, path=self._rel(upload.local))

    async def _finish(self, upload: _Upload) -> None:
        if upload.refused:
            # Over the limit or a disk_full fault: nothing of it is kept.
            await asyncio.to_thread(_drop, upload)
            return
        try:
            rel, size, digest = await asyncio.to_thread(self._commit, upload)
        except FileNotFoundError:
            return  # removed or renamed under us: nothing arrived to record
        await self.member.record_upload(user=upload.user, path=rel, size=size, sha256=digest,
                                        protocol="sftp", remote=self.remote)

    def _commit(self, upload: _Upload) -> tuple[str, int, str]:
        """The client closed the file: a replacing upload takes its target's place (blocking)."""
        if upload.tmp is not None:
            try:
                os.replace(upload.tmp, upload.local)
            except OSError:
                _unlink(upload.tmp)
                raise  # the client's close fails: the upload did not arrive
        return self.member.inspect_upload(upload.user, upload.local)

    def exit(self) -> None:
        # A session that ends with files still open (client gone mid-upload) is incomplete;
        # asyncssh has closed them through close() already, this is the safety net.
        for key, upload in list(self.uploads.items()):
            del self.uploads[key]
            self._incomplete(upload)
        self.member.save_soon()
        # The subsystem ends normally (the client hung up): say so with exit-status 0, as
        # OpenSSH's sftp-server does. Without it scp (SFTP mode) exits 1 ("Exit status -1").
        channel = self.channel
        if not channel.is_closing():
            channel.exit(0)


def _drop(upload: _Upload) -> None:
    """An upload that did not complete: a replacing one's temporary file goes (the target was
    never touched); a refused in-place one goes itself, a real server's quota way."""
    if upload.tmp is not None:
        _unlink(upload.tmp)
    elif upload.refused:
        _unlink(upload.local)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unlink(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class SftpServer(ServerMember):
    """SFTP upload target: what INSTAR's ``ft_ssl=2`` (sFTP) uploads reach."""

    kind = "sftp"
    title = "SFTP server (asyncssh)"
    Options = SftpOptions
    options: SftpOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host_key_text: str | None = None
        self._host_key: asyncssh.SSHKey | None = None
        self._authorized: dict[str, list[str]] = {}
        self._acceptor: Any = None
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.per_ip: dict[str, int] = {}

    def upload_protocol(self) -> Literal["sftp"]:
        return "sftp"

    def find_user(self, username: str) -> SftpUserOptions | None:
        try:
            user = self.user(username)
        except LookupError:
            return None
        assert isinstance(user, SftpUserOptions)
        return user

    # -- state -------------------------------------------------------------------------------
    # The host key survives reset and restart: a camera that pinned it keeps trusting us.
    def initial_state(self) -> dict[str, Any]:
        return {**super().initial_state(), "host_key": self._host_key_text,
                "authorized_keys": {u.name: list(u.authorized_keys)
                                    for u in self.options.users}}

    def load_state(self, data: dict[str, Any]) -> None:
        super().load_state(data)
        text = self.options.host_key or data.get("host_key") or self._host_key_text
        if text is not None and text != self._host_key_text:
            self._host_key = asyncssh.import_private_key(text)
            self._host_key_text = text
        saved = data.get("authorized_keys") or {}
        self._authorized = {u.name: list(saved.get(u.name, u.authorized_keys))
                            for u in self.options.users}

    def dump_state(self) -> dict[str, Any]:
        return {**super().dump_state(), "host_key": self._host_key_text,
                "authorized_keys": {k: list(v) for k, v in self._authorized.items()}}

    def state(self) -> dict[str, Any]:
        doc = super().state()
        doc.pop("host_key")  # the private key stays in the flash, not in the control view
        doc["host_key_blob"] = self.host_key_blob() if self._host_key else None
        return doc

    # -- host key ----------------------------------------------------------------------------
    def _require_key(self) -> asyncssh.SSHKey:
        if self._host_key is None:
            raise RuntimeError(f"{self.name} has no host key before it starts")
        return self._host_key

    def host_key_line(self) -> str:
        """``ssh-ed25519 AAAA...`` (a known_hosts / authorized_keys style public key)."""
        line = self._require_key().export_public_key("openssh").decode().strip()
        return " ".join(line.split()[:2])

    def host_key_blob(self) -> str:
        """The base64 SSH public key blob, what INSTAR's ``testftp`` answers as hostkey."""
        return self.host_key_line().split()[1]

    def host_key_fingerprint(self) -> str:
        return str(self._require_key().get_fingerprint("sha256"))

    # -- authorized keys ---------------------------------------------------------------------
    def authorized_keys(self, username: str) -> list[str]:
        self.user(username)
        return list(self._authorized.get(username, []))

    def authorized_keys_for(self, username: str) -> asyncssh.SSHAuthorizedKeys | None:
        lines = self._authorized.get(username)
        if not lines:
            return None
        return asyncssh.import_authorized_keys("\n".join(lines) + "\n")

    def authorize_key(self, username: str, openssh_line: str) -> asyncio.Future[None] | None:
        """Add a public key to ``username``'s authorized_keys (e.g. a camera's getpubkey).

        The change applies at once; the returned future completes when it is saved (await
        it, or not). Raises LookupError for an unknown user, AuthorizedKeyError for a bad line.
        """
        line = parse_key_line(openssh_line)
        keys = self._authorized.setdefault(self.user(username).name, [])
        if line not in keys:
            keys.append(line)
        return self.schedule_save()

    def set_authorized_keys(self, username: str,
                            lines: list[str]) -> asyncio.Future[None] | None:
        """Replace ``username``'s authorized_keys (same contract as ``authorize_key``)."""
        parsed = [parse_key_line(line) for line in lines]
        self._authorized[self.user(username).name] = list(dict.fromkeys(parsed))
        return self.schedule_save()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.restore_saved()
        if self._host_key is None:
            key = asyncssh.generate_private_key(HOST_KEY_ALG)
            self._host_key = key
            self._host_key_text = key.export_private_key("openssh").decode()
        self.prepare_roots()
        self._loop = asyncio.get_running_loop()
        opts = self.options
        self._acceptor = await asyncssh.listen(
            self.host, self.port,
            server_factory=lambda: _SSHServer(self),
            server_host_keys=[self._host_key],
            sftp_factory=lambda chan: _SFTPServer(chan, self),
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            server_version=opts.server_version,
            login_timeout=opts.login_timeout,
            reuse_address=True,
        )
        self.port = self._acceptor.get_port()
        await self.save()

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        conns = list(self.connections)
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
        await self.save_waiting_events()
        await self.ctx.store.flush(self.name)

    # -- description -------------------------------------------------------------------------
    def urls(self) -> dict[str, str]:
        return {"sftp": f"sftp://{self.host}:{self.port}"}

    def credentials(self) -> dict[str, Any]:
        doc = super().credentials()
        for entry in doc["users"]:
            entry["authorized_keys"] = len(self._authorized.get(entry["name"], []))
        return doc

    def extra_description(self) -> dict[str, Any]:
        if self._host_key is None:
            return {"host_key": None}
        return {"host_key": {"algorithm": HOST_KEY_ALG, "blob": self.host_key_blob(),
                             "line": self.host_key_line(),
                             "fingerprint": self.host_key_fingerprint()}}
