"""Render every Helm chart of a rendered tree for real and check what hkgen asked of it.

Helm silently ignores a values key a chart does not read, so a typo in Longhorn's
`defaultSettings` or in the kubelet directory fails nothing: it just removes the behaviour the
cluster depends on. This module finds every Flux `HelmRelease` and every Helm-sourced Argo CD
`Application` in a tree (a folder of YAML files, e.g. `clusters/<name>/`), finds the chart at the
pinned version in local chart folders, and for each release:

1. assembles exactly the values the GitOps engine would pass to Helm, remembering where each
   key is written (file, line, column): Flux `spec.valuesFrom` (ConfigMaps and Secrets that are
   plain files in the tree or kustomize generators; `targetPath` too) then `spec.values`; Argo
   CD `helm.valueFiles` (`$ref/...` files of the tree; files inside the chart are named, not
   read), `valuesObject` (else the `values` string), then `parameters`. `${KEY}` secret
   placeholders stay literal strings;
2. checks every key against the chart (rules below), and the chart's `kubeVersion` against the
   cluster's Kubernetes version;
3. renders the chart with Helm's own engine (the optional `helm-python-sdk`, Helm v4 in-process),
   which also runs the chart's `values.schema.json` (remote `$ref`s are pointed at the copy of
   the referenced schema inside the chart, found by its `$id`), with the cluster's Kubernetes
   version and the API groups the tree installs as capabilities; Flux `postRenderers` are then
   applied with kustomize, and what Helm logs (values whose shape differs from the chart's
   default) becomes a warning at that key;
4. validates every rendered document (and the chart's `crds/` Helm installs) against the CRDs the
   tree itself installs (exact versions: plain CRD files, every chart's `crds/`, CRDs charts
   render), extra CRD schema folders, and else with the checks the rest of the tree gets
   (`k8s_check.validate_object`: Kubernetes' strict schemas of the cluster's version, hkgen's
   bundled CRD schemas); a document of a kind no schema describes is an error;
5. reports each finding as a `Problem` at the HelmRelease/Application (or values file) line.

Which values keys count as defined (the "unknown values key" rule):
- a key the chart's `values.yaml` has at that path, even with a null value;
- a key the chart's templates read by that path (`.Values.a.b`, `(.Values.a).b`,
  `index .Values "a" "b"`): big charts document many keys only in comments; beneath a key the
  templates read only as a whole and values.yaml does not describe, anything goes;
- under a subchart's key (its alias or name), a key of the subchart's own `values.yaml` or of the
  parent's overrides there; at a chart's top level also the keys of its library subcharts
  (library charts such as bjw-s `common` merge their values into the parent's);
- `global` at a chart's top level; its keys are checked against the union of the `global`
  maps of the chart and all its subcharts;
- anything beneath a defined key whose default is not a non-empty mapping (null, a scalar, `{}`
  or a list): the chart does not describe that shape, it takes the value as a whole;
- anything beneath a defined key whose default mapping has keys that are not identifiers
  (`timeout.reconciliation`, `policy.csv`): ConfigMap data the chart copies key by key;
- anything beneath a defined key named like a Kubernetes pass-through field (`PASSTHROUGH`:
  labels, annotations, nodeSelector, tolerations, affinity, resources, securityContext, probes,
  env/volume lists, ...): charts copy these verbatim into manifests, where step 4 checks them
  against the Kubernetes schema, so a typo there is still caught.
Every other key is reported, with the closest defined sibling as a hint.
"""

from __future__ import annotations

import base64
import copy
import difflib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, cast

import yaml

from ..config.load import PathKey, json_path
from ..core.errors import Problem, ToolError, UsageError, shown

__all__ = [
    "PASSTHROUGH",
    "ChartEntry",
    "ChartIndex",
    "Manifest",
    "Release",
    "ReleaseResult",
    "Report",
    "Where",
    "check_tree",
    "find_releases",
    "helm_sdk",
    "read_tree",
]

Tree = Mapping[PurePosixPath, bytes]

# Values keys whose content charts pass verbatim into Kubernetes objects (checked there instead).
PASSTHROUGH = frozenset({
    "affinity", "annotations", "containerSecurityContext", "dnsConfig", "env", "envFrom", "extraArgs",
    "extraContainers", "extraEnv", "extraEnvFrom", "extraEnvs", "extraInitContainers", "extraVolumeMounts",
    "extraVolumes", "hostAliases", "initContainers", "labels", "lifecycle", "livenessProbe", "nodeSelector",
    "podSecurityContext", "readinessProbe", "resources", "securityContext", "sidecars", "startupProbe",
    "storageSpec", "tolerations", "topologySpreadConstraints", "volumeClaimTemplate", "volumeMounts", "volumes",
})
_PASSTHROUGH_SUFFIXES = ("Annotations", "Labels", "NodeSelector", "Tolerations", "Affinity", "SecurityContext",
                         "Resources")

_FLUX_HELM = "helm.toolkit.fluxcd.io/"
_ARGO = "argoproj.io/"
_MAX_NODES = 2_000_000
_MAX_DEPTH = 200
_MAX_ERRORS_PER_DOCUMENT = 10


def helm_sdk() -> Any:
    """The `helm_python` module, or `ToolError` (exit 3) saying how to install the extra."""
    try:
        import helm_python
    except ImportError as err:
        raise ToolError("checking Helm charts needs the optional Helm SDK: pip install 'hkgen[charts]' "
                        f"(installs helm-python-sdk; import failed: {err})") from err
    return helm_python


def _passthrough(key: str) -> bool:
    return key in PASSTHROUGH or key.endswith(_PASSTHROUGH_SUFFIXES)


def _data_map(default: Mapping[Any, Any]) -> bool:
    """A default whose keys are not identifiers (`timeout.reconciliation`, `policy.csv`) is data a
    chart copies into a ConfigMap key by key (Argo CD's `configs.cm`): its keys are free-form.
    """
    return any(not isinstance(k, str) or not k.replace("_", "").replace("-", "").isalnum() for k in default)


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


# --------------------------------------------------------------------------------------------
# Releases

@dataclass
class _Values:
    """Values being assembled, with where each key (path inside the values) is written."""

    data: dict[str, Any] = field(default_factory=dict)
    where: dict[PathKey, Where] = field(default_factory=dict)

    def merge(self, data: Any, where: Mapping[PathKey, Where], base: PathKey = ()) -> None:
        """Deep-merge `data` at `base` (maps merge, anything else replaces), as Helm and Flux do."""
        if not isinstance(data, dict):
            return
        target = self.data
        for part in base:
            nxt = target.get(part) if isinstance(part, str) else None
            if not isinstance(nxt, dict):
                nxt = {}
                target[str(part)] = nxt
            target = nxt
        _merge_into(target, data, base, self.where, where)


def _merge_into(target: dict[str, Any], data: dict[Any, Any], base: PathKey, where: dict[PathKey, Where],
                new: Mapping[PathKey, Where]) -> None:
    for key, value in data.items():
        skey = str(key)
        path = (*base, skey)
        if isinstance(value, dict) and isinstance(target.get(skey), dict):
            if path in new:
                where.setdefault(path, new[path])
            _merge_into(target[skey], value, path, where, new)
            continue
        target[skey] = copy.deepcopy(value)  # later merges must not write into the source documents
        for old in [p for p in where if p[:len(path)] == path]:
            del where[old]
        for p, w in new.items():
            if p[:len(path)] == path:
                where[p] = w


