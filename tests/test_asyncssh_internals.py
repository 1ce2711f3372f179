"""The private asyncssh names the SFTP server relies on (``emulators/servers/asyncssh_internals.py``)
are still there and still shaped as relied on: this fails when an asyncssh release renames or
changes one of them. Also: no module but the internals module uses a private asyncssh name."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import asyncssh
import asyncssh.sftp

from emulators.servers import asyncssh_internals as internals
from tests import internals_walk
from tests.internals_walk import PACKAGE

INTERNALS = PACKAGE / "servers" / "asyncssh_internals.py"


def test_the_sftp_server_handler_and_its_version_extensions() -> None:
    handler = asyncssh.sftp.SFTPServerHandler
    extensions = handler._extensions
    assert isinstance(extensions, list) and extensions
    assert all(isinstance(name, bytes) and isinstance(data, bytes) for name, data in extensions)
    # What the farm relies on: the VERSION reply's extensions come from this list, and the
    # vendor-id naming AsyncSSH is gone from it once the internals module is imported.
    names = [name for name, _ in extensions]
    assert b"vendor-id" not in names and b"posix-rename@openssh.com" in names
    assert "self._extensions" in inspect.getsource(handler)


def test_the_close_request_handler_is_wrapped() -> None:
    table = asyncssh.sftp.SFTPServerHandler._packet_handlers
    assert isinstance(table, dict)
    wrapped = table[asyncssh.sftp.FXP_CLOSE]
    assert internals.CLIENT_CLOSES_KNOWN is True
    assert getattr(wrapped, "marks_client_close", False)
    # The wrapped handler is asyncssh's own close request handler: (self, packet), a coroutine.
    original = asyncssh.sftp.SFTPServerHandler._process_close
    assert inspect.iscoroutinefunction(original)
    assert list(inspect.signature(original).parameters) == ["self", "packet"]
    assert internals.mark_client_closes() is True  # idempotent: not wrapped twice
    assert table[asyncssh.sftp.FXP_CLOSE] is wrapped
    assert internals.client_close_running() is False  # outside a close request


# --- and nothing else touches asyncssh's private names ----------------------------------------

CLASSES = (asyncssh.sftp.SFTPServerHandler, asyncssh.SFTPServer, asyncssh.SSHServer,
           asyncssh.SSHServerConnection, asyncssh.SSHServerChannel, asyncssh.SFTPAttrs)


def private_names(classes: tuple[type, ...]) -> set[str]:
    """The single-underscore names asyncssh's classes in ``classes``' ancestry define or set."""
    return internals_walk.private_names(classes, "asyncssh")


ALL_PRIVATE = private_names(CLASSES)


def private_uses(path: Path) -> list[str]:
    """Where ``path`` (a module that imports asyncssh) reaches into it: a private asyncssh name
    as an attribute (on ``self`` only in a class deriving from asyncssh's), a method such a
    class defines, or a string (``getattr``), and ``asyncssh.sftp``, the undocumented module
    the public classes come from."""
    text = path.read_text()
    if not re.search(r"^\s*(from|import) asyncssh", text, re.MULTILINE):
        return []

    def check(node: ast.AST, inherited: set[str], uses: internals_walk.Uses) -> None:
        if isinstance(node, ast.Attribute):
            base = ast.unparse(node.value)
            mine = base in ("self", "cls", "super()")
            if node.attr in (inherited if mine else ALL_PRIVATE) \
                    or ast.unparse(node) == "asyncssh.sftp":
                uses.add(node, ast.unparse(node))
        elif isinstance(node, ast.Constant) and node.value in ALL_PRIVATE:
            uses.add(node, f"string {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and not node.level \
                and (node.module or "").startswith("asyncssh"):
            if node.module != "asyncssh" or any(a.name.startswith("_") for a in node.names):
                uses.add(node, f"from {node.module} import")

    return internals_walk.walk_classes(path, text, lambda cls: private_names((cls,)), check)


def test_the_walk_finds_private_names() -> None:
    # The check below must not pass because the walk saw nothing.
    assert {"_extensions", "_packet_handlers"} <= ALL_PRIVATE
    internals_walk.assert_found(private_uses(INTERNALS), (
        "handler._extensions", "string '_extensions'", "string '_packet_handlers'",
        "asyncssh.sftp"))


def test_no_module_but_the_internals_uses_a_private_asyncssh_name() -> None:
    assert asyncssh.__version__  # the names below are those of the installed release
    assert internals_walk.uses_outside(INTERNALS, private_uses) == []
