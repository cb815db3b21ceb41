"""The parts areas contribute to stage 4 (blueprint), and the blueprint itself.

A blueprint is every file of the rendered tree decided as data before anything is rendered: a
list of `OutputFile`s (destination, template, context, format) plus the GitOps `Component`s the
platform and apps areas contribute (which `gitops` lays out for Flux or Argo CD). This module holds
only the shared types; `blueprint.py` walks the areas and assembles them, so no area imports the
builder and the builder imports every area (no cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Literal

from ..config.model import Cluster

__all__ = [
    "LAYERS",
    "RECREATE_ANNOTATIONS",
    "Blueprint",
    "Chart",
    "Component",
    "Format",
    "Layer",
    "OutputFile",
    "Release",
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
class Blueprint:
    """Everything `render` will produce for one cluster: stage 4's result."""

    cluster: Cluster
    files: tuple[OutputFile, ...]
    components: tuple[Component, ...]

    @cached_property
    def templates(self) -> dict[PurePosixPath, str]:
        """Output path -> template it is rendered from (built once; a blueprint can hold thousands)."""
        return {f.path: f.template for f in self.files}