@dataclass(frozen=True)
class Release:
    """A Helm release the tree asks for: which chart, with which values, written where."""

    engine: str  # "flux" or "argocd"
    object: str  # "HelmRelease longhorn-system/longhorn"
    chart: str
    version: str
    repository: str
    release_name: str
    namespace: str
    at: Where  # the chart reference
    values: Mapping[str, Any]
    where: Mapping[PathKey, Where]
    values_at: Where  # where inline values are (or would be) written
    include_crds: bool = True
    post_renderers: tuple[Mapping[str, Any], ...] = ()
    problems: tuple[Problem, ...] = ()  # found while assembling the values
    from_path: str = ""  # "GitRepository"/"Bucket" when the chart is a folder there, not a release


def find_releases(tree: Tree, label: str = "", *,
                  repo_prefix: str | None = None) -> tuple[list[Release], list[Problem]]:
    """Every HelmRelease and Helm-sourced Application in `tree` with its assembled values.

    `label` prefixes file names in messages (e.g. `clusters/home`); `repo_prefix` is the tree's
    path inside its Git repository, for Argo CD `$ref/...` value files (default: `label`).
    """
    index = _index_tree(tree, label)
    releases: list[Release] = []
    for doc in index.docs:
        if doc.kind == "HelmRelease" and doc.api_version.startswith(_FLUX_HELM):
            releases.append(_flux_release(index, doc))
        elif doc.kind == "Application" and doc.api_version.startswith(_ARGO):
            releases.extend(_argo_releases(index, tree, doc, label if repo_prefix is None else repo_prefix))
    return releases, index.problems


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _flux_release(index: _TreeIndex, doc: _Doc) -> Release:
    spec = _map(doc.data.get("spec"))
    problems: list[Problem] = []
    chart_spec = (spec.get("chart") or {}).get("spec") if isinstance(spec.get("chart"), dict) else None
    chart = version = repository = from_path = ""
    at = doc.where("spec", "chart", "spec", "chart")
    if isinstance(chart_spec, dict):
        chart, version = _str(chart_spec.get("chart")), _str(chart_spec.get("version"))
        ref = _map(chart_spec.get("sourceRef"))
        source = _find_doc(index, doc, ref)
        repository = _str((source.data.get("spec") or {}).get("url")) if source else ""
        if ref.get("kind") in ("GitRepository", "Bucket"):
            from_path = str(ref["kind"])
            problems.append(at.problem(
                f"the chart is a folder in a {from_path}, not a chart release; not checked", warning=True))
        if chart_spec.get("valuesFiles") or chart_spec.get("valuesFile"):
            problems.append(doc.where("spec", "chart", "spec", "valuesFiles").problem(
                "valuesFiles replace the chart's values.yaml; verify-charts checks against values.yaml",
                warning=True))
    elif isinstance(spec.get("chartRef"), dict):
        ref = spec["chartRef"]
        at = doc.where("spec", "chartRef")
        source = _find_doc(index, doc, ref)
        if source is None:
            problems.append(at.problem(
                f"chartRef {_str(ref.get('kind'))} {_str(ref.get('name'))!r} is not in the tree"))
        elif source.kind == "OCIRepository":
            sspec = _map(source.data.get("spec"))
            repository = _str(sspec.get("url"))
            chart = repository.rstrip("/").rsplit("/", 1)[-1]
            sref = _map(sspec.get("ref"))
            version = _str(sref.get("tag") or sref.get("semver"))
        elif source.kind == "HelmChart":
            sspec = _map(source.data.get("spec"))
            chart, version = _str(sspec.get("chart")), _str(sspec.get("version"))
    else:
        problems.append(doc.where("spec").problem("HelmRelease has neither spec.chart.spec nor spec.chartRef"))
    target_ns = _str(spec.get("targetNamespace"))
    namespace = target_ns or doc.namespace or "default"
    release_name = _str(spec.get("releaseName")) or (f"{target_ns}-{doc.name}" if target_ns else doc.name)
    values = _Values()
    for i, ref in enumerate(spec.get("valuesFrom") or []):
        if isinstance(ref, dict):
            _flux_values_from(index, doc, i, ref, values, problems)
    inline = spec.get("values")
    node = _child(doc.node, "spec", "values")
    if isinstance(inline, dict) and node is not None:
        values.merge(inline, _positions(node, _Positions(doc.label, ""), ("spec", "values")))
    install = _map(spec.get("install"))
    post = tuple(p for p in spec.get("postRenderers") or [] if isinstance(p, dict))
    return Release("flux", f"HelmRelease {doc.namespace or 'default'}/{doc.name}", chart, version, repository,
                   release_name, namespace, at, values.data, values.where, doc.where("spec", "values"),
                   install.get("crds", "Create") != "Skip", post, tuple(problems), from_path)


def _find_doc(index: _TreeIndex, doc: _Doc, ref: Mapping[str, Any]) -> _Doc | None:
    """The object a `sourceRef`/`chartRef` of `doc` names (same namespace preferred)."""
    kind, name = _str(ref.get("kind")), _str(ref.get("name"))
    namespace = _str(ref.get("namespace")) or doc.namespace
    found = [d for d in index.docs if d.kind == kind and d.name == name]
    same = [d for d in found if not d.namespace or not namespace or d.namespace == namespace]
    return (same or found)[0] if found else None


def _flux_values_from(index: _TreeIndex, doc: _Doc, i: int, ref: dict[str, Any], values: _Values,
                      problems: list[Problem]) -> None:
    kind, name = _str(ref.get("kind")), _str(ref.get("name"))
    key = _str(ref.get("valuesKey")) or "values.yaml"
    ref_where = doc.where("spec", "valuesFrom", i)
    candidates = [s for s in index.sources if s.kind == kind and s.name == name
                  and (not s.namespace or not doc.namespace or s.namespace == doc.namespace)]
    if len(candidates) > 1:
        candidates = [s for s in candidates if s.folder == doc.rel.parent] or candidates[:1]
    if not candidates:
        if not ref.get("optional"):
            problems.append(ref_where.problem(
                f"values from {kind} {name!r} are not a plain file in the tree; checked without them", warning=True))
        return
    entry = candidates[0].entries.get(key)
    if entry is None:
        if not ref.get("optional"):
            problems.append(ref_where.problem(f"{kind} {name!r} has no key {key!r}"))
        return
    if entry.encrypted:
        problems.append(ref_where.problem(f"values from {kind} {name!r} are encrypted (or not base64); "
                                          "checked without them", warning=True))
        return
    target = _str(ref.get("targetPath"))
    if target:
        try:
            _set_path(values, target, entry.text, entry.where)
        except helm_sdk().HelmError as err:
            problems.append(ref_where.problem(f"Helm cannot set targetPath {target!r}: {err}"))
        return
    try:
        nodes = _compose_all(entry.text)
        data = _plain(nodes[0], [_MAX_NODES]) if nodes else {}
    except _YAML_ERRORS as err:
        problems.append(entry.where.problem(f"values in {kind} {name!r} key {key!r} do not parse: {err}"))
        return
    if not isinstance(data, dict):
        if data is not None:
            problems.append(entry.where.problem(f"values in {kind} {name!r} key {key!r} are not a mapping"))
        return
    # Inside a literal block every key has its own line; otherwise all point at the data key.
    where = _positions(nodes[0], entry.at, ()) if entry.at else dict.fromkeys(_all_paths(data), entry.where)
    values.merge(data, where)


def _set_path(values: _Values, target: str, text: str, where: Where) -> None:
    """Flux `targetPath`: Helm's `--set path=value` (quoted values stay strings)."""
    helm = helm_sdk()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        parsed = helm.parse_set_string_values(f"{target}={text.strip(chr(39) + chr(34))}")
    else:
        parsed = helm.parse_set_string(f"{target}={text}")
    values.merge(parsed, dict.fromkeys(_all_paths(parsed), where))


