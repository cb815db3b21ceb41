"""Stage 4, plan: decide every file of the rendered tree, as data, before anything is rendered.

A plan is a list of `OutputFile`s (destination, template, context, format). Areas contribute
their part: the node and satellite seeds (`seeds`), the platform and the apps as GitOps
`Component`s, which the engine module (`gitops`) lays out for Flux or Argo CD, and the docs.
Destinations are relative POSIX paths inside `clusters/<name>/`; the planner refuses anything
else, and two areas claiming one path, before a single byte is rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Literal

from ..config.model import Cluster
from ..core.errors import Problem, RenderError

__all__ = [
    "LAYERS",
    "RECREATE_ANNOTATIONS",
    "Chart",
    "Component",
    "Format",
    "Layer",
    "OutputFile",
    "Plan",
    "Release",
    "build_plan",
    "freeze",
]

Format = Literal["yaml", "cloud-config", "text", "markdown", "json"]
Layer = Literal["crds", "controllers", "configs", "apps"]
# Convergence order after any rebuild: CRDs, then controllers (operators, Longhorn), then their
# configuration (backup targets, recurring jobs, storage classes), then the apps.
LAYERS: tuple[Layer, ...] = ("crds", "controllers", "configs", "apps")

# On an object whose changes may touch immutable fields (a StorageClass's parameters, a Job's pod
# template), both engines delete and recreate it instead of failing: a failed apply would stall
# its whole layer, and every layer after it, until someone deleted the object by hand.
RECREATE_ANNOTATIONS = {
    "kustomize.toolkit.fluxcd.io/force": "enabled",  # Flux: recreate when the apply hits an immutable field
    "argocd.argoproj.io/sync-options": "Force=true,Replace=true",  # Argo CD: delete and create when out of sync
}


_LEAVES = frozenset({str, int, bool, float, type(None), PurePosixPath})


def freeze(value: Any) -> Any:
    """Read-only view of nested template context (dicts become mapping proxies, lists tuples)."""
    if type(value) in _LEAVES:  # the common case first: ABC isinstance checks are slow
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class OutputFile:
    """One file of the rendered tree."""

    path: PurePosixPath
    template: str  # loader name: "core/<path under templates/>" or "apps/<app>/templates/<file>"
    context: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    format: Format = "yaml"
    mode: int = 0o644


@dataclass(frozen=True)
class Chart:
    """A pinned Helm chart in a repository (https:// index or oci://)."""

    name: str
    repository: str
    version: str

    @property
    def oci(self) -> bool:
        """True for OCI registries."""
        return self.repository.startswith("oci://")


@dataclass(frozen=True)
class Release:
    """A Helm release the GitOps engine installs in the cluster (Helm runs there, not here)."""

    name: str
    namespace: str
    chart: Chart
    values: Mapping[str, Any]
    # Longer for charts that install CRDs or wait on volumes.
    timeout: str = "10m"


@dataclass(frozen=True)
class Component:
    """Something the GitOps engine applies as a unit: manifests and/or Helm releases in one layer.

    `files` paths are relative to the component's own folder; the engine decides where that
    folder lives and wraps `releases` as HelmRelease (Flux) or Application (Argo CD) objects.
    """

    name: str
    layer: Layer
    namespace: str
    files: tuple[OutputFile, ...] = ()
    releases: tuple[Release, ...] = ()
    depends_on: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Plan:
    """Everything `render` will produce for one cluster."""

    cluster: Cluster
    files: tuple[OutputFile, ...]
    components: tuple[Component, ...]

    @cached_property
    def templates(self) -> dict[PurePosixPath, str]:
        """Output path -> template it is rendered from (built once; a plan can hold thousands)."""
        return {f.path: f.template for f in self.files}


Contributor = Callable[[Cluster], list[OutputFile]]
ComponentSource = Callable[[Cluster], list[Component]]


def _check_paths(files: list[OutputFile], source: str) -> None:
    problems: list[Problem] = []
    seen: set[PurePosixPath] = set()
    for f in files:
        parts = f.path.parts
        if f.path.is_absolute() or not parts or any(p in ("", ".", "..") for p in parts):
            problems.append(
                Problem(source, 0, 0, "$", f"planned output path {str(f.path)!r} is not inside the cluster folder")
            )
        elif f.path in seen:
            problems.append(Problem(source, 0, 0, "$", f"two outputs are planned at {f.path}"))
        seen.add(f.path)
    if problems:
        raise RenderError(problems)


def build_plan(cluster: Cluster) -> Plan:
    """Plan the whole tree for `cluster`."""
    from . import docs, gitops, platform, seeds, workloads

    components = [*platform.components(cluster), *workloads.components(cluster)]
    files = [*seeds.plan(cluster), *gitops.plan(cluster, components), *docs.plan(cluster, components)]
    files.sort(key=lambda f: f.path)
    _check_paths(files, cluster.source)
    return Plan(cluster, tuple(files), tuple(components))
