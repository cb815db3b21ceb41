"""Finding Flux HelmReleases and Helm-sourced Argo CD Applications, and assembling exactly the values
the engine passes to Helm, each key with where it is written.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ...config.load import PathKey, json_path
from ...core.errors import Problem
from .sdk import helm_sdk
from .sources import _MAX_NODES, Tree, _block_positions, _Doc, _index_tree, _label, _TreeIndex
from .yamlpos import _YAML_ERRORS, Where, _child, _compose_all, _plain, _Positions, _positions

_ARGO = "argoproj.io/"

_FLUX_HELM = "helm.toolkit.fluxcd.io/"

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
