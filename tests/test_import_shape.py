"""The package's shape, read from the source (an ``ast`` walk of every module): the platform
(``emulators/core``, ``emulators/control``, ``emulators/farm.py``) imports no kind's package,
and no modules import each other in a circle at run time (``if TYPE_CHECKING:`` imports, for
types only, do not count). And the tests' own shape: no test folder is a package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emulators"
KIND_PACKAGES = ("acti", "instar", "enos", "iotda", "servers")
PLATFORM = ("emulators.core", "emulators.control", "emulators.farm")


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


def test_the_platform_imports_no_kind_package() -> None:
    kinds = tuple(f"emulators.{k}" for k in KIND_PACKAGES)
    offending = sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                       if m.startswith(PLATFORM)
                       for t in targets if t.startswith(kinds))
    assert offending == []


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
