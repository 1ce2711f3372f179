"""Where FTP sessions meet the disk: the users (authorizer), the file system pyftpdlib serves,
and STOR targets that replace the file they name only once the upload is complete."""

from __future__ import annotations

import hmac
import itertools
import os
import re
from collections.abc import Iterator
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS

from ...core.state import TMP_MARKER

FULL_PERMS = "elradfmwMT"  # pyftpdlib letters: list, cwd, read, append, delete, mkdir, ...
READ_ONLY_PERMS = "elr"
# "unix.mode=0o644" (Python's oct()) in pyftpdlib's MLSD/MLST facts; RFC 3659 tools read "0644".
_PY_OCTAL_MODE = re.compile(rb"(^|;)unix\.mode=0o([0-7]+)(?=;)", re.IGNORECASE)


class Authorizer(DummyAuthorizer):
    """Users from the scenario; passwords compared in constant time."""

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        entry = self.user_table.get(username)
        expected = entry["pwd"] if entry else ""
        if not (hmac.compare_digest(expected.encode(), password.encode()) and entry):
            raise AuthenticationFailed("Authentication failed.")


_TMP_IDS = itertools.count(1)


def discard(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class ReplacingFile:
    """A STOR target, written under a temporary name in the same folder. ``commit()`` (the
    transfer completed) moves it over the target; any other close (a reset, ABOR, a cut, an
    over-limit refusal, the session or the server gone) removes it. So the target only ever
    changes to a complete upload: a previous file stays exactly as it was, and the record that
    lists it stays true. A farm killed mid-transfer leaves the temporary file, swept at the
    next start (``TMP_MARKER``)."""

    def __init__(self, target: str) -> None:
        self.name = target  # what pyftpdlib and the upload record see
        # Through a symlink (one inside the root): replace what it points at, as writing
        # through it did, not the link itself.
        self._dest = os.path.realpath(target)
        head, tail = os.path.split(self._dest)
        self.tmp = os.path.join(head, f".{tail}{TMP_MARKER}ftp-{os.getpid()}-{next(_TMP_IDS)}")
        self._fh = open(self.tmp, "wb")

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, *args: int) -> int:
        return self._fh.seek(*args)

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def commit(self) -> None:
        """The transfer completed: the upload takes the target's place (atomically)."""
        self._fh.close()
        try:
            os.replace(self.tmp, self._dest)
        except OSError:
            discard(self.tmp)
            raise

    def close(self) -> None:
        """Closed without ``commit()``: the upload did not complete and nothing of it is kept."""
        if self._fh.closed:
            return
        self._fh.close()
        discard(self.tmp)


class FarmFS(AbstractedFS):
    """pyftpdlib's filesystem, with STOR (mode ``wb``) going through ``ReplacingFile``;
    APPE and REST keep writing in place, since they extend what is there."""

    def open(self, filename: str, mode: str) -> Any:
        if mode == "wb":
            return ReplacingFile(filename)
        return super().open(filename, mode)

    def format_mlsx(self, basedir: str, listing: list[str], perms: str, facts: list[str],
                    ignore_err: bool = True) -> Iterator[bytes]:
        # MLSD/MLST: pyftpdlib writes unix.mode with Python's oct() ("0o644"); RFC 3659
        # clients (lftp) parse "0644", and read "0o644" as mode 0 ("----------"). Only the
        # facts are touched, never the name after them.
        for line in super().format_mlsx(basedir, listing, perms, facts, ignore_err):
            facts_part, sep, name = line.partition(b" ")
            yield _PY_OCTAL_MODE.sub(
                lambda m: m.group(1) + b"unix.mode=%04o" % int(m.group(2), 8),
                facts_part) + sep + name
