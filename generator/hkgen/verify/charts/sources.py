"""A rendered tree indexed for release discovery: its documents, and the ConfigMaps/Secrets (plain
files or kustomize generators) values may come from.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

import yaml

from ...config.load import PathKey, json_path
from ...core.errors import Problem, UsageError
from .yamlpos import _YAML_ERRORS, Where, _child, _compose_all, _plain, _Positions

_MAX_NODES = 2_000_000

Tree = Mapping[PurePosixPath, bytes]

# --------------------------------------------------------------------------------------------
# The tree

@dataclass(frozen=True)
class _Doc:
    """One YAML document of the tree."""

    rel: PurePosixPath
    label: str
    node: Any
    data: dict[str, Any]
    namespace: str  # effective namespace ('' when none is known)
    text: str  # the whole file (block-scalar indentation is measured in it)

    @property
    def kind(self) -> str:
        return str(self.data.get("kind") or "")

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion") or "")

    @property
    def name(self) -> str:
        meta = self.data.get("metadata")
        return str(meta.get("name") or "") if isinstance(meta, dict) else ""

    def where(self, *path: str | int) -> Where:
        """Position of the deepest existing node along `path` (the document start at worst)."""
        node, found = self.node, cast(PathKey, ())
        for i in range(len(path), 0, -1):
            probe = _child(self.node, *path[:i])
            if probe is not None:
                node, found = probe, path[:i]
                break
        key = _key_node(self.node, found) if found else None
        mark = (key or node).start_mark
        return Where(self.label, mark.line + 1, mark.column + 1, json_path(found))


def _key_node(root: Any, path: PathKey) -> Any:
    parent = _child(root, *path[:-1]) if len(path) > 1 else root
    if isinstance(parent, yaml.MappingNode):
        for k, _v in parent.value:
            if isinstance(k, yaml.ScalarNode) and k.value == path[-1]:
                return k
    return None


@dataclass(frozen=True)
class _Entry:
    """One key of a values source (ConfigMap/Secret data key, generator file or literal)."""

    text: str
    at: _Positions | None  # how positions inside `text` map to the file; None if they cannot
    where: Where  # the key itself
    encrypted: bool = False


@dataclass(frozen=True)
class _Source:
    """A ConfigMap or Secret a HelmRelease can take values from."""

    kind: str
    name: str
    namespace: str
    folder: PurePosixPath
    entries: Mapping[str, _Entry]
    where: Where


@dataclass
class _TreeIndex:
    label: str
    docs: list[_Doc] = field(default_factory=list)
    sources: list[_Source] = field(default_factory=list)
    files: dict[PurePosixPath, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read_tree(folder: Path) -> dict[PurePosixPath, bytes]:
    """The YAML files below `folder` (hidden folders skipped), as relative path -> bytes."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    out: dict[PurePosixPath, bytes] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in (".yaml", ".yml", ".json"):
            out[PurePosixPath(rel.as_posix())] = path.read_bytes()
    return out


def _label(prefix: str, rel: PurePosixPath) -> str:
    return f"{prefix}/{rel}" if prefix else str(rel)


