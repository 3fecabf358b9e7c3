"""The package's source files a script runs, found by following its imports, their fingerprint
(each rule's ``code`` param), and the package's import graph (which must have no cycles: tests
check it).

Snakemake reruns a job when one of its params changed since the job last ran, so each rule has
as a param the fingerprint of the files of this package that its workflow script imports,
directly or not (lazy imports inside functions included, and every package ``__init__`` on the
way): a change to the code the job runs reruns it, and a change elsewhere does not. Computed
from the code itself, the lists cannot drift from it; one short param per rule, they do not fill
Snakemake's log with pages of inputs.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Iterable

PACKAGE = "scratchlm"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of module ``name`` of this package (``scratchlm.a.b``), or None for others."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, name: str | None = None, *, lazy: bool = False) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from a import b`` gives a and a.b).

    Imports inside a package's ``__getattr__`` (lazy exports, which run only when the name is
    used) are left out, or, with ``lazy``, are all that is returned.
    """
    found: set[str] = set()
    package = (name or "").rsplit(".", 1)[0] if name and path.name != "__init__.py" else (name or "")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy_nodes = {id(node) for function in ast.walk(tree)
                  if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
                  for node in ast.walk(function)}
    for node in ast.walk(tree):
        if (id(node) in lazy_nodes) != lazy:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def code_inputs(script: str | Path, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Sorted paths of this package's files that ``script`` runs, following imports transitively.

    >>> any(path.endswith("training/loop.py") for path in code_inputs(PACKAGE_DIR / "training" / "loop.py"))
    True
    """
    todo: list[tuple[str, Path]] = [("", Path(script))]
    files: set[Path] = set()
    seen: set[str] = set()
    while todo:
        name, path = todo.pop()
        files.add(path)
        for module in sorted(_with_parents(imported_modules(path, name or None))):
            if module in seen:
                continue
            seen.add(module)
            found = module_file(module, package_dir)
            if found is not None:
                todo.append((module, found))
            elif (parent := module_file(module.rsplit(".", 1)[0], package_dir)) and parent.name == "__init__.py":
                # `from package import Name` of a lazy export: the modules its __getattr__ imports
                todo.extend((lazy, file) for lazy in imported_modules(parent, module.rsplit(".", 1)[0], lazy=True)
                            if (file := module_file(lazy, package_dir)) is not None)
    return sorted(str(path) for path in files if package_dir in path.parents)


def code_fingerprint(script: str | Path, package_dir: Path = PACKAGE_DIR) -> str:
    """``script`` and the package files it runs (:func:`code_inputs`), summed up in one short line:
    their count and a hash of their names and contents.

    >>> code_fingerprint(PACKAGE_DIR / "layout.py")[:15]
    'code of 3 files'
    """
    digest = hashlib.sha256()
    files = dict.fromkeys([Path(script).resolve(), *map(Path, code_inputs(script, package_dir))])
    for path in files:
        name = path.relative_to(package_dir) if package_dir in path.parents else path.name
        digest.update(f"{name}\0".encode() + path.read_bytes() + b"\0")
    return f"code of {len(files)} files, sha256 {digest.hexdigest()[:16]}"


def _with_parents(modules: Iterable[str]) -> set[str]:
    """The modules and every package above them (importing a.b.c runs a and a.b first)."""
    names = set()
    for module in modules:
        parts = module.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (lazy ones in functions too; ``from a import b``
    counts as importing ``a.b`` when that is a module, else ``a``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        imported = imported_modules(path, name) | imported_modules(path, name, lazy=True)
        graph[name] = {module for module in imported if module in modules and module != name
                       and not any(other.startswith(module + ".") for other in imported if other in modules)}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (strongly connected components).

    >>> import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in order:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], order[other])
        if low[node] == order[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            if group:
                cycles.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return cycles