def _all_paths(data: Any, base: PathKey = ()) -> Iterator[PathKey]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*base, str(k))
            yield from _all_paths(v, (*base, str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield (*base, i)
            yield from _all_paths(v, (*base, i))


def _argo_releases(index: _TreeIndex, tree: Tree, doc: _Doc, repo_prefix: str) -> Iterator[Release]:
    spec = _map(doc.data.get("spec"))
    sources: list[tuple[PathKey, dict[str, Any]]]
    if isinstance(spec.get("sources"), list):
        sources = [(("spec", "sources", i), s) for i, s in enumerate(spec["sources"]) if isinstance(s, dict)]
    elif isinstance(spec.get("source"), dict):
        sources = [(("spec", "source"), spec["source"])]
    else:
        return
    refs = {_str(s.get("ref")): s for _p, s in sources if s.get("ref")}
    dest = _map(spec.get("destination"))
    namespace = _str(dest.get("namespace")) or "default"
    for path, source in sources:
        repo = _str(source.get("repoURL"))
        chart = _str(source.get("chart"))
        if not chart and repo.startswith("oci://") and not source.get("ref"):
            chart = repo.rstrip("/").rsplit("/", 1)[-1]
        if not chart:
            continue
        helm = _map(source.get("helm"))
        problems: list[Problem] = []
        values = _Values()
        for j, name in enumerate(helm.get("valueFiles") or []):
            if isinstance(name, str):
                _argo_value_file(index, tree, doc, (*path, "helm", "valueFiles", j), name, refs, repo_prefix,
                                 values, problems)
        if isinstance(helm.get("valuesObject"), dict):
            values_path: PathKey = (*path, "helm", "valuesObject")
            node = _child(doc.node, *values_path)
            values.merge(helm["valuesObject"], _positions(node, _Positions(doc.label, ""), values_path))
        elif isinstance(helm.get("values"), str):
            values_path = (*path, "helm", "values")
            node = _child(doc.node, *values_path)
            _merge_text(values, helm["values"], node, doc, values_path, problems)
        else:
            values_path = (*path, "helm", "valuesObject")
        for j, param in enumerate(helm.get("parameters") or []):
            if isinstance(param, dict) and param.get("name"):
                where = doc.where(*path, "helm", "parameters", j)
                text = _str(param.get("value"))
                if not (text.startswith("{") and text.endswith("}")):
                    text = text.replace(",", "\\,")  # Argo CD escapes commas outside {a,b} lists
                sdk = helm_sdk()
                parse = sdk.parse_set_string_values if param.get("forceString") else sdk.parse_set_string
                try:
                    parsed = parse(f"{param['name']}={text}")
                except sdk.HelmError as err:
                    problems.append(where.problem(f"Helm cannot read this parameter: {err}"))
                    continue
                values.merge(parsed, dict.fromkeys(_all_paths(parsed), where))
        if helm.get("fileParameters"):
            problems.append(doc.where(*path, "helm", "fileParameters").problem(
                "helm.fileParameters are not read by verify-charts", warning=True))
        yield Release(
            "argocd", f"Application {doc.namespace or 'default'}/{doc.name}", chart,
            _str(source.get("targetRevision")), repo, _str(helm.get("releaseName")) or doc.name, namespace,
            doc.where(*path, "chart") if source.get("chart") else doc.where(*path, "repoURL"),
            values.data, values.where, doc.where(*values_path), not helm.get("skipCrds"), (), tuple(problems))


def _merge_text(values: _Values, text: str, node: Any, doc: _Doc, path: PathKey, problems: list[Problem]) -> None:
    try:
        nodes = _compose_all(text)
        data = _plain(nodes[0], [_MAX_NODES]) if nodes else {}
    except _YAML_ERRORS as err:
        problems.append(doc.where(*path).problem(f"values do not parse: {err}"))
        return
    if not isinstance(data, dict):
        return
    at = _block_positions(doc.text, node, doc.label, json_path(path)) if node is not None else None
    if at is None:
        fixed = doc.where(*path)
        values.merge(data, dict.fromkeys(_all_paths(data), fixed))
    else:
        values.merge(data, _positions(nodes[0], at, ()))


def _argo_value_file(index: _TreeIndex, tree: Tree, doc: _Doc, path: PathKey, name: str,
                     refs: Mapping[str, Any], repo_prefix: str, values: _Values, problems: list[Problem]) -> None:
    where = doc.where(*path)
    if not name.startswith("$"):
        problems.append(where.problem(f"value file {name!r} inside the chart is not read by verify-charts",
                                      warning=True))
        return
    ref, _, rest = name[1:].partition("/")
    if ref not in refs:
        problems.append(where.problem(f"value file {name!r} refers to ${ref}, "
                                      "which no source of this Application defines"))
        return
    prefix = repo_prefix.strip("/")
    rel = PurePosixPath(rest)
    if prefix and rest.startswith(prefix + "/"):
        rel = PurePosixPath(rest[len(prefix) + 1:])
    elif prefix:
        problems.append(where.problem(f"value file {name!r} is outside this tree ({prefix}/); checked without it",
                                      warning=True))
        return
    if rel not in index.files:
        if rel not in tree:
            problems.append(where.problem(f"value file {name!r} is not in the tree"))
        return
    text = index.files[rel]
    file = _label(index.label, rel)
    try:
        nodes = _compose_all(text)
        data = _plain(nodes[0], [_MAX_NODES]) if nodes else {}
    except _YAML_ERRORS as err:
        problems.append(Problem(file, 0, 0, "$", f"values file does not parse: {err}"))
        return
    if isinstance(data, dict):
        values.merge(data, _positions(nodes[0], _Positions(file, ""), ()))


# --------------------------------------------------------------------------------------------
# Local charts

@dataclass(frozen=True)
class ChartEntry:
    """A chart found in the chart folders."""

    name: str
    version: str
    path: Path  # a chart directory or a .tgz


def _same_version(a: str, b: str) -> bool:
    return a == b or a.removeprefix("v") == b.removeprefix("v")


class ChartIndex:
    """Charts under the folders given by the user: chart directories (any name; Chart.yaml says
    which chart and version) and packaged `.tgz` charts, up to three folder levels deep.
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = tuple(folders)
        self.entries: list[ChartEntry] = []
        for folder in self.folders:
            if not folder.is_dir():
                raise UsageError(f"{folder}: no such chart folder")
            self._scan(folder, 0)

    def _scan(self, folder: Path, depth: int) -> None:
        meta = _chart_yaml(folder / "Chart.yaml")
        if meta:
            self.entries.append(ChartEntry(meta[0], meta[1], folder))
            return
        if depth > 3:
            return
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                self._scan(child, depth + 1)
            elif child.name.endswith((".tgz", ".tar.gz")):
                meta = _tgz_chart_yaml(child)
                if meta:
                    self.entries.append(ChartEntry(meta[0], meta[1], child))

    def find(self, name: str, version: str) -> ChartEntry | None:
        """The chart `name` at exactly `version` (a leading 'v' is not significant)."""
        for entry in self.entries:
            if entry.name == name and _same_version(entry.version, version):
                return entry
        return None

    def versions(self, name: str) -> list[str]:
        """Versions of `name` that are present."""
        return sorted({e.version for e in self.entries if e.name == name})


def _chart_meta(text: str) -> tuple[str, str] | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(data, dict) and data.get("name") and data.get("version") is not None:
        return str(data["name"]), str(data["version"])
    return None


def _chart_yaml(path: Path) -> tuple[str, str] | None:
    return _chart_meta(path.read_text("utf-8")) if path.is_file() else None


def _tgz_chart_yaml(path: Path) -> tuple[str, str] | None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    handle = tar.extractfile(member)
                    return _chart_meta(handle.read().decode("utf-8")) if handle else None
    except (OSError, tarfile.TarError, UnicodeDecodeError):
        return None
    return None


@dataclass(frozen=True)
class _Level:
    """What a chart says about one level of values: its values.yaml defaults there, the
    template-read trie there, and the chart itself when this is a chart's top level.
    """

    defaults: Any
    reads: Any
    chart: _ChartTree | None


@dataclass
class _ChartTree:
    """A chart's own defaults and its subcharts, as far as the values check needs them."""

    name: str
    version: str
    path: Path  # the directory Helm loads (a temp copy when the schema had to be made local)
    defaults: dict[str, Any]
    metadata: dict[str, Any]
    subcharts: dict[str, _ChartTree]  # values key (alias or name) -> subchart
    libraries: list[_ChartTree]
    schema_note: str  # why the schema cannot be checked offline ('' if it can)
    reads: dict[str, Any]  # values paths the chart's own templates read, as a trie ({} = read whole)

    def roots(self) -> list[_Level]:
        """Reference levels for this chart's top-level keys: itself and its library subcharts
        (a library's templates run in the parent's context and read the parent's values).
        """
        return [_Level(self.defaults, self.reads, self),
                *(_Level(lib.defaults, lib.reads, None) for lib in self.libraries)]

    def globals(self) -> _Level:
        """The union of the `global` maps (values.yaml and template reads) of the whole chart tree."""
        defaults: dict[str, Any] = {}
        reads: dict[str, Any] = {}
        for tree in self.walk():
            for source, into in ((tree.defaults, defaults), (tree.reads, reads)):
                g = source.get("global")
                if isinstance(g, dict):
                    _union_into(into, g)
        return _Level(defaults, reads, None)

    def walk(self) -> Iterator[_ChartTree]:
        """Yield this chart and every chart below it."""
        yield self
        for sub in self.subcharts.values():
            yield from sub.walk()

    def find_key(self, name: str) -> PathKey | None:
        """The values path of the subchart Helm calls `name` (alias or name), () for this chart."""
        if name == self.name:
            return ()
        for key, sub in self.subcharts.items():
            found = sub.find_key(name) if key != name else ()
            if found is not None:
                return (key, *found)
        return None


def _union_into(out: dict[str, Any], data: dict[str, Any]) -> None:
    for k, v in data.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            _union_into(out[k], v)
        elif k not in out or isinstance(v, dict):
            out[k] = v


# Temporary copies (expanded archives, schema-localised charts) live as long as the process.
_TEMP_DIRS: list[tempfile.TemporaryDirectory[str]] = []


def _temp_dir() -> Path:
    holder = tempfile.TemporaryDirectory(prefix="hkgen-charts-")
    _TEMP_DIRS.append(holder)
    return Path(holder.name)


@cache
def _chart_tree(path: Path) -> _ChartTree:
    """Load a chart (directory or .tgz) once per process, as a directory whose subcharts are
    directories too (packaged charts carry them as .tgz) and whose schemas need no network.
    """
    helm = helm_sdk()
    owned = False
    if path.is_file():
        path, owned = _expand(helm, path, _temp_dir()), True
    if any((path / "charts").rglob("*.tgz")) if (path / "charts").is_dir() else False:
        if not owned:
            copy_to = _temp_dir() / path.name
            shutil.copytree(path, copy_to, symlinks=False)
            path, owned = copy_to, True
        _expand_subcharts(helm, path)
    path, note = _local_schemas(path, owned)
    return _tree_at(helm, path, note)


def _expand(helm: Any, archive: Path, into: Path) -> Path:
    helm.expand(into, archive)
    dirs = [d for d in into.iterdir() if d.is_dir()]
    if len(dirs) != 1:
        raise ToolError(f"{archive}: not a chart archive")
    return dirs[0]


def _expand_subcharts(helm: Any, chart: Path) -> None:
    """Replace every `charts/*.tgz` (at any depth) by its directory, as Helm reads either."""
    folder = chart / "charts"
    if not folder.is_dir():
        return
    for archive in sorted(folder.glob("*.tgz")):
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".expand-"))
        expanded = _expand(helm, archive, staging)
        target = folder / expanded.name
        if target.exists():
            raise ToolError(f"{archive}: its chart folder {target.name} exists next to it")
        expanded.rename(target)
        staging.rmdir()
        archive.unlink()
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and (sub / "Chart.yaml").is_file():
            _expand_subcharts(helm, sub)


