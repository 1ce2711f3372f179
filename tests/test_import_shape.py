"""The package's shape, read from the source (an ``ast`` walk of every module): the platform
(``emulators/core``, ``emulators/control``, ``emulators/farm.py``, ``emulators/shards``)
imports no kind's package; a kind stands on ``core`` (and the pure ``pki`` / ``keypool``)
alone, never on the control plane, and of another kind it uses only the public face (its
member class and the methods it offers, its error table, its topic table); no modules import
each other in a circle at run time (``if TYPE_CHECKING:`` imports, for types only, do not
count). And the tests' own shape: no test folder is a package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from emulators.kinds import KINDS

PACKAGE = Path(__file__).resolve().parents[1] / "emulators"
# Every package a scenario kind lives in (kinds.py is the one list of kinds).
KIND_PACKAGES = tuple(sorted({t.partition(":")[0].split(".")[1] for t in KINDS.values()}))
PLATFORM = ("emulators.core", "emulators.control", "emulators.farm", "emulators.shards")
# What a kind may import of the package besides its own: shared machinery and pure X.509.
KIND_FOUNDATION = ("emulators.core", "emulators.pki", "emulators.keypool")
# Another kind's public face. ``emulator``: the member class, whose methods are what a kind
# may ask of a member of another kind (iotda_device registers with its cloud this way);
# ``exceptions``: the vendor's error table (data only); ``topics``: the vendor's topic names,
# the wire a device and its cloud share. Everything else (models, access, urls, responses,
# wire, control, options) is the other kind's own business and may change under it.
PUBLIC_MODULES = ("emulator", "exceptions", "topics")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    """The module ``name`` is, or the package module holding it (an imported attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def runtime_imports(module: str) -> set[str]:
    """The project modules ``module`` imports at run time, anywhere in its code."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("emulators"):
                    found.add(_resolve(alias.name) or alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix.startswith("emulators"):
                for alias in node.names:
                    target = _resolve(f"{prefix}.{alias.name}")
                    if target:
                        found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


GRAPH = {m: runtime_imports(m) for m in MODULES}


def test_the_walk_sees_imports() -> None:
    # The check below must not pass because the walk saw nothing.
    assert "emulators.core.member" in GRAPH["emulators.farm"]
    assert "emulators.instar.urls" in GRAPH["emulators.instar.emulator"]
    assert "emulators.core.control_routes" in GRAPH["emulators.instar.control"]


def _in(module: str, packages: tuple[str, ...] | str) -> bool:
    """``module`` is one of ``packages`` or inside one (``emulators.iotda`` is not inside
    ``emulators.iotda_device``)."""
    packages = (packages,) if isinstance(packages, str) else packages
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_kind_list_is_the_packages_with_a_member() -> None:
    # The checks below must not miss a kind because the list above went stale.
    assert {"acti", "instar", "enos", "iotda", "iotda_device", "servers"} <= set(KIND_PACKAGES)


def test_the_platform_imports_no_kind_package() -> None:
    kinds = tuple(f"emulators.{k}" for k in KIND_PACKAGES)
    offending = sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                       if _in(m, PLATFORM)
                       for t in targets if _in(t, kinds))
    assert offending == []


def _kind_of(module: str) -> str | None:
    return next((k for k in KIND_PACKAGES if _in(module, f"emulators.{k}")), None)


def test_a_kind_stands_on_core_alone() -> None:
    # Never control/ (the control plane is loaded by whoever serves it, not by a kind), never
    # the farm, the scenario, the shards or the command line.
    offending = sorted(
        f"{m} imports {t}" for m, targets in GRAPH.items() if _kind_of(m)
        for t in targets
        if not _kind_of(t) and not _in(t, KIND_FOUNDATION))
    assert offending == []


def test_a_kind_uses_only_another_kinds_public_modules() -> None:
    offending = sorted(
        f"{m} imports {t}" for m, targets in GRAPH.items() if _kind_of(m)
        for t in targets
        if (other := _kind_of(t)) not in (None, _kind_of(m))
        and t not in {f"emulators.{other}.{name}" for name in PUBLIC_MODULES})
    assert offending == []


def _class_methods(module: str, name: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and not n.name.startswith("_")}


def _other_kinds_classes(module: str) -> dict[str, str]:
    """The classes ``module`` imports from another kind's ``emulator`` module, for types
    too: class name -> that module."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            target = (".".join(module.split(".")[:-node.level] + [node.module]) if node.level
                      else node.module)
            other = _kind_of(target)
            if other not in (None, _kind_of(module)) and target.endswith(".emulator"):
                found.update({alias.name: target for alias in node.names})
    return found


def test_a_member_of_another_kind_is_asked_only_through_its_methods() -> None:
    # An argument typed as another kind's member class (``cloud: IotdaService``) is used only
    # through the public methods that class defines itself: not its stores, options or
    # listeners, which are that kind's internals.
    offending: list[str] = []
    seen = 0
    for module in MODULES:
        if not _kind_of(module):
            continue
        classes = _other_kinds_classes(module)
        if not classes:
            continue
        for func in ast.walk(ast.parse(MODULES[module].read_text())):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            typed = {a.arg: ann.id for a in func.args.args
                     if isinstance(ann := a.annotation, ast.Name) and ann.id in classes}
            for node in ast.walk(func):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in typed):
                    seen += 1
                    cls = typed[node.value.id]
                    if node.attr not in _class_methods(classes[cls], cls):
                        offending.append(f"{module}.{func.name}: {node.value.id}.{node.attr}")
    assert seen, "the walk found no use of another kind's member"
    assert offending == []


def test_importing_a_kind_loads_no_control_plane() -> None:
    # What the walk above reads from the source, seen in a real interpreter: the kinds'
    # modules (their control routes included) load without emulators.control.
    modules = sorted(m for m in MODULES if _kind_of(m))
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('emulators.control')))\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=PACKAGE.parent, check=True).stdout
    assert out.strip() == "[]"


def _cycles() -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    return found


def test_no_modules_import_each_other_at_run_time() -> None:
    assert _cycles() == []


def test_only_the_tests_folder_itself_has_an_init_file() -> None:
    # One policy for every folder under tests/ (pyproject.toml says why: importlib mode, and a
    # test dependency's own top-level ``tests`` package that only tests/__init__.py outranks).
    tests = Path(__file__).resolve().parent
    assert sorted(str(p.relative_to(tests)) for p in tests.rglob("__init__.py")) == [
        "__init__.py"]
