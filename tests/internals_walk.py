"""What the three third-party internals tests (aiohttp, asyncssh, pyftpdlib) share to prove that
no module but the package's one internals module uses one of its private names: the names a
package's classes define or set, the walk over a module's syntax tree that knows which class a
node stands in, and the sweep over every module of ``emulators/``. What counts as a use of a
private name differs per package and stays in each test."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parents[1] / "emulators"


def private_names(classes: Iterable[type], package: str, *, listed_in: tuple[str, ...] = (),
                  modules: Iterable[ModuleType] = ()) -> set[str]:
    """The single-underscore names the classes of ``package`` in the ancestry of ``classes``
    define or set on ``self`` (and those their class attributes ``listed_in`` name), and the
    ones ``modules`` define."""
    found: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            if not klass.__module__.startswith(package):
                continue
            found |= set(vars(klass))
            for attribute in listed_in:
                found |= set(getattr(klass, attribute, ()))
            with contextlib.suppress(OSError, TypeError):
                found |= set(re.findall(r"self\.(_\w+)", inspect.getsource(klass)))
    for module in modules:
        found |= set(vars(module))
    return {n for n in found if n.startswith("_") and not n.startswith("__")}


class Uses(list[str]):
    """The uses found in one module, each as ``emulators/…/module.py:line what``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def add(self, node: ast.AST, what: str) -> None:
        self.append(f"{self.path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')} "
                    f"{what}")


def module_of(path: Path) -> ModuleType:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))


def walk_classes(path: Path, text: str, inherited_of: Callable[[type], set[str]],
                 check: Callable[[ast.AST, set[str], Uses], None]) -> Uses:
    """Walk ``text`` (the module at ``path``) knowing, at each node, the private names the
    class around it inherits (``inherited_of`` the class; empty outside a class): a method
    defined under one of them is an override; every other node goes to ``check``."""
    module = module_of(path)
    uses = Uses(path)

    def visit(node: ast.AST, inherited: set[str]) -> None:
        if isinstance(node, ast.ClassDef):
            cls = getattr(module, node.name, None)
            inherited = inherited_of(cls) if isinstance(cls, type) else set()
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in inherited:
            uses.add(node, f"overrides {node.name}")
        else:
            check(node, inherited, uses)
        for child in ast.iter_child_nodes(node):
            visit(child, inherited)

    visit(ast.parse(text), set())
    return uses


def assert_found(found: list[str], expected: Iterable[str]) -> None:
    """Each of ``expected`` is in one of the uses ``found`` (the walk does see them)."""
    for use in expected:
        assert any(use in line for line in found), use


def uses_outside(internals: Path, private_uses: Callable[[Path], list[str]],
                 skip: tuple[str, ...] = ()) -> list[str]:
    """The uses ``private_uses`` finds in every module of ``emulators/`` but ``internals``
    (and modules named in ``skip``)."""
    return [use for path in sorted(PACKAGE.rglob("*.py"))
            if path != internals and path.name not in skip for use in private_uses(path)]