def _tree_at(helm: Any, path: Path, note: str) -> _ChartTree:
    chart = helm.Chart.load(path)
    try:
        metadata, defaults = chart.metadata, chart.values
    finally:
        chart.close()
    found: dict[str, _ChartTree] = {}
    sub_dir = path / "charts"
    if sub_dir.is_dir():
        for child in sorted(sub_dir.iterdir()):
            if child.is_dir() and (child / "Chart.yaml").is_file():
                sub = _tree_at(helm, child, note)
            else:
                continue
            found.setdefault(sub.name, sub)
    subcharts: dict[str, _ChartTree] = {}
    libraries: list[_ChartTree] = []
    declared = [d for d in metadata.get("dependencies") or [] if isinstance(d, dict)]
    for dep in declared:
        match = found.get(str(dep.get("name")))
        if match is None:
            continue
        subcharts[str(dep.get("alias") or match.name)] = match
        if match.metadata.get("type") == "library":
            libraries.append(match)
    for name, sub in found.items():
        if not any(s is sub for s in subcharts.values()):
            subcharts[name] = sub
    return _ChartTree(str(metadata.get("name")), str(metadata.get("version")), path, defaults or {}, metadata,
                      subcharts, libraries, note, _template_reads(path / "templates"))


# `.Values.a.b` (also `$.Values`, `$ctx.Values`), `(.Values.a).b` and `index .Values "a" "b"`.
_READ = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\)?)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_INDEX = re.compile(r"index\s+\(?\$?[A-Za-z0-9_]*\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\)?((?:\s+\"[^\"]*\")+)")


def _template_reads(folder: Path) -> dict[str, Any]:
    """Values paths a chart's templates read, as a trie: a key the templates read counts as
    defined even when values.yaml only mentions it in a comment (common in big charts).
    """
    trie: dict[str, Any] = {}
    if not folder.is_dir():
        return trie
    for file in sorted(folder.rglob("*")):
        if not file.is_file():
            continue
        text = file.read_text("utf-8", errors="replace")
        paths = [m.group(1) + (m.group(3) if m.group(2) else "") for m in _READ.finditer(text)]
        paths = [p.strip(".").split(".") for p in paths if p]
        for m in _INDEX.finditer(text):
            paths.append([*(p for p in m.group(1).strip(".").split(".") if p), *re.findall(r'"([^"]*)"', m.group(2))])
        for parts in paths:
            node = trie
            for part in parts:
                node = node.setdefault(part, {})
    return trie


_REMOTE_REF = re.compile(r'"\$ref"\s*:\s*"(https?://[^"#]+)')
_REMOTE_ID = re.compile(r'"\$id"\s*:\s*"https?://')


