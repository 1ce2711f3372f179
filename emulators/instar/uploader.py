"""The camera's upload client: FTP, explicit FTPS (ftplib in a thread) and sFTP (asyncssh).
asyncssh is imported on a camera's first sFTP upload, not with this module: a process of
cameras that never speak SSH does not load it (about 8 MB a process; bench/README.md "Shards").

Every testftp result code comes from the real failure it names; ``classify`` ladders below
are the one place where a library exception becomes a camera code.
"""

from __future__ import annotations

import asyncio
import base64
import ftplib
import functools
import logging
import posixpath
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .models.ftp import MODE_PASV, SSL_FTPS, SSL_SFTP, FtpSettings

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger("emulators.instar.upload")

OK = 0
CANNOT_CONNECT = -1
BAD_CREDENTIALS = -2
BAD_PATH = -3
TIMEOUT = -4
NOT_VERIFIED = -5
BUSY = -6
INTERNAL = -7
UNKNOWN = -8
INCOMPLETE = -9


@dataclass(frozen=True)
class UploadJob:
    settings: FtpSettings
    files: tuple[tuple[str, bytes], ...]
    # Folder below ft_dirname that the camera always creates (the daily folder), or None.
    daily_folder: str | None = None
    trust_pem: str | None = None          # CA certificates an FTPS server may chain to
    trust_system: bool = False            # also the system's CAs
    client_key: asyncssh.SSHKey | None = None
    pinned_hostkey: str | None = None     # base64 SSH key blob, from testftp&sethost=
    connect_timeout: float = 3.0
    io_timeout: float = 3.0
    # Told the local (address, port) of the control connection as soon as it is open, so
    # the farm's journal can tie the server's events to the request that caused them.
    on_connect: Callable[[tuple[str, int]], None] | None = None


@dataclass
class UploadOutcome:
    result: int
    hostkey: str | None = None            # the sFTP server's key blob, when one was seen
    uploaded: list[str] = field(default_factory=list)
    detail: str = ""
    auth: str | None = None               # sFTP: "publickey" or "password"

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "hostkey": self.hostkey, "uploaded": self.uploaded,
                "detail": self.detail, "auth": self.auth}


def folder_parts(dirname: str) -> tuple[bool, list[str]]:
    """(absolute?, components) of ft_dirname; ``.`` and empty parts name the login folder."""
    absolute = dirname.startswith("/")
    return absolute, [p for p in dirname.split("/") if p not in ("", ".")]


async def upload(job: UploadJob) -> UploadOutcome:
    if not job.settings.ft_server:
        # Without a server ftplib would quietly dial localhost.
        return UploadOutcome(CANNOT_CONNECT, detail="no ft_server set")
    try:
        if job.settings.ft_ssl == SSL_SFTP:
            return await _sftp_upload(job)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _ftp_upload, job)
    except Exception as exc:  # noqa: BLE001 - a bug of ours is the camera's "internal error"
        log.exception("upload failed inside the camera")
        return UploadOutcome(INTERNAL, detail=f"internal error: {exc!r}")


# -- FTP and FTPS --------------------------------------------------------------------------

def _tls_context(job: UploadJob) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if job.settings.ft_insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if job.trust_pem:
        ctx.load_verify_locations(cadata=job.trust_pem)
    if job.trust_system:
        ctx.load_default_certs()
    return ctx


