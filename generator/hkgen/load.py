"""Stage 1, load: read a YAML file into plain Python data plus a map of source positions.

hkgen composes the YAML node graph itself instead of letting a YAML library construct objects,
so it controls every way a file can be hostile: non-UTF-8 bytes, a BOM, tabs, duplicate keys,
unknown or executable tags (`!!python/object`), alias bombs, absurd nesting. Each of those becomes
a located `Problem`; nothing here raises anything but `ConfigError`/`UsageError`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem, UsageError

__all__ = ["Document", "PathKey", "load_file", "load_text", "json_path", "resolve_cluster_file"]

PathKey = tuple[str | int, ...]

MAX_BYTES = 2_000_000
MAX_DEPTH = 40
MAX_NODES = 100_000

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass(frozen=True)
class Document:
    """A loaded file: its data as plain dict/list/str/int/float/bool/None and where each part came from."""

    file: str
    data: Any
    # path -> (line, col) of the value, 1-based
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    # path -> (line, col) of the key that introduces the value (mapping entries only)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """Best source position for `path`: the value (or its key), else the nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: PathKey, message: str, *, hint: str = "", key: bool = False,
                severity: str = "error") -> Problem:
        """A `Problem` located at `path` in this document."""
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, json_path(path), message, hint,
                       "warning" if severity == "warning" else "error")


def json_path(path: PathKey) -> str:
    """`('nodes', 1, 'ip')` -> `$.nodes[1].ip`; odd keys are bracket-quoted."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("-", "_").isidentifier():
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


def resolve_cluster_file(path: Path) -> Path:
    """A cluster folder or file given on the command line -> the cluster.yaml to load."""
    if path.is_dir() and not path.name.endswith((".yaml", ".yml")):
        return path / "cluster.yaml"
    return path


def load_file(path: Path, display: str | None = None) -> Document:
    """Read and load `path`; every problem with the file is raised as a located `ConfigError`."""
    name = display or str(path)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"{name}: no such file")
    if path.is_dir():
        raise ConfigError([Problem(name, 0, 0, "$", "is a directory, expected a YAML file")])
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError([Problem(name, 0, 0, "$", f"cannot read file: {err.strerror}")]) from err
    if len(raw) > MAX_BYTES:
        raise ConfigError([Problem(name, 0, 0, "$", f"file is larger than {MAX_BYTES} bytes")])
    return load_bytes(raw, name)


def load_bytes(raw: bytes, name: str) -> Document:
    """Decode strictly as UTF-8 (no BOM) and load."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError([Problem(name, 1, 1, "$", "file starts with a byte-order mark",
                                   "save the file as UTF-8 without BOM")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError([Problem(name, line, col, "$", f"invalid UTF-8 byte 0x{raw[err.start]:02x}",
                                   "save the file as UTF-8")]) from None
    return load_text(text, name)


def load_text(text: str, name: str) -> Document:
    """Compose `text` (one YAML document) and convert it to plain data with positions."""
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise ConfigError([Problem(name, 1, 1, "$", "file is empty")])
    root = _compose(text, name)
    return _Converter(name).convert(root)