def _local_schemas(path: Path, owned: bool) -> tuple[Path, str]:
    """Point remote `$ref`s of the chart's JSON schemas at the copies inside the chart.

    Helm validates values.schema.json on every render and fetches remote refs over the network
    (bjw-s app-template refers to its `common` library by URL). A schema inside the chart whose
    `$id` is the referenced URL is that copy: in a temp copy of the chart, the URL's folder is
    replaced by the local folder. Refs that no schema in the chart answers stay, with a note.
    """
    remote: set[str] = set()
    remote_ids = False  # relative refs of a schema with a remote $id are remote too
    for p in path.rglob("*.json"):
        text = p.read_text("utf-8", errors="replace")
        remote.update(_REMOTE_REF.findall(text))
        remote_ids = remote_ids or bool(_REMOTE_ID.search(text))
    if not remote and not remote_ids:
        return path, ""
    dest = path
    if not owned:  # never edit the user's chart folder
        dest = _temp_dir() / path.name
        shutil.copytree(path, dest, symlinks=False)
    ids: dict[str, Path] = {}
    for p in dest.rglob("*.json"):
        try:
            data = json.loads(p.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("$id"), str) and data["$id"].startswith(("http://", "https://")):
            ids[data["$id"]] = p
    swaps = {url.rsplit("/", 1)[0] + "/": local.parent.as_uri() + "/" for url, local in ids.items()}
    missing = sorted(url for url in remote if not any(url.startswith(prefix) for prefix in swaps))
    for p in dest.rglob("*.json"):
        text = p.read_text("utf-8", errors="replace")
        new = text
        for old, local in swaps.items():
            new = new.replace(old, local)
        if new != text:
            p.write_text(new, "utf-8")
    note = f"its schema refers to {missing[0]}, which is not in the chart" if missing else ""
    return dest, note


# --------------------------------------------------------------------------------------------
# The values-key check

@dataclass
class _KeyCheck:
    checked: int = 0
    freeform: int = 0
    unknown: list[tuple[PathKey, str, list[str]]] = field(default_factory=list)


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _check_keys(values: Mapping[str, Any], tree: _ChartTree) -> _KeyCheck:
    out = _KeyCheck()
    _check_level(values, (), tree.roots(), out)
    return out


def _check_level(user: Mapping[str, Any], path: PathKey, levels: list[_Level], out: _KeyCheck) -> None:
    """The rules of the module docstring, one level at a time."""
    for key, value in user.items():
        here = (*path, key)
        children: list[_Level] = []
        defined = free = in_values = False
        whole_reads = True
        for level in levels:
            if level.chart is not None:
                if key == "global":
                    defined = in_values = True
                    union = level.chart.globals()
                    children.append(union)
                    free = free or not (union.defaults or union.reads)
                    continue
                if key in level.chart.subcharts:
                    defined = in_values = True
                    children.extend(level.chart.subcharts[key].roots())
            if isinstance(level.defaults, dict) and key in level.defaults:
                defined = in_values = True
                default = level.defaults[key]
                if isinstance(default, dict) and default and not _passthrough(key) and not _data_map(default):
                    children.append(_Level(default, None, None))
                else:
                    free = True
            if isinstance(level.reads, dict) and key in level.reads:
                defined = True
                if level.reads[key]:
                    whole_reads = False
                    children.append(_Level(None, level.reads[key], None))
        if not defined:
            out.unknown.append((here, key, _candidates(levels)))
            continue
        # Read only as a whole by the templates and not described by values.yaml: free-form.
        free = free or (not in_values and whole_reads)
        out.checked += 1
        if free or not isinstance(value, dict):
            out.freeform += _count_keys(value)
            continue
        _check_level(value, here, children, out)


def _candidates(levels: list[_Level]) -> list[str]:
    names: set[str] = set()
    for level in levels:
        for source in (level.defaults, level.reads):
            if isinstance(source, dict):
                names.update(str(k) for k in source)
        if level.chart is not None:
            names.update(level.chart.subcharts)
            names.add("global")
    return sorted(names)


def _did_you_mean(key: str, candidates: list[str]) -> str:
    lowered = {c.lower(): c for c in candidates}
    if key.lower() in lowered:
        return lowered[key.lower()]
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else ""


# --------------------------------------------------------------------------------------------
# Kubernetes version constraints (Chart.yaml kubeVersion; Helm itself refuses to install on a mismatch)

_PINNED = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_VERSION = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def _parse_version(text: str) -> tuple[list[int | None], bool] | None:
    m = _VERSION.match(text.strip())
    if not m:
        return None
    parts: list[int | None] = [None if g is None or g in "xX*" else int(g) for g in m.group(1, 2, 3)]
    return parts, m.group(4) is not None


def _key(parts: Sequence[int | None], pre: bool) -> tuple[int, int, int, int]:
    return (parts[0] or 0, parts[1] or 0, parts[2] or 0, 0 if pre else 1)


def _matches_one(op: str, want: str, have: tuple[int, int, int, int]) -> bool:
    parsed = _parse_version(want)
    if parsed is None:
        raise ValueError(want)
    parts, pre = parsed
    exact = [p for p in parts if p is not None]
    low = _key(parts, pre)
    if op in ("", "=") and len(exact) < 3:
        op = "~" if len(exact) >= 2 else "^"
    if op in ("", "="):
        return have[:3] == low[:3]
    if op == "!=":
        return have[:3] != low[:3]
    if op == ">":
        return have > low if len(exact) == 3 else have[:len(exact)] > low[:len(exact)]
    if op == ">=":
        return have >= low
    if op == "<":
        return have < low
    if op in ("<=", "=<"):
        return have <= low if len(exact) == 3 else have[:len(exact)] <= low[:len(exact)]
    if op in ("~", "~>"):
        upper = (low[0], low[1] + 1, 0, 0) if len(exact) >= 2 else (low[0] + 1, 0, 0, 0)
        return low <= have < upper
    if op == "^":
        upper = (low[0] + 1, 0, 0, 0) if low[0] > 0 else (0, low[1] + 1, 0, 0)
        return low <= have < upper
    raise ValueError(op)


def kube_version_allows(constraint: str, version: str) -> bool:
    """True when Kubernetes `version` ('1.34' or '1.34.2') satisfies a Chart.yaml `kubeVersion`.

    Masterminds semver syntax as Helm reads it: `||` alternatives of space/comma-separated
    comparisons (`>=1.25.0-0`, `<1.35`, `~1.30`, `^1`, `1.2 - 1.4`, wildcards).
    """
    parsed = _parse_version(version)
    if parsed is None:
        raise ValueError(version)
    have = _key(parsed[0], False)
    for alternative in constraint.split("||"):
        text = re.sub(r"(\S+)\s+-\s+(\S+)", r">=\1 <=\2", alternative.strip())
        terms = [t for t in re.split(r"[\s,]+", re.sub(r"([<>=!~^]+)\s+", r"\1", text)) if t]
        if all(_matches_one(*_split_op(t), have) for t in terms):
            return True
    return False


def _split_op(term: str) -> tuple[str, str]:
    m = re.match(r"^(>=|<=|=<|!=|~>|[<>=~^])?(.*)$", term)
    return (m.group(1) or "", m.group(2)) if m else ("", term)


# --------------------------------------------------------------------------------------------
# Manifest schemas

