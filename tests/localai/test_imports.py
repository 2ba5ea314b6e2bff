"""The runtime's layers: no import cycle among localai's modules; converters and the app only from the CLI
(the top layer, which dispatches to them); torch and transformers never at import time (only
`eval --reference CHECKPOINT` loads them, from the dev extra).

Read from the source (every `import`, in functions and under TYPE_CHECKING too, since each is a dependency
a reader has to follow), not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import localai

ROOT = Path(localai.__file__).parent
ABOVE = ("converters", "tui")  # the layers above the runtime: only localai.cli dispatches to them
HEAVY = ("torch", "transformers")  # the reference model's libraries: imported where used, never at load


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, nodes: list[ast.stmt] | None = None) -> set[str]:
    """Every module name `path` imports (absolute names; localai uses no relative imports); `from pkg import
    mod` depends on pkg.mod, `from mod import name` on mod. `nodes`: only these statements, not all."""
    modules, names = _modules(), set()
    for node in nodes if nodes is not None else ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(modules)
            names |= submodules if len(submodules) == len(node.names) else {node.module, *submodules}
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {dep for dep in _imports(path) if dep in modules and dep != name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_localai_modules():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_the_layers_above():
    offenders = {name: sorted(d for d in _imports(path) if d.split(".")[0] in ABOVE)
                 for name, path in _modules().items() if not name.startswith("localai.cli")}
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_torch_and_transformers_are_never_imported_at_load():
    offenders = {name: sorted(d for d in _imports(path, ast.parse(path.read_text()).body) if d.split(".")[0] in HEAVY)
                 for name, path in _modules().items()}
    assert {name: deps for name, deps in offenders.items() if deps} == {}
