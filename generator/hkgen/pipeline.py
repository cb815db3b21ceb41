"""The pipeline as functions: load -> validate -> model -> blueprint -> render -> verify -> write.

The CLI, `hkgen publish` and the tests drive hkgen through these; each stage lives in its own
module and this one only wires them, so every command runs the same stages the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .config.load import Document, load_file
from .core.errors import ConfigError, UsageError
from .validation.validate import Validation, validate_document

if TYPE_CHECKING:
    from .areas.parts import Blueprint
    from .render.jinja import Rendered

__all__ = ["Rendering", "cluster_file_for", "render_cluster", "validate_cluster"]


def cluster_file_for(path: Path) -> Path:
    """The cluster.yaml a command-line PATH refers to: the file, its folder, or any file inside
    a cluster folder (what pre-commit passes).
    """
    if path.is_dir() and path.name != "cluster.yaml":
        if (path / "cluster.yaml").exists():
            return path / "cluster.yaml"
        raise UsageError(f"{path}: no cluster.yaml in this folder")
    if path.name == "cluster.yaml":
        return path
    # A file anywhere inside a cluster folder (pre-commit passes e.g. apps/grafana/x.yaml): its cluster.
    for parent in path.parents:
        candidate = parent / "cluster.yaml"
        if candidate.exists():
            return candidate
    if path.suffix in (".yaml", ".yml"):
        return path  # a cluster file under another name, outside any cluster folder
    raise UsageError(f"{path}: not inside a cluster folder (no cluster.yaml above it)")


def display_name(path: Path) -> str:
    """How a path is shown in messages: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def validate_cluster(path: Path) -> tuple[Document, Validation]:
    """Load and validate; `ConfigError` for a file that cannot be loaded at all."""
    from .config import doccache

    file = cluster_file_for(path)
    doccache.forget()
    doc = load_file(file, display_name(file))
    result = validate_document(doc)
    if result.cluster is not None:
        from .config.secrets import check_secrets_file
        from .validation.dayafter import day2_problems, revise_secret_hints

        extra = revise_secret_hints(check_secrets_file(result.cluster, file.parent, doc), result.cluster,
                                    file.parent, str(Path(doc.file).parent / result.cluster.secrets_file))
        extra += day2_problems(result.cluster, file.parent, doc)
        if extra:
            problems = tuple(sorted({*result.problems, *extra}))
            broken = any(p.severity == "error" for p in extra)
            result = Validation(problems, None if broken else result.cluster)
    # The cluster file and its secrets file, once clean, are read from the cache next time.
    (doccache.forget if result.errors else doccache.keep)()
    return doc, result


@dataclass(frozen=True)
class Rendering:
    """A validated, planned, rendered and verified cluster, ready to write."""

    root: Path
    validation: Validation
    tree: Rendered
    modes: dict[PurePosixPath, int]
    # None when the render cache found the tree on disk: the blueprint is then laid out on demand.
    laid_out: Blueprint | None = field(default=None, repr=False, compare=False)

    @cached_property
    def blueprint(self) -> Blueprint:
        """The blueprint the tree was rendered from."""
        if self.laid_out is not None:
            return self.laid_out
        from .areas.blueprint import build_blueprint

        assert self.validation.cluster is not None  # noqa: S101 - a Rendering holds a valid cluster
        return build_blueprint(self.validation.cluster)


def render_cluster(path: Path, *, verify: bool = True, progress: Callable[[str], None] | None = None) -> Rendering:
    """Run every stage up to (not including) the write; raise on the first failing stage.

    `progress` (if given) hears the name of each stage as it starts: the CLI shows it on a
    terminal, since a large cluster takes seconds.
    """
    say = progress or (lambda _stage: None)
    file = cluster_file_for(path)
    say(f"validating {file}")
    _doc, validation = validate_cluster(file)
    cluster = validation.cluster
    if validation.errors or cluster is None:
        raise ConfigError(validation.problems)
    from .output.rendercache import remember_render, render_key, reuse

    key = render_key(cluster, (file, file.parent / cluster.secrets_file))
    found = reuse(key, file.parent)
    blueprint: Blueprint | None = None
    if found is not None:
        say("rendering: not needed, the files on disk are what this render produces")
        tree, listed = found.tree, found.files
    else:
        from .areas.blueprint import build_blueprint
        from .render.jinja import render_blueprint

        say(f"laying out the blueprint of {len(cluster.nodes)} nodes")
        blueprint = build_blueprint(cluster)
        say(f"rendering {len(blueprint.files)} files")
        tree = render_blueprint(blueprint)
        listed = tuple((str(f.path), f.template, f.format, f.mode) for f in blueprint.files)
    if verify:
        from .verify.cache import files_key, known_verified, record_verified

        verified = files_key(cluster, ((p, t, f) for p, t, f, _m in listed), tree)
        if known_verified(verified):
            say("verified before: the same files, hkgen and tools")
        else:
            from .areas.blueprint import build_blueprint
            from .verify.tree import verify as verify_tree

            say("verifying: YAML 1.1/1.2, kustomize builds, schemas")
            blueprint = blueprint or build_blueprint(cluster)
            verify_tree(blueprint, tree)
            record_verified(verified)
    if found is None:
        remember_render(key, listed, tree)
    modes = {PurePosixPath(p): m for p, _t, _f, m in listed}
    return Rendering(file.parent, validation, tree, modes, blueprint)