class ManifestSchemas:
    """Schemas for rendered documents, in this order: the CRDs the tree itself installs (plain
    CRD files, every chart's `crds/`, CRDs charts render from templates: the exact versions the
    cluster gets), `crd_folders` (datree layout, `<group>/<kind>_<version>.json`), then what the
    rest of the tree is checked with (`k8s_check.validate_object`: Kubernetes' strict schemas of
    the cluster's version and hkgen's bundled CRD schemas).
    """

    def __init__(self, kube_version: str, crd_documents: Sequence[dict[str, Any]] = (),
                 crd_folders: Sequence[Path] = ()) -> None:
        self.kube_version = ".".join(kube_version.removeprefix("v").split(".")[:2])
        self.core = _kubernetes(self.kube_version)
        self.crds: dict[tuple[str, str], dict[str, Any]] = {}
        for doc in crd_documents:
            self.add_crd(doc)
        self.folders = tuple(crd_folders)
        self._validators: dict[tuple[str, str], Any] = {}

    def api_versions(self) -> list[str]:
        """Capabilities for Helm: the built-in group/versions (and /Kind forms) of the cluster's
        Kubernetes version and those of every CRD the tree installs.
        """
        out: set[str] = set()
        for api, kind in (*self.core.builtin, *self.crds):
            out.update((api, f"{api}/{kind}"))
        return sorted(out)

    def add_crd(self, doc: Mapping[str, Any]) -> None:
        """Register the versions of a CustomResourceDefinition document (first one wins)."""
        spec = doc.get("spec")
        if doc.get("kind") != "CustomResourceDefinition" or not isinstance(spec, dict):
            return
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        for version in spec.get("versions") or []:
            if not isinstance(version, dict):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(schema, dict) and group and kind:
                self.crds.setdefault((f"{group}/{version.get('name')}", str(kind)), schema)

    def _own(self, api_version: str, kind: str) -> Any:
        """A cached validator from the tree's CRDs or the CRD folders; None if neither has one."""
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._build(api_version, kind)
        return self._validators[key]

    def _build(self, api_version: str, kind: str) -> Any:
        from jsonschema import Draft202012Validator

        schema = self.crds.get((api_version, kind))
        if schema is None:
            group, _, version = api_version.rpartition("/")
            for folder in self.folders:
                candidate = folder / group / f"{kind.lower()}_{version}.json"
                if group and candidate.is_file():
                    schema = json.loads(candidate.read_text("utf-8"))
                    break
        if schema is None:
            return None
        strict = _structural(schema, top=True)
        props = strict.setdefault("properties", {})
        meta = f"{self.core.definitions_id}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        props["metadata"] = {"$ref": meta}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        return Draft202012Validator(strict, registry=self.core.registry)

    def errors(self, doc: Mapping[str, Any]) -> list[tuple[PathKey, str]] | None:
        """Schema errors of one document (path, message); None when its kind has no schema."""
        validator = self._own(str(doc.get("apiVersion")), str(doc.get("kind")))
        if validator is None:
            from .k8s import validate_object

            found, errors = validate_object(dict(doc), self.kube_version)
            if not found:
                return None
            return [(tuple(path), _short(message)) for path, message in errors[:_MAX_ERRORS_PER_DOCUMENT]]
        out: list[tuple[PathKey, str]] = []
        for err in validator.iter_errors(doc):
            out.append((tuple(err.absolute_path), _short(err.message)))
            if len(out) >= _MAX_ERRORS_PER_DOCUMENT:
                break
        return out


class _Kubernetes:
    """What the built-in API of one Kubernetes version offers: its group/version/kinds (Helm's
    capabilities) and kubernetes-validate's definitions (ObjectMeta for custom resources).
    """

    def __init__(self, minor: str) -> None:
        import kubernetes_validate
        from referencing import Registry, Resource

        base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
        if not base.is_dir():
            raise UsageError(f"no Kubernetes {minor} schemas in kubernetes-validate {kubernetes_validate.__version__}")
        definitions: dict[str, Any] = json.loads((base / "_definitions.json").read_text("utf-8"))
        self.definitions_id = str(definitions["$id"])
        self.registry: Any = Resource.from_contents(definitions) @ Registry()
        self.builtin: set[tuple[str, str]] = set()
        for schema in definitions["$defs"].values():
            gvks = schema.get("x-kubernetes-group-version-kind") or []
            if len(gvks) == 1:  # meta kinds (DeleteOptions, WatchEvent) list every group
                g = gvks[0]
                self.builtin.add((f"{g['group']}/{g['version']}" if g["group"] else g["version"], g["kind"]))


