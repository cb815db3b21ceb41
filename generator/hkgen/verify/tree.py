"""Stage 6, verify: prove the rendered tree is what it claims before it reaches the disk.

1. Every YAML file reparses, and a YAML 1.1 reader (PyYAML, as in cloud-init; go-yaml v2 in
   kubectl behaves alike) reads exactly what a YAML 1.2 reader reads.
2. Every kustomization root builds with kustomize (in a scratch copy of the tree).
3. Every document is checked against its schema by the checkers registered in `CHECKERS`
   (Kubernetes and CRD schemas, the cloud-config schema, the MicroK8s launch-config schema).
Problems name the output file and the template it came from.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from ..areas.parts import Blueprint
from ..core.errors import Problem, VerifyError
from ..render.jinja import Rendered

__all__ = ["CHECKERS", "Built", "Checker", "kustomize_roots", "verify"]


@dataclass(frozen=True)
class Built:
    """Documents a kustomization root builds to."""

    root: PurePosixPath
    documents: tuple[dict[str, Any], ...]


Checker = Callable[[Blueprint, Rendered, list[Built]], list[Problem]]
# Modules with a `check(blueprint, tree, built) -> list[Problem]` function. Tree checkers read only the
# blueprint and the rendered files; build checkers read what kustomize built as well.
TREE_CHECKERS: tuple[str, ...] = ("cloudinit",)
BUILD_CHECKERS: tuple[str, ...] = ("k8s",)
CHECKERS: tuple[str, ...] = TREE_CHECKERS + BUILD_CHECKERS
# From this many files on, the tree checkers run in a forked child (another core) while this
# process reparses, builds and checks the built objects; below it the fork costs more than it saves.
PARALLEL_MIN_FILES = 200
# The child's share of a large tree's per-file tree checks: this thread, which reparses and checks
# the built objects first, checks the rest (measured at 1,000 nodes: the child had ~3 s of seed
# checks, this thread ~1.5 s of work of its own).
CHILD_SHARE = 0.7


def _label(blueprint: Blueprint, path: PurePosixPath) -> str:
    return f"clusters/{blueprint.cluster.name}/{path}"


def _template_of(blueprint: Blueprint, path: PurePosixPath) -> str:
    return blueprint.templates.get(path, "?")


def reparse(blueprint: Blueprint, tree: Rendered) -> list[Problem]:
    """Each YAML file must parse, and every plain scalar must mean the same in YAML 1.1 and 1.2.

    The files are composed once with libyaml (PyYAML's C parser, a YAML 1.1 reader like
    cloud-init's and go-yaml v2's); for every unquoted scalar the YAML 1.1 resolution is compared
    with the YAML 1.2 one (ruamel's resolver), including the numeric value, so `on`, `no`,
    `010` or `1:20` left unquoted by a template are caught wherever they are.
    """
    import yaml as pyyaml

    loader = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)
    problems: list[Problem] = []
    formats = {f.path: f.format for f in blueprint.files}
    for path in sorted(tree):
        if formats.get(path) not in ("yaml", "cloud-config"):
            continue
        label = _label(blueprint, path)
        template = _template_of(blueprint, path)
        try:
            found = [Problem(label, event.start_mark.line + 1, event.start_mark.column + 1, "$",
                             f"unquoted {event.value[:40]!r} {reason} (template {template}); "
                             "render the value with the yaml filter")
                     for event, reason in _plain_ambiguities(pyyaml.parse(tree[path].decode("utf-8"), Loader=loader))]
        except pyyaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problems.append(Problem(label, (mark.line + 1) if mark else 0, (mark.column + 1) if mark else 0, "$",
                                    f"rendered YAML does not parse (template {template}): "
                                    f"{getattr(err, 'problem', None) or err}"))
            continue
        problems.extend(found)
    return problems


def _plain_ambiguities(events: Iterable[Any]) -> Iterator[tuple[Any, str]]:
    """(event, reason) for each plain scalar of a YAML event stream that YAML 1.1 and 1.2 read apart.

    libyaml's events, not composed nodes: composing resolves every scalar in Python and builds a
    node graph only to be walked once (about twice the time at 1,000 nodes). What the composer
    refuses beyond the parser (an undefined alias, a duplicate anchor) is refused here the same
    way, with PyYAML's own error.
    """
    import yaml as pyyaml
    from yaml.composer import ComposerError

    anchors: dict[str, Any] = {}
    for event in events:
        kind = type(event)
        if kind is pyyaml.AliasEvent:
            if event.anchor not in anchors:
                raise ComposerError(None, None, "found undefined alias", event.start_mark)  # as libyaml words it
            continue
        if kind is pyyaml.DocumentEndEvent:
            anchors.clear()
            continue
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            if anchor in anchors:
                raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence", anchors[anchor],
                                    "second occurrence", event.start_mark)
            anchors[anchor] = event.start_mark
        if kind is pyyaml.ScalarEvent and not event.style:
            reason = _plain_reason(event.tag, event.value, event.implicit)
            if reason:
                yield event, reason


@lru_cache(maxsize=65536)
def _plain_reason(tag: str | None, value: str, implicit: tuple[bool, bool]) -> str:
    """`_ambiguity` of a plain scalar event, resolved for YAML 1.1 as PyYAML's composer does."""
    if tag is None or tag == "!":
        tag = _resolver11().resolve(_scalar_node(), value, implicit)
    return _ambiguity(tag, value)


@cache
def _resolver11() -> Any:
    from yaml.resolver import Resolver

    return Resolver()  # SafeLoader's and CSafeLoader's resolver (no path resolvers)


@cache
def _scalar_node() -> Any:
    import yaml as pyyaml

    return pyyaml.ScalarNode


@lru_cache(maxsize=65536)
def _ambiguity(tag11: str, text: str) -> str:
    """Why a plain scalar reads differently in YAML 1.1 and 1.2 ('' when it does not)."""
    from ruamel.yaml.nodes import ScalarNode

    tag12 = str(_resolver12().resolve(ScalarNode, text, (True, False)))
    short11, short12 = tag11.rsplit(":", 1)[-1], tag12.rsplit(":", 1)[-1]
    if short11 != short12:
        return f"reads as {short11} in YAML 1.1 but as {short12} in YAML 1.2"
    if short11 in ("int", "float") and _number11(text) != _number12(text):
        return "is a different number in YAML 1.1 and YAML 1.2"
    return ""


@cache
def _resolver12() -> Any:
    from ruamel.yaml.resolver import VersionedResolver

    return VersionedResolver(version=(1, 2))


def _number11(text: str) -> Any:
    import yaml as pyyaml

    # safe_load of a one-key mapping is PyYAML's own YAML 1.1 number parsing (octal 010, 1:20...).
    return pyyaml.safe_load(f"v: {text}")["v"]


def _number12(text: str) -> Any:
    """A YAML 1.2 (core schema, as ruamel resolves it) int or float."""
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    body = clean.lstrip("+-")
    low = body.lower()
    try:
        if low.startswith("0o"):
            return sign * int(body[2:], 8)
        if low.startswith("0x"):
            return sign * int(body[2:], 16)
        if low in (".inf", ".nan"):
            return sign * float(low[1:])
        return sign * (int(body) if body.isdigit() else float(body))
    except ValueError:
        return text


def kustomize_roots(tree: Rendered) -> list[PurePosixPath]:
    """Folders of the tree that hold a kustomization.yaml, sorted."""
    return sorted(p.parent for p in tree if p.name == "kustomization.yaml")


def top_roots(tree: Rendered) -> list[PurePosixPath]:
    """The kustomization roots no other root includes as a resource.

    Building a root builds every root it includes, with the same files, so the included ones
    need no build of their own: each object is built (and schema-checked) once, not twice.
    """
    import posixpath

    from ..config.load import load_generated_all

    roots = kustomize_roots(tree)
    known = set(roots)
    covered: set[PurePosixPath] = set()
    for root in roots:
        docs = load_generated_all(tree[root / "kustomization.yaml"].decode("utf-8"))
        for doc in docs:
            for entry in (doc or {}).get("resources") or []:
                if isinstance(entry, str) and "://" not in entry:
                    child = PurePosixPath(posixpath.normpath(str(root / entry)))
                    if child in known and child != root:
                        covered.add(child)
    return [r for r in roots if r not in covered]


def build_roots(blueprint: Blueprint, tree: Rendered) -> tuple[list[Built], list[Problem]]:
    """Build every kustomization root of `tree` in a scratch copy; parse the output."""
    from .kustomize import BUILD_BUDGET, build_all, build_together, parse_output

    roots = top_roots(tree)
    if not roots:
        return [], []
    problems: list[Problem] = []
    built: list[Built] = []
    # kustomize (load restrictor RootOnly) reads nothing outside a kustomization root's folder,
    # so only those files are copied: not the 4,000 seed files of a 1,000-node cluster.
    inside = set(kustomize_roots(tree))
    with tempfile.TemporaryDirectory(prefix="hkgen-verify-") as tmp:
        base = Path(tmp)
        made: set[PurePosixPath] = set()
        for rel, data in tree.items():
            if not inside.intersection(rel.parents):
                continue
            if rel.parent not in made:
                (base / rel.parent).mkdir(parents=True, exist_ok=True)
                made.add(rel.parent)
            (base / rel).write_bytes(data)
        # One budget for the shared run and, should it not do, the builds one by one.
        deadline = time.monotonic() + BUILD_BUDGET
        together = build_together(base, roots, deadline)
        if together is not None:
            return [Built(rel, tuple(together[rel])) for rel in roots], []
        results = build_all([base / r for r in roots], deadline)
        for rel, result in zip(roots, results, strict=True):
            label = _label(blueprint, rel / "kustomization.yaml")
            if not result.ok:
                message = result.error.replace(str(base) + "/", "").strip().splitlines()
                problems.append(Problem(label, 0, 0, "$", "kustomize build failed: " + " | ".join(message[-3:])))
                continue
            docs = tuple(d for d in parse_output(str(rel), result.output) if isinstance(d, dict))
            built.append(Built(rel, docs))
    return built, problems


def _module(name: str) -> Any:
    import importlib

    return importlib.import_module(f"{__package__}.{name}")


def _checker(name: str) -> Checker:
    checker: Checker = _module(name).check
    return checker


def _tree_checks(blueprint: Blueprint, tree: Rendered) -> list[Problem]:
    problems: list[Problem] = []
    for name in TREE_CHECKERS:
        problems.extend(_checker(name)(blueprint, tree, []))
    return problems


def _shares(tree: Rendered) -> tuple[Rendered, Rendered]:
    """The tree split for the tree checkers of a large tree: (the child's share, this thread's).

    Only per-file checkers (`PER_FILE`) may see part of a tree; otherwise the child gets it all.
    This thread reparses, builds and checks the built objects meanwhile, so the child gets the
    first CHILD_SHARE of the bytes (a seed check costs about in proportion to its size).
    """
    if not all(getattr(_module(name), "PER_FILE", False) for name in TREE_CHECKERS):
        return tree, {}
    paths = sorted(tree)
    goal, total = CHILD_SHARE * sum(len(data) for data in tree.values()), 0
    cut = len(paths)
    for index, path in enumerate(paths):
        total += len(tree[path])
        if total >= goal:
            cut = index + 1
            break
    return {p: tree[p] for p in paths[:cut]}, {p: tree[p] for p in paths[cut:]}


def verify(blueprint: Blueprint, tree: Rendered) -> list[Built]:
    """Run every check; raise `VerifyError` with all problems, else return the built roots.

    A large tree is checked on two cores: the tree checkers in a forked child (before any
    thread starts), the kustomize builds in a background thread while this one reparses.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..core.proc import fork_call

    ahead, behind = _shares(tree)
    child = fork_call(_tree_checks, blueprint, ahead) if len(tree) >= PARALLEL_MIN_FILES else None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hkgen-build") as background:
            builds = background.submit(build_roots, blueprint, tree)
            # While kustomize builds (other processes), this thread does every check that does
            # not need their output: reparse, the tree checkers, and the build checkers' share
            # that reads the tree alone (`prepare`: imports, validators, files no root covers).
            problems = reparse(blueprint, tree)
            from_tree = _tree_checks(blueprint, tree) if child is None else []
            for name in BUILD_CHECKERS:
                prepare = getattr(_module(name), "prepare", None)
                if prepare is not None:
                    prepare(blueprint, tree)
            built, build_problems = builds.result()
        problems.extend(build_problems)
        from_builds: list[Problem] = []
        for name in BUILD_CHECKERS:
            from_builds.extend(_checker(name)(blueprint, tree, built))
        if child is not None:
            # This thread's share of the tree checks, while the child finishes its own; the
            # shares are consecutive runs of the sorted paths, so the problems keep their order.
            behind_problems = _tree_checks(blueprint, behind) if behind else []
            from_tree = child.result() + behind_problems
        problems.extend(from_tree)
        problems.extend(from_builds)
    except BaseException:
        if child is not None:
            child.cancel()
        raise
    if problems:
        raise VerifyError(problems)
    return built
