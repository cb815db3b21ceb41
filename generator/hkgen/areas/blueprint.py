"""Stage 4, blueprint: decide every file of the rendered tree, as data, before anything is rendered.

The areas are a registry this module walks: component sources (platform, apps) say what the
GitOps engine applies; file sources (seeds, the engine's layout of those components, the docs)
say which files exist. Destinations are relative POSIX paths inside `clusters/<name>/`; the
builder refuses anything else, and two areas claiming one path, before a single byte is rendered.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from types import ModuleType

from ..config.model import Cluster
from ..core.errors import Problem, RenderError
from . import alerts, certificates, docs, gitops, maintenance, platform, restore, seeds, workloads
from .parts import Blueprint, Component, OutputFile

__all__ = ["COMPONENT_AREAS", "FILE_AREAS", "build_blueprint"]

# The registry. A component area has `components(cluster) -> list[Component]`; a file area has
# `files(cluster, components) -> list[OutputFile]`. Modules, not functions, so that the function
# is looked up when the builder runs (tests replace one area's function). Files are sorted by
# path afterwards, so the order here is only the order a reader meets them.
COMPONENT_AREAS: tuple[ModuleType, ...] = (platform, certificates, restore, workloads, alerts, maintenance)
FILE_AREAS: tuple[ModuleType, ...] = (seeds, gitops, docs)


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


def build_blueprint(cluster: Cluster) -> Blueprint:
    """The blueprint of the whole tree for `cluster`."""
    components: list[Component] = [c for area in COMPONENT_AREAS for c in area.components(cluster)]
    files: list[OutputFile] = [f for area in FILE_AREAS for f in area.files(cluster, components)]
    files.sort(key=lambda f: f.path)
    _check_paths(files, cluster.source)
    return Blueprint(cluster, tuple(files), tuple(components))