def _compose(text: str, name: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    try:
        nodes = list(yaml.compose_all(io.StringIO(text)))
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = str(err.problem or err.context or "YAML syntax error").strip()
        hint = ""
        if "\\t" in message or "'\\t'" in message or "tab" in message.lower():
            message, hint = "tab character in indentation", "indent with spaces only"
        raise ConfigError([Problem(name, line, col, "$", f"YAML syntax error: {message}", hint)]) from None
    except RecursionError:
        raise ConfigError([Problem(name, 1, 1, "$", "YAML nesting is too deep")]) from None
    except YAMLError as err:
        raise ConfigError([Problem(name, 1, 1, "$", f"YAML error: {err}")]) from None
    docs = [n for n in nodes if n is not None]
    if not docs:
        raise ConfigError([Problem(name, 1, 1, "$", "file is empty")])
    if len(nodes) > 1:
        mark = nodes[1].start_mark if nodes[1] is not None else None
        line = mark.line + 1 if mark else 1
        raise ConfigError([Problem(name, line, 1, "$", "more than one YAML document in the file",
                                   "remove the extra '---' document")])
    return docs[0]


def _tag(node: Any) -> str:
    tag = node.tag
    return str(getattr(tag, "value", tag))


class _Converter:
    """Node graph -> plain data, checking tags, duplicate keys, aliases and depth."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[PathKey, tuple[int, int]] = {}
        self.keys: dict[PathKey, tuple[int, int]] = {}
        self.problems: list[Problem] = []

    def convert(self, root: Any) -> Document:
        self._check_size(root)
        data = self._node(root, (), 0)
        if self.problems:
            raise ConfigError(self.problems)
        return Document(self.name, data, self.values, self.keys)

    def _add(self, node: Any, path: PathKey, message: str, hint: str = "") -> None:
        message = message.replace(_CORE, "!!")
        mark = node.start_mark
        self.problems.append(Problem(self.name, mark.line + 1, mark.column + 1,
                                     json_path(path), message, hint))

    def _check_size(self, root: Any) -> None:
        """Refuse alias bombs: count the nodes the document expands to, sharing by identity."""
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        sizes: dict[int, int] = {}
        order: list[Any] = []
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            if id(node) in sizes:
                continue
            if done:
                children: Iterator[Any]
                if isinstance(node, MappingNode):
                    children = (n for kv in node.value for n in kv)
                elif isinstance(node, SequenceNode):
                    children = iter(node.value)
                else:
                    children = iter(())
                total = 1
                for child in children:
                    total += sizes.get(id(child), 1)
                    if total > MAX_NODES:
                        break
                sizes[id(node)] = total
                order.append(node)
                continue
            stack.append((node, True))
            if isinstance(node, MappingNode):
                stack.extend((n, False) for kv in node.value for n in kv if id(n) not in sizes)
            elif isinstance(node, SequenceNode):
                stack.extend((n, False) for n in node.value if id(n) not in sizes)
            if len(stack) > MAX_NODES:
                break
        if sizes.get(id(root), MAX_NODES + 1) > MAX_NODES:
            raise ConfigError([Problem(self.name, root.start_mark.line + 1, root.start_mark.column + 1, "$",
                                       f"document expands to more than {MAX_NODES} nodes through aliases",
                                       "do not nest aliases of aliases")])

    def _node(self, node: Any, path: PathKey, depth: int) -> Any:
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if depth > MAX_DEPTH:
            self._add(node, path, f"nested deeper than {MAX_DEPTH} levels")
            return None
        tag = _tag(node)
        if isinstance(node, MappingNode):
            if tag != f"{_CORE}map":
                self._add(node, path, f"unsupported YAML tag '{tag}'", "remove the tag")
                return None
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            if tag != f"{_CORE}seq":
                self._add(node, path, f"unsupported YAML tag '{tag}'", "remove the tag")
                return None
            return [self._node(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if tag not in _SCALAR_TAGS:
            self._add(node, path, f"unsupported YAML tag '{tag}'", "remove the tag")
            return None
        return self._scalar(node, tag, path)

    def _mapping(self, node: Any, path: PathKey, depth: int) -> dict[str, Any]:
        from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

        out: dict[str, Any] = {}
        first: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_tag = _tag(key_node)
            if key_tag == f"{_CORE}merge":
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, MappingNode):
                        self._add(src, path, "a merge key ('<<') takes a mapping or a list of mappings")
                        continue
                    converted = self._mapping(src, path, depth + 1)
                    for k, v in converted.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode) or key_tag not in _SCALAR_TAGS:
                self._add(key_node, path, "mapping keys must be plain strings")
                continue
            key = str(key_node.value)
            if key_tag != f"{_CORE}str":
                # `1: x`, `true: x`, `null: x`: keys are names here; take their text as written.
                key = key_node.value
            child = (*path, key)
            if key in first:
                prev = first[key].start_mark
                self._add(key_node, child, f"duplicate key '{key}' (first defined at line {prev.line + 1})",
                          "keep one of the two")
                continue
            first[key] = key_node
            self.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self._node(value_node, child, depth + 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    def _scalar(self, node: Any, tag: str, path: PathKey) -> Any:
        text = node.value
        kind = tag[len(_CORE):]
        try:
            if kind == "str" or kind == "timestamp":
                return text
            if kind == "null":
                return None
            if kind == "bool":
                return _BOOL[text]
            if kind == "int":
                clean = text.replace("_", "")
                sign = -1 if clean.startswith("-") else 1
                body = clean.lstrip("+-")
                if body.startswith(("0o", "0O")):
                    return sign * int(body[2:], 8)
                if body.startswith(("0x", "0X")):
                    return sign * int(body[2:], 16)
                return int(clean)
            if kind == "float":
                low = text.lower().lstrip("+")
                if low in (".inf", "-.inf"):
                    return float(low.replace(".", ""))
                if low == ".nan":
                    return float("nan")
                return float(text.replace("_", ""))
        except (KeyError, ValueError):
            self._add(node, path, f"'{text}' is not a valid {kind}")
            return None
        return text
