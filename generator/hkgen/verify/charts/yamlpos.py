"""Reading rendered YAML the way Kubernetes' Go YAML does, keeping 1-based positions of every value
(`Where`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import yaml

from ...config.load import PathKey, json_path
from ...core.errors import Problem

_MAX_DEPTH = 200

# --------------------------------------------------------------------------------------------
# Reading YAML with positions

@cache
def _loader() -> Any:
    """A PyYAML C loader that reads like Kubernetes' Go YAML: no timestamp or `=` value types."""
    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    skip = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
    resolvers = {k: [(t, r) for t, r in v if t not in skip] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return type("KubeLoader", (base,), {"yaml_implicit_resolvers": resolvers})


@cache
def _constructor() -> Any:
    return yaml.SafeLoader("")


def _compose_all(text: str) -> list[Any]:
    return [n for n in yaml.compose_all(text, Loader=_loader()) if n is not None]


def _load_all(text: str) -> list[Any]:
    return list(_parsed(text))


# Helm's own document separator (pkg/releaseutil SplitManifests): a template that trims the
# newline after `---` renders `---# comment`, which a YAML parser reads as one broken document.
_HELM_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


def _helm_documents(text: str) -> list[Any]:
    """Documents of Helm-rendered text, split the way Helm splits them."""
    return [d for part in _HELM_SEPARATOR.split(text) if part.strip() for d in _load_all(part)]


@lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[Any, ...]:
    """Documents of a text, parsed once: renders repeat (CRDs are megabytes). Never mutated."""
    return tuple(yaml.load_all(text, Loader=_loader()))


@dataclass(frozen=True)
class Where:
    """Where something is written: file label, 1-based line and column, JSON path in that file."""

    file: str
    line: int
    col: int
    path: str

    def problem(self, message: str, hint: str = "", *, warning: bool = False) -> Problem:
        """A problem located here."""
        return Problem(self.file, self.line, self.col, self.path, message, hint, "warning" if warning else "error")


class _YamlLimit(Exception):
    """A document too deep or too large (alias expansion) to take apart."""


# What reading an untrusted YAML text can raise (PyYAML is cheap to import; this module is only
# imported by `hkgen verify-charts` and the tests).
_YAML_ERRORS = (yaml.YAMLError, _YamlLimit, RecursionError)


@dataclass
class _Positions:
    """Maps a node's marks to file positions (identity for a file, shifted for embedded YAML)."""

    file: str
    prefix: str  # JSON path of the embedded string, '' for a whole file
    line0: int = 0
    indent: int = 0

    def at(self, mark: Any, path: PathKey) -> Where:
        line, col = mark.line, mark.column
        if self.prefix:
            return Where(self.file, self.line0 + line + 1, self.indent + col + 1, self.prefix + json_path(path)[1:])
        return Where(self.file, line + 1, col + 1, json_path(path))


def _plain(node: Any, budget: list[int], depth: int = 0) -> Any:
    """Plain data of a composed node (aliases expanded within a budget)."""
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        raise _YamlLimit("document too deep or too large")
    if isinstance(node, yaml.MappingNode):
        _constructor().flatten_mapping(node)
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = _plain(k, budget, depth + 1)
            hashable = isinstance(key, str | int | float | bool) or key is None
            out[key if hashable else str(key)] = _plain(v, budget, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v, budget, depth + 1) for v in node.value]
    # Scalars straight from the constructor table: construct_object() would remember every node.
    constructor = _constructor()
    build = constructor.yaml_constructors.get(node.tag)
    return build(constructor, node) if build else str(node.value)


def _positions(node: Any, at: _Positions, doc_path: PathKey, rel: PathKey = ()) -> dict[PathKey, Where]:
    """`rel` path (inside the node) -> where that key or item is written; `doc_path` is the node's
    own path in its document, used for the JSON path in messages.
    """
    out: dict[PathKey, Where] = {rel: at.at(node.start_mark, doc_path)}
    stack: list[tuple[Any, PathKey, PathKey]] = [(node, rel, doc_path)]
    seen: set[int] = set()
    while stack:
        current, here, full = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                key = str(k.value)
                out[(*here, key)] = at.at(k.start_mark, (*full, key))
                stack.append((v, (*here, key), (*full, key)))
        elif isinstance(current, yaml.SequenceNode):
            for i, v in enumerate(current.value):
                out[(*here, i)] = at.at(v.start_mark, (*full, i))
                stack.append((v, (*here, i), (*full, i)))
    return out


def _child(node: Any, *path: str | int) -> Any:
    """The composed node at `path` below `node`, or None."""
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
        if node is None:
            return None
    return node