@cache
def _kubernetes(minor: str) -> _Kubernetes:
    return _Kubernetes(minor)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _structural(node: Any, top: bool = False) -> Any:
    """A CRD's OpenAPI v3 schema as a strict JSON schema: unknown fields are errors unless the CRD
    preserves them; int-or-string and nullable honoured; Go-only regexes made Python-readable.
    """
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions", "$defs"):  # maps of schemas
            out[key] = {k: _structural(v) for k, v in value.items()} if isinstance(value, dict) else value
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _structural(value)
        elif key == "pattern" and isinstance(value, str):
            fixed = _python_regex(value)
            if fixed is not None:
                out[key] = fixed
        elif key in ("format", "description", "example", "externalDocs"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        out.pop("anyOf", None)  # the integer/string alternatives again, one error instead of two
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if isinstance(out.get("enum"), list):
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-embedded-resource") and isinstance(out.get("properties"), dict):
        for name in ("apiVersion", "kind", "metadata"):
            out["properties"].setdefault(name, {})
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if top:
        out.setdefault("type", "object")
    return out


def _python_regex(pattern: str) -> str | None:
    for candidate in (pattern, re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", pattern)):
        try:
            re.compile(candidate)
        except re.error:
            continue
        return candidate
    return None  # a Go-only construct: dropped rather than guessed


# --------------------------------------------------------------------------------------------
# Rendering

@dataclass(frozen=True)
class Manifest:
    """One rendered document: the template it came from and its data."""

    template: str
    data: Mapping[str, Any]

    @property
    def title(self) -> str:
        """`Kind namespace/name` for messages."""
        meta = _map(self.data.get("metadata"))
        ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
        return f"{self.data.get('kind')} {ns}{meta.get('name')}"


_GO_LOG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")
_SCHEMA_LOAD = re.compile(r'failing loading "([^"]+)"')
_SCHEMA_LINE = re.compile(r"^\s*- at '([^']*)': (.*)$")
_ADDITIONAL = re.compile(r"additional propert(?:y|ies) (.+) not allowed")


@contextmanager
def _go_stderr() -> Iterator[list[str]]:
    """Collect what Helm's Go code logs to file descriptor 2 (coalesce warnings), which would
    otherwise land on the terminal: the lines are turned into warnings instead.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(_go_log_records(sink.read().decode("utf-8", errors="replace")))


def _go_log_records(text: str) -> list[str]:
    """Go `log` records (`2006/01/02 15:04:05 message`, continuation lines folded in)."""
    records: list[str] = []
    for line in text.splitlines():
        stamp = _GO_LOG.match(line)
        if stamp:
            records.append(line[stamp.end():].strip())
        elif records and line.strip():
            records[-1] += " " + line.strip()
    return records


def _render(tree: _ChartTree, release: Release, kube_version: str,
            api_versions: Sequence[str]) -> tuple[dict[str, str], list[Mapping[str, str]], list[str]]:
    """`_rendered`, remembered for the same chart, values, names and capabilities."""
    return _rendered(tree.path, json.dumps(release.values, sort_keys=True), release.release_name, release.namespace,
                     kube_version, tuple(api_versions), release.include_crds)


@lru_cache(maxsize=64)
def _rendered(path: Path, values: str, name: str, namespace: str, kube_version: str, api_versions: tuple[str, ...],
              include_crds: bool) -> tuple[dict[str, str], list[Mapping[str, str]], list[str]]:
    """The rendered templates, the `crds/` files Helm would install with them, and what Helm logged.

    The chart is loaded afresh: rendering prunes disabled subcharts from the loaded chart in
    place (so it is never rendered twice), and after the render its `crds` are those of the
    enabled subcharts only, which is what Helm installs.
    """
    helm = helm_sdk()
    chart = helm.Chart.load(path)
    try:
        opts = {"name": name, "namespace": namespace, "kube_version": f"v{kube_version}.0",
                "api_versions": list(api_versions)}
        with _go_stderr() as logged:
            try:
                from helm_python import _native
            except ImportError:  # a future SDK without the private entry point: Helm's fixed capabilities
                rendered: dict[str, str] = chart.render(json.loads(values), name=name, namespace=namespace)
            else:
                rendered = json.loads(_native.call_string("helm_render", chart._raw(), values, json.dumps(opts)))
        return rendered, list(chart.crds) if include_crds else [], logged
    finally:
        chart.close()


def _manifests(rendered: Mapping[str, str], crds: Sequence[Mapping[str, str]]) -> tuple[list[Manifest], list[str]]:
    out: list[Manifest] = []
    bad: list[str] = []
    sources = [(name, text) for name, text in sorted(rendered.items()) if not name.endswith("NOTES.txt")]
    sources += [(str(c.get("filename") or c.get("name")), str(c.get("data") or "")) for c in crds]
    for name, text in sources:
        if not text.strip():
            continue
        try:
            docs = _helm_documents(text)
        except yaml.YAMLError as err:
            bad.append(f"{name}: rendered YAML does not parse: {_short(str(err), 200)}")
            continue
        for data in docs:
            if data is None:
                continue
            if not isinstance(data, dict) or "kind" not in data:
                bad.append(f"{name}: rendered a document without a kind")
                continue
            if data.get("kind") == "List" and isinstance(data.get("items"), list):
                out.extend(Manifest(name, i) for i in data["items"] if isinstance(i, dict))
                continue
            out.append(Manifest(name, data))
    return out, bad


def _post_render(manifests: list[Manifest], post: Sequence[Mapping[str, Any]]) -> tuple[list[Manifest], str]:
    """Flux `postRenderers` (kustomize patches and images), applied with kustomize as Flux does."""
    from ..core.yamlio import dump, dump_all
    from .kustomize import build

    docs: list[Any] = [dict(m.data) for m in manifests]
    for step in post:
        kustomize = step.get("kustomize")
        if not isinstance(kustomize, dict):
            continue
        with tempfile.TemporaryDirectory(prefix="hkgen-postrender-") as tmp:
            root = Path(tmp)
            (root / "rendered.yaml").write_text(dump_all(docs), "utf-8")
            spec: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                    "resources": ["rendered.yaml"]}
            for key in ("patches", "patchesStrategicMerge", "patchesJson6902", "images"):
                if kustomize.get(key):
                    spec[key] = kustomize[key]
            (root / "kustomization.yaml").write_text(dump(spec), "utf-8")
            result = build(root)
            if not result.ok:
                return manifests, result.error.replace(str(root) + "/", "")
            docs = [d for d in _load_all(result.output) if isinstance(d, dict)]
    by_id = {_identity(m.data): m.template for m in manifests}
    return [Manifest(by_id.get(_identity(d), "postRenderers"), d) for d in docs], ""


def _identity(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = _map(data.get("metadata"))
    return (str(data.get("apiVersion")), str(data.get("kind")), str(meta.get("namespace")), str(meta.get("name")))


# --------------------------------------------------------------------------------------------
# Checking

@dataclass(frozen=True)
class ReleaseResult:
    """What was checked for one release and what was found."""

    release: Release
    chart_path: Path | None  # None: not checked
    reason: str  # why it was not checked ('' when it was)
    keys_checked: int = 0  # keys compared with the chart's values
    keys_freeform: int = 0  # keys beneath free-form values (accepted)
    has_schema: bool = False
    manifests: tuple[Manifest, ...] = ()
    documents_validated: int = 0
    problems: tuple[Problem, ...] = ()

    @property
    def checked(self) -> bool:
        """True when the chart was found and the release checked."""
        return self.chart_path is not None

    def find(self, kind: str, name: str | None = None) -> list[Mapping[str, Any]]:
        """Rendered documents of `kind` (and `name`), for callers that inspect the output."""
        return [m.data for m in self.manifests if m.data.get("kind") == kind
                and (name is None or (m.data.get("metadata") or {}).get("name") == name)]


@dataclass(frozen=True)
class Report:
    """The outcome for a whole tree."""

    results: tuple[ReleaseResult, ...]
    problems: tuple[Problem, ...]  # every problem, tree-level ones included, sorted

    @property
    def errors(self) -> list[Problem]:
        """Problems that fail the check."""
        return [p for p in self.problems if p.severity == "error"]


@dataclass
class _Prepared:
    release: Release
    tree: _ChartTree | None = None
    reason: str = ""
    problems: list[Problem] = field(default_factory=list)
    keys: _KeyCheck | None = None
    manifests: list[Manifest] = field(default_factory=list)
    render_problems: list[Problem] = field(default_factory=list)


def check_tree(tree: Tree, chart_folders: Sequence[Path], *, kube_version: str, label: str = "",
               repo_prefix: str | None = None, crd_folders: Sequence[Path] = (),
               allow_missing: bool = False) -> Report:
    """Check every Helm release of `tree` against the charts in `chart_folders`.

    `kube_version` is the cluster's Kubernetes minor ('1.34'): the render's capabilities and the
    schemas rendered objects are validated with. A release whose chart is not in the folders is
    an error, or a warning with `allow_missing`.
    """
    helm_sdk()
    index = ChartIndex(chart_folders)
    releases, problems = find_releases(tree, label, repo_prefix=repo_prefix)
    prepared = [_prepare(r, index, kube_version, allow_missing) for r in releases]
    crd_docs = _tree_crds(tree)
    for item in prepared:
        crd_docs.extend(_chart_crds(item))
    schemas = ManifestSchemas(kube_version, crd_docs, crd_folders)
    # In a running cluster every chart sees the APIs of all CRDs installed (other charts' too),
    # and some charts render CRDs from templates: render again if those add API groups.
    for _round in range(2):
        api_versions = schemas.api_versions()
        for item in prepared:
            _render_release(item, schemas.kube_version, api_versions)
        for item in prepared:
            for manifest in item.manifests:
                schemas.add_crd(manifest.data)
        if schemas.api_versions() == api_versions:
            break
    results = [_finish(item, schemas) for item in prepared]
    for result in results:
        problems.extend(result.problems)
    return Report(tuple(results), tuple(sorted(set(problems))))


def _tree_crds(tree: Tree) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rel in sorted(tree):
        if rel.suffix in (".yaml", ".yml") and b"CustomResourceDefinition" in tree[rel]:
            try:
                out.extend(d for d in _load_all(tree[rel].decode("utf-8"))
                           if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition")
            except (*_YAML_ERRORS, UnicodeDecodeError):  # unreadable files are reported by the tree scan
                continue
    return out


def _prepare(release: Release, index: ChartIndex, kube_version: str, allow_missing: bool) -> _Prepared:
    item = _Prepared(release, problems=list(release.problems))
    at = release.at
    if not release.chart:
        item.reason = "no chart named"
        return item
    if release.from_path:
        item.reason = f"the chart is a folder in a {release.from_path}, not a chart release"
        return item
    if not _PINNED.match(release.version):
        item.reason = f"version {release.version or '(none)'!r} is not one pinned release"
        item.problems.append(at.problem(f"{release.chart}: chart version {shown(release.version)} is not pinned to "
                                        "one release; the chart that gets deployed cannot be checked",
                                        "pin an exact version"))
        return item
    entry = index.find(release.chart, release.version)
    if entry is None:
        have = index.versions(release.chart)
        item.reason = (f"no chart {release.chart} {release.version} in the chart folders"
                       + (f" (present: {', '.join(have)})" if have else ""))
        item.problems.append(at.problem(f"{release.chart} {release.version}: not checked: {item.reason}",
                                        "add the chart (directory or .tgz) to a --charts folder",
                                        warning=allow_missing))
        return item
    try:
        tree = _chart_tree(entry.path)
    except helm_sdk().HelmError as err:
        item.reason = f"the chart at {entry.path} does not load"
        item.problems.append(at.problem(f"{release.chart} {release.version}: {item.reason}: {_short(str(err))}"))
        return item
    item.tree = tree
    if tree.schema_note:
        item.problems.append(at.problem(f"{release.chart} {release.version}: values cannot be validated offline: "
                                        f"{tree.schema_note}"))
        return item
    constraint = str(tree.metadata.get("kubeVersion") or "")
    if constraint:
        try:
            allowed = kube_version_allows(constraint, kube_version)
        except ValueError:
            allowed = True  # a constraint this reader does not understand is left to Helm
        if not allowed:
            item.problems.append(at.problem(
                f"{release.chart} {release.version} requires Kubernetes {constraint!r}; the cluster runs "
                f"{kube_version}, so Helm refuses to install it"))
    keys = _check_keys(release.values, tree)
    item.keys = keys
    for path, key, candidates in keys.unknown:
        guess = _did_you_mean(key, candidates)
        item.problems.append(_where_of(release, path).problem(
            f"unknown values key {shown(key)}: {release.chart} {release.version} has no "
            f"{'.'.join(str(p) for p in path)} in its values.yaml",
            f"did you mean {shown(guess)}?" if guess else ""))
    return item


def _chart_crds(item: _Prepared) -> list[dict[str, Any]]:
    """Every `crds/` document of the chart, disabled subcharts included: schemas for the kinds,
    also where another release (one that cannot be checked here) installs those CRDs.
    """
    if item.tree is None:
        return []
    helm = helm_sdk()
    chart = helm.Chart.load(item.tree.path)
    try:
        crds = list(chart.crds)
    finally:
        chart.close()
    out: list[dict[str, Any]] = []
    for crd in crds:
        try:
            out.extend(d for d in _load_all(str(crd.get("data") or "")) if isinstance(d, dict))
        except _YAML_ERRORS:  # reported when the chart's documents are validated
            continue
    return out


def _render_release(item: _Prepared, kube_version: str, api_versions: Sequence[str]) -> None:
    release, tree = item.release, item.tree
    item.manifests, item.render_problems = [], []
    if tree is None or tree.schema_note:
        return
    helm = helm_sdk()
    name = f"{release.chart} {release.version}"
    try:
        rendered, crds, logged = _render(tree, release, kube_version, api_versions)
    except helm.HelmValuesError as err:
        unreadable = _SCHEMA_LOAD.search(str(err))
        if unreadable:  # the schema itself, not the values: e.g. a packaged chart without its schemas/
            where = unreadable.group(1).replace(tree.path.as_uri() + "/", "")
            item.render_problems = [release.at.problem(
                f"{name}: values cannot be validated offline: the chart's values.schema.json needs {where}, "
                "which the chart does not contain", "use the chart's source folder, which has all its schemas")]
        else:
            item.render_problems = _schema_problems(str(err), release, tree)
        return
    except helm.HelmError as err:
        item.render_problems = [release.at.problem(f"{name} does not render with these values: "
                                                   f"{_short(' '.join(str(err).split()), 400)}")]
        return
    manifests, bad = _manifests(rendered, crds)
    item.render_problems = [release.at.problem(f"{name}: {text}") for text in bad]
    item.render_problems.extend(_helm_warning(text, release, tree) for text in logged)
    if release.post_renderers:
        manifests, error = _post_render(manifests, release.post_renderers)
        if error:
            item.render_problems.append(release.at.problem(f"{name}: postRenderers do not apply: {_short(error)}"))
    item.manifests = manifests


_COALESCE = re.compile(r"(?:for|value for) ([^\s:(]+)")
# Helm's coalesce warnings: hkgen's value and the chart's default differ in shape; hkgen's wins.
_COALESCE_MEANING = (
    (r"^destination for .* is a table|^skipped value for .*Not a table",
     "hkgen sets a mapping where the chart's default is not one; Helm drops the default"),
    (r"^cannot overwrite table with non table",
     "hkgen sets a value that is not a mapping where the chart's default is one; Helm drops the default's keys"),
)


def _helm_warning(text: str, release: Release, tree: _ChartTree) -> Problem:
    """A line Helm logged during the render, as a warning at the values key it names."""
    where = release.at
    found = _COALESCE.search(text)
    if found:
        parts = found.group(1).strip(".").split(".")
        where = _where_of(release, tuple(parts[1:] if parts and parts[0] == tree.name else parts))
    text = re.sub(r"\((.{60}).*\)$", r"(\1...)", text.removeprefix("warning: "))
    for pattern, meaning in _COALESCE_MEANING:
        if re.search(pattern, text):
            text = f"{meaning} (Helm: {text})"
            break
    return where.problem(f"{release.chart} {release.version}: {text}", warning=True)


def _finish(item: _Prepared, schemas: ManifestSchemas) -> ReleaseResult:
    release, tree = item.release, item.tree
    if tree is None:
        return ReleaseResult(release, None, item.reason, problems=tuple(item.problems))
    keys = item.keys or _KeyCheck()
    has_schema = any((t.path / "values.schema.json").is_file() for t in tree.walk())
    problems = [*item.problems, *item.render_problems]
    name = f"{release.chart} {release.version}"
    validated = 0
    for manifest in item.manifests:
        found = schemas.errors(manifest.data)
        if found is None:
            problems.append(release.at.problem(
                f"{name} renders {manifest.title} ({manifest.template}) of "
                f"{manifest.data.get('apiVersion')}, a kind with no known schema (no CRD for it in the tree)",
                "add its CRD to the tree or pass its schema folder with --crd-schemas"))
            continue
        validated += 1
        for path, message in found:
            problems.append(release.at.problem(
                f"{name} renders {manifest.title} ({manifest.template}) that fails its schema at "
                f"{json_path(path)}: {message}"))
    return ReleaseResult(release, tree.path, "", keys.checked, keys.freeform, has_schema, tuple(item.manifests),
                         validated, tuple(problems))


def _where_of(release: Release, path: PathKey) -> Where:
    probe = tuple(path)
    while probe:
        if probe in release.where:
            return release.where[probe]
        probe = probe[:-1]
    return release.values_at


def _schema_problems(message: str, release: Release, tree: _ChartTree) -> list[Problem]:
    """Helm's schema report as located problems: `chart:` headings, then a tree of
    `- at '/ptr': msg` lines indented under the combinator that failed; the leaves say why.
    """
    entries: list[tuple[PathKey, int, str, str]] = []  # (chart base, indent, pointer, message)
    base: PathKey = ()
    for line in message.splitlines():
        m = _SCHEMA_LINE.match(line)
        if m:
            entries.append((base, len(line) - len(line.lstrip()), m.group(1), m.group(2)))
            continue
        heading = line.strip()
        if heading.endswith(":") and " " not in heading:
            base = tree.find_key(heading[:-1]) or ()
    out: list[Problem] = []
    name = f"{release.chart} {release.version}"
    for i, (chart_base, indent, pointer, text) in enumerate(entries):
        if i + 1 < len(entries) and entries[i + 1][1] > indent:
            continue  # a combinator ('allOf' failed): the lines under it are the reasons
        path = (*chart_base, *_pointer(pointer, release.values, chart_base))
        extra = _ADDITIONAL.search(text)
        keys = re.findall(r"'([^']*)'", extra.group(1)) if extra else []
        for key in keys or [None]:
            full = (*path, key) if key is not None else path
            shown_path = ".".join(str(p) for p in full) or "(top level)"
            out.append(_where_of(release, full).problem(f"{name}: values.schema.json rejects {shown_path}: {text}"))
    if not out:
        out.append(release.at.problem(f"{name}: values rejected: {_short(' '.join(message.split()), 400)}"))
    return out


def _pointer(pointer: str, values: Mapping[str, Any], base: PathKey) -> PathKey:
    node: Any = values
    for part in base:
        node = node.get(part) if isinstance(node, dict) else None
    out: list[str | int] = []
    for raw in pointer.split("/")[1:] if pointer else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit():
            out.append(int(part))
            node = node[int(part)] if int(part) < len(node) else None
        else:
            out.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return tuple(out)