def _classify_ftp(phase: str, exc: BaseException) -> int:
    """The camera's code for an exception raised while in ``phase``."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NOT_VERIFIED
    if phase == "connect":
        # Refused, unreachable, closed before the greeting, or a "421 busy" greeting.
        if isinstance(exc, (OSError, EOFError, ftplib.error_temp)) and not isinstance(
                exc, ssl.SSLError):
            return CANNOT_CONNECT
        return UNKNOWN
    if phase == "transfer":
        if isinstance(exc, (OSError, EOFError, ftplib.Error)):
            return INCOMPLETE
        return UNKNOWN
    if phase == "store" and str(exc)[:3] in ("452", "552"):
        return INCOMPLETE  # no room for the file: a storage failure, not a bad path
    if isinstance(exc, ftplib.error_perm):
        if phase == "login":
            return BAD_CREDENTIALS if str(exc).startswith("530") else UNKNOWN
        if phase in ("folder", "store"):
            return BAD_PATH
    if isinstance(exc, (OSError, EOFError)) and phase in ("login", "folder", "store"):
        return INCOMPLETE if phase == "store" else UNKNOWN
    return UNKNOWN


class _Announce:
    """Mixed into ftplib's classes: reports the connection's local address once it is open,
    before the greeting is read (ftplib offers no hook between the two)."""

    on_connect: Callable[[tuple[str, int]], None] | None = None
    sock: Any

    def getresp(self) -> str:
        if self.on_connect is not None:
            hook, self.on_connect = self.on_connect, None
            hook(self.sock.getsockname()[:2])
        return super().getresp()  # type: ignore[misc]


class _FTP(_Announce, ftplib.FTP):
    pass


class _FTP_TLS(_Announce, ftplib.FTP_TLS):
    pass


def _ftp_upload(job: UploadJob) -> UploadOutcome:
    s = job.settings
    ftp: _FTP | _FTP_TLS
    if s.ft_ssl == SSL_FTPS:
        ftp = _FTP_TLS(context=_tls_context(job), timeout=job.connect_timeout)
    else:
        ftp = _FTP(timeout=job.connect_timeout)
    ftp.on_connect = job.on_connect
    phase = "connect"
    uploaded: list[str] = []
    try:
        ftp.connect(s.ft_server, s.ft_port)
        if isinstance(ftp, ftplib.FTP_TLS):
            phase = "tls"
            ftp.auth()
        # The connect timeout covered the greeting; every later reply gets the I/O timeout.
        ftp.timeout = job.io_timeout
        assert ftp.sock is not None
        ftp.sock.settimeout(job.io_timeout)
        phase = "login"
        ftp.login(s.ft_username, s.ft_password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.set_pasv(s.ft_mode == MODE_PASV)
        phase = "folder"
        absolute, parts = folder_parts(s.ft_dirname)
        if absolute:
            ftp.cwd("/")
        for part in parts:
            _ftp_enter(ftp, part, create=bool(s.ft_autocreatedir))
        if job.daily_folder:
            _ftp_enter(ftp, job.daily_folder, create=True)
        where = ftp.pwd()
        for name, data in job.files:
            phase = "store"
            conn = ftp.transfercmd(f"STOR {name}")
            phase = "transfer"
            with conn:
                conn.sendall(data)
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
            ftp.voidresp()
            uploaded.append(posixpath.join(where, name))
        phase = "quit"
        try:
            ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            pass  # the files are stored; a rude goodbye does not fail the upload
        return UploadOutcome(OK, uploaded=uploaded)
    except Exception as exc:  # noqa: BLE001 - mapped to the camera's codes
        code = _classify_ftp(phase, exc)
        if code == UNKNOWN and not isinstance(exc, (OSError, EOFError, ftplib.Error)):
            raise
        return UploadOutcome(code, uploaded=uploaded, detail=f"{phase}: {exc!r}")
    finally:
        ftp.close()


def _ftp_enter(ftp: ftplib.FTP, part: str, *, create: bool) -> None:
    try:
        ftp.cwd(part)
    except ftplib.error_perm:
        if not create:
            raise
        ftp.mkd(part)
        ftp.cwd(part)


# -- sFTP ----------------------------------------------------------------------------------

def key_blob(key: asyncssh.SSHKey) -> str:
    """The base64 key blob, as testftp answers it and sethost takes it."""
    return base64.b64encode(key.public_data).decode()


_KEY_FIELDS = {  # what follows the algorithm name in a public key blob (RFC 4253, 5656, 8709)
    "ssh-ed25519": ("string",),
    "ssh-rsa": ("string", "string"),
    "ssh-dss": ("string", "string", "string", "string"),
    "ecdsa-sha2-nistp256": ("string", "string"),
    "ecdsa-sha2-nistp384": ("string", "string"),
    "ecdsa-sha2-nistp521": ("string", "string"),
}


def parse_key_blob(text: str) -> str:
    """Check that ``text`` is a base64 SSH public key blob and return its algorithm.

    The check is structural, as a camera's known_hosts entry would be: the seed's own
    example key has the right layout but is not a valid Ed25519 point.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("not base64") from None
    fields: list[bytes] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ValueError("truncated key blob")
        size = int.from_bytes(raw[pos:pos + 4], "big")
        fields.append(raw[pos + 4:pos + 4 + size])
        pos += 4 + size
        if pos > len(raw):
            raise ValueError("truncated key blob")
    algorithm = fields[0].decode("ascii", "replace") if fields else ""
    layout = _KEY_FIELDS.get(algorithm)
    if layout is None or len(fields) != 1 + len(layout):
        raise ValueError(f"not an SSH public key blob ({algorithm or 'empty'})")
    if algorithm == "ssh-ed25519" and len(fields[1]) != 32:
        raise ValueError("an Ed25519 key is 32 bytes")
    return algorithm


