"""`check_tree`: every release of a tree prepared, rendered and checked; results and problems per
release (`Report`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.load import PathKey, json_path
from ...core.errors import Problem, shown
from .helm import _ADDITIONAL, _SCHEMA_LINE, _SCHEMA_LOAD, Manifest, _manifests, _post_render, _render
from .index import ChartIndex, _chart_tree, _ChartTree
from .keys import _check_keys, _did_you_mean, _KeyCheck
from .kubeversion import _PINNED, kube_version_allows
from .releases import Release, find_releases
from .schemas import ManifestSchemas, _short
from .sdk import helm_sdk
from .sources import Tree
from .yamlpos import _YAML_ERRORS, Where, _load_all

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