def _index_tree(tree: Tree, label: str) -> _TreeIndex:
    index = _TreeIndex(label)
    kustomizations: dict[PurePosixPath, tuple[Any, dict[str, Any]]] = {}
    for rel in sorted(tree):
        if rel.suffix not in (".yaml", ".yml"):
            continue
        try:
            text = tree[rel].decode("utf-8")
        except UnicodeDecodeError:
            index.problems.append(Problem(_label(label, rel), 0, 0, "$", "not UTF-8; not read"))
            continue
        index.files[rel] = text
        if "kind" not in text and rel.name not in ("kustomization.yaml", "kustomization.yml"):
            continue
        try:
            nodes = _compose_all(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            index.problems.append(Problem(_label(label, rel), mark.line + 1 if mark else 0,
                                          mark.column + 1 if mark else 0, "$", f"YAML does not parse: {err}"))
            continue
        for node in nodes:
            try:
                data = _plain(node, [_MAX_NODES])
            except _YAML_ERRORS as err:
                index.problems.append(Problem(_label(label, rel), node.start_mark.line + 1, 1, "$", str(err)))
                continue
            if not isinstance(data, dict):
                continue
            is_kustomization = data.get("kind", "Kustomization") == "Kustomization" and str(
                data.get("apiVersion", "kustomize.config")).startswith("kustomize.config")
            if rel.name in ("kustomization.yaml", "kustomization.yml") and is_kustomization:
                kustomizations[rel.parent] = (node, data)
                continue
            if "kind" in data:
                index.docs.append(_Doc(rel, _label(label, rel), node, data, "", text))
    # kustomize's `namespace:` overrides the documents' own; the nearest kustomization is taken.
    def namespace_of(doc: _Doc) -> str:
        for folder in (doc.rel.parent, *doc.rel.parent.parents):
            k = kustomizations.get(folder)
            if k and isinstance(k[1].get("namespace"), str):
                return str(k[1]["namespace"])
        meta = doc.data.get("metadata")
        return str(meta.get("namespace") or "") if isinstance(meta, dict) else ""

    index.docs = [_Doc(d.rel, d.label, d.node, d.data, namespace_of(d), d.text) for d in index.docs]
    for doc in index.docs:
        if doc.api_version == "v1" and doc.kind in ("ConfigMap", "Secret"):
            index.sources.append(_plain_source(doc))
    for folder, (node, data) in kustomizations.items():
        index.sources.extend(_generated_sources(index, tree, label, folder, node, data))
    return index


def _block_positions(text: str, node: Any, file: str, prefix: str) -> _Positions | None:
    """How lines of a literal block scalar (`|`) map to the file: content starts on the next line,
    one text line per file line (a folded `>` joins lines, so only its start is known).
    """
    if node.style != "|":
        return None
    lines = text.splitlines()
    first = node.start_mark.line + 1
    for line in lines[first:node.end_mark.line + 1]:
        if line.strip():
            return _Positions(file, prefix, first, len(line) - len(line.lstrip(" ")))
    return _Positions(file, prefix, first, 0)


def _plain_source(doc: _Doc) -> _Source:
    entries: dict[str, _Entry] = {}
    encrypted = "sops" in doc.data and isinstance(doc.data.get("sops"), dict)
    for field_name in ("data", "stringData"):
        holder = _child(doc.node, field_name)
        if not isinstance(holder, yaml.MappingNode):
            continue
        for k, v in holder.value:
            if not isinstance(k, yaml.ScalarNode) or not isinstance(v, yaml.ScalarNode):
                continue
            key = str(k.value)
            where = Where(doc.label, k.start_mark.line + 1, k.start_mark.column + 1, json_path((field_name, key)))
            value = str(v.value)
            if field_name == "data" and doc.kind == "Secret":
                try:
                    value = base64.b64decode(value, validate=True).decode("utf-8")
                except ValueError:
                    entries[key] = _Entry("", None, where, encrypted=True)
                    continue
                at = None
            else:
                at = _block_positions(doc.text, v, doc.label, json_path((field_name, key)))
            entries[key] = _Entry(value, at, where, encrypted or value.startswith("ENC[AES256_GCM"))
    return _Source(doc.kind, doc.name, doc.namespace, doc.rel.parent, entries, doc.where("metadata", "name"))


def _generated_sources(index: _TreeIndex, tree: Tree, label: str, folder: PurePosixPath, node: Any,
                       data: dict[str, Any]) -> Iterator[_Source]:
    """ConfigMaps/Secrets from kustomize `configMapGenerator`/`secretGenerator` (files, literals)."""
    kfile = _label(label, folder / "kustomization.yaml")
    for gen_key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        gens = data.get(gen_key)
        if not isinstance(gens, list):
            continue
        for i, gen in enumerate(gens):
            if not isinstance(gen, dict) or not isinstance(gen.get("name"), str):
                continue
            entries: dict[str, _Entry] = {}
            gen_node = _child(node, gen_key, i)
            gen_where = Where(kfile, gen_node.start_mark.line + 1, gen_node.start_mark.column + 1,
                              json_path((gen_key, i))) if gen_node is not None else Where(kfile, 1, 1, "$")
            for j, item in enumerate(gen.get("files") or []):
                if not isinstance(item, str):
                    continue
                key, _, path = item.partition("=") if "=" in item else (PurePosixPath(item).name, "", item)
                target = _normalise(folder / path)
                item_where = Where(kfile, gen_where.line, gen_where.col, json_path((gen_key, i, "files", j)))
                if target is None or target not in tree:
                    index.problems.append(item_where.problem(f"{kind} generator file {path!r} is not in the tree"))
                    continue
                try:
                    text = tree[target].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                file = _label(label, target)
                entries[key] = _Entry(text, _Positions(file, ""), Where(file, 1, 1, "$"))
            for j, item in enumerate(gen.get("literals") or []):
                if isinstance(item, str) and "=" in item:
                    key, _, value = item.partition("=")
                    entries[key] = _Entry(value, None, Where(kfile, gen_where.line, gen_where.col,
                                                             json_path((gen_key, i, "literals", j))))
            namespace = gen.get("namespace") or data.get("namespace") or ""
            yield _Source(kind, gen["name"], str(namespace), folder, entries, gen_where)


def _normalise(path: PurePosixPath) -> PurePosixPath | None:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts) if parts else None