@functools.cache
def _host_key_check() -> type[Any]:
    """``_HostKeyCheck``, made on the first sFTP upload (it subclasses asyncssh's client)."""
    import asyncssh

    class HostKeyCheck(_HostKeyCheck, asyncssh.SSHClient):
        pass

    return HostKeyCheck


class _HostKeyCheck:
    """Records the server's key and accepts it when pinned, or when not verifying at all (an
    ``asyncssh.SSHClient`` through ``_host_key_check``)."""

    def __init__(self, pinned: str | None, insecure: bool, password: str,
                 on_connect: Callable[[tuple[str, int]], None] | None = None) -> None:
        self.on_connect = on_connect
        self.pinned = pinned
        self.insecure = insecure
        self.seen: str | None = None
        self.password = password
        self.password_sent = False

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        local = conn.get_extra_info("sockname")
        if self.on_connect is not None and local:
            self.on_connect(tuple(local[:2]))

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.seen = key_blob(key)
        return self.insecure or (self.pinned is not None and self.seen == self.pinned)

    def give_password(self) -> str:
        # asyncssh asks only once the key was refused: so a login without it used the key.
        self.password_sent = True
        return self.password

    @property
    def auth(self) -> str | None:
        return "password" if self.password_sent else "publickey"


def _classify_sftp(phase: str, exc: BaseException) -> int:
    import asyncssh

    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return NOT_VERIFIED
    if isinstance(exc, asyncssh.PermissionDenied):
        return BAD_CREDENTIALS
    if phase == "connect":
        if isinstance(exc, (OSError, asyncssh.ConnectionLost)):
            return CANNOT_CONNECT
        return UNKNOWN
    if phase == "transfer":
        if isinstance(exc, (OSError, asyncssh.Error)):
            return INCOMPLETE
        return UNKNOWN
    if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied,
                        asyncssh.SFTPNoSuchPath, asyncssh.SFTPNotADirectory,
                        asyncssh.SFTPFailure)) and phase in ("folder", "store"):
        return BAD_PATH
    if isinstance(exc, (asyncssh.ConnectionLost, ConnectionError)):
        return INCOMPLETE if phase == "store" else UNKNOWN
    return UNKNOWN


async def _sftp_upload(job: UploadJob) -> UploadOutcome:
    import asyncssh

    s = job.settings
    check = _host_key_check()(job.pinned_hostkey, bool(s.ft_insecure), s.ft_password,
                          job.on_connect)
    phase = "connect"
    uploaded: list[str] = []
    conn: asyncssh.SSHClientConnection | None = None
    try:
        conn = await asyncio.wait_for(asyncssh.connect(
            s.ft_server, s.ft_port, username=s.ft_username, password=check.give_password,
            # None, not []: an empty list would make asyncssh load ~/.ssh keys.
            client_keys=[job.client_key] if job.client_key is not None else None,
            known_hosts=([], [], []), client_factory=lambda: check,
            agent_path=None, config=None, preferred_auth="publickey,password",
            connect_timeout=job.connect_timeout), job.connect_timeout + job.io_timeout)
        phase = "folder"
        sftp = await asyncio.wait_for(conn.start_sftp_client(), job.io_timeout)
        absolute, parts = folder_parts(s.ft_dirname)
        where = "/" if absolute else "."
        steps = [(p, bool(s.ft_autocreatedir)) for p in parts]
        if job.daily_folder:
            steps.append((job.daily_folder, True))
        for part, create in steps:
            where = posixpath.join(where, part)
            if not await asyncio.wait_for(sftp.isdir(where), job.io_timeout):
                if not create:
                    raise asyncssh.SFTPNoSuchFile(f"{where} does not exist")
                await asyncio.wait_for(sftp.mkdir(where), job.io_timeout)
        for name, data in job.files:
            phase = "store"
            path = posixpath.join(where, name)
            handle = await asyncio.wait_for(sftp.open(path, "wb"), job.io_timeout)
            phase = "transfer"
            try:
                await asyncio.wait_for(handle.write(data), job.io_timeout)
            finally:
                await asyncio.wait_for(handle.close(), job.io_timeout)
            uploaded.append(posixpath.normpath(path))
        sftp.exit()
        return UploadOutcome(OK, hostkey=check.seen, uploaded=uploaded, auth=check.auth)
    except Exception as exc:  # noqa: BLE001 - mapped to the camera's codes
        code = _classify_sftp(phase, exc)
        if code == UNKNOWN and not isinstance(exc, (OSError, asyncssh.Error)):
            raise
        return UploadOutcome(code, hostkey=check.seen, uploaded=uploaded,
                             detail=f"{phase}: {exc!r}",
                             auth=check.auth if phase != "connect" else None)
    finally:
        if conn is not None:
            conn.close()
            await conn.wait_closed()
