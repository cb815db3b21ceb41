"""The package layout: no import cycle between hkgen's modules, and imports only go down the layers.

Every `import`/`from … import` of an hkgen module counts, at module level and inside functions
(a lazy import is still a dependency; it only moves the cost). The layers, lowest first, are the
ones docs/architecture.md draws; a module may import its own layer and the ones below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "generator" / "hkgen"

# Lowest first. A module belongs to the longest prefix that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hkgen.core",),
    ("hkgen.config",),
    ("hkgen.analysis",),
    ("hkgen.areas.parts",),  # stage 4's shared types: what render and verify read
    ("hkgen.render",),  # the Jinja environment (areas render values templates with it too)
    ("hkgen.areas",),
    ("hkgen.analysis.alerting",),  # `hkgen plan`'s alert section reads the rules the alerts area renders
    ("hkgen.validation",),  # asks the areas whether the seeds can be built (validate before render)
    ("hkgen.verify",),
    ("hkgen.output",),
    ("hkgen.pipeline",),
    ("hkgen.ops",),
    ("hkgen.commands",),
    ("hkgen.cli", "hkgen.__main__"),
)
ROOT_MODULES = {"hkgen"}  # the package itself: __version__ only


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(name: str) -> int:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                candidate = (len(prefix), index)
                best = candidate if best is None or candidate > best else best
    if best is None:
        raise AssertionError(f"{name} belongs to no layer: add its package to LAYERS and docs/architecture.md")
    return best[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_imports_only_go_down_the_layers() -> None:
    upward = [
        f"{name} (layer {_layer(name)}) imports {dep} (layer {_layer(dep)})"
        for name, deps in sorted(_graph().items()) if name not in ROOT_MODULES
        for dep in sorted(deps) if dep not in ROOT_MODULES and _layer(dep) > _layer(name)
    ]
    assert upward == []


def test_no_module_is_over_800_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text("utf-8").splitlines())) > 800}
    assert long == {}


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_the_layer_rule_sees_an_upward_import(tmp_path: Path) -> None:
    # A lower layer importing a higher one, written the way hkgen's modules import each other.
    lower = tmp_path / "lower.py"
    lower.write_text("from ..commands import render\n")
    modules = {"hkgen.core.lower": lower, "hkgen.commands.render": tmp_path / "render.py",
               "hkgen.commands": tmp_path / "__init__.py"}
    (deps,) = [_imports("hkgen.core.lower", lower, modules)]
    assert deps == {"hkgen.commands.render"}
    assert _layer("hkgen.commands.render") > _layer("hkgen.core.lower")
