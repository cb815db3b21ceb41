"""Build kustomization roots: `kustomize build` if a kustomize binary is on PATH, else
`kubectl kustomize` (kubectl ships kustomize). Builds run in a small bounded pool, all within one
time budget (BUILD_BUDGET seconds for every root together, however many there are), and their
output must parse: a kustomize that exits 0 with garbage is a tool error naming the root.

Several roots are first built in one kustomize run (`build_together`): a scratch kustomization
lists them as resources and asks for origin annotations (`buildMetadata: [originAnnotations]`),
which name the file (or the generator's kustomization) each object came from, so the objects are
handed back to their roots and the annotation is taken off again. A kustomize process start is
most of a small root's build (kubectl kustomize: about 0.05 s of a 0.06-0.2 s build), so one run
costs about what the largest root alone does. The parent adds no transformer, and kustomize's
default order is a total order (kind, then name), so each root's share is exactly what building
it alone gives (tests hold the two equal on the reference trees). When the run fails (an error
in one root, or one object in two roots, which kustomize refuses) or an object's origin is not
one root, the roots are built one by one as before, so what is reported and how is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import ToolError
from ..core.proc import find, run

__all__ = ["ORIGIN", "BuildResult", "build_all", "build_together", "kustomize_command", "parse_output"]

MAX_PARALLEL = 2  # the target machines have 2 cores; kustomize is CPU-bound
BUILD_BUDGET = 300.0  # seconds for all builds of one verification together
ORIGIN = "config.kubernetes.io/origin"  # the annotation kustomize's originAnnotations adds
_TOGETHER = ".hkgen-all-roots"  # the scratch parent's folder, beside the roots (no tree path starts with ".")


@dataclass(frozen=True)
class BuildResult:
    """Outcome of building one root."""

    root: Path
    ok: bool
    output: str
    error: str


@cache
def kustomize_command() -> tuple[str, ...]:
    """argv prefix that builds a root: ('kustomize', 'build') or ('kubectl', 'kustomize')."""
    binary = find("kustomize")
    if binary:
        return (binary, "build")
    kubectl = find("kubectl")
    if kubectl:
        return (kubectl, "kustomize")
    raise ToolError("neither kustomize nor kubectl is on PATH; install one of them to build the rendered tree")


def build(root: Path, deadline: float | None = None) -> BuildResult:
    """Build one kustomization root (by `deadline`, a time.monotonic() value, if given)."""
    left = BUILD_BUDGET if deadline is None else deadline - time.monotonic()
    if left <= 0:
        raise ToolError(f"kustomize builds did not finish within {BUILD_BUDGET:g} s (the budget of one "
                        f"verification); {root.name} was not built")
    done = run([*kustomize_command(), str(root)], timeout=left)
    if done.returncode != 0:
        return BuildResult(root, False, "", done.tail())
    return BuildResult(root, True, done.stdout, "")


def build_all(roots: Sequence[Path], deadline: float | None = None) -> list[BuildResult]:
    """Build every root, at most MAX_PARALLEL at a time, results in input order (all by
    `deadline`, a time.monotonic() value; BUILD_BUDGET from now if not given).
    """
    if not roots:
        return []
    kustomize_command()  # fail once, early, if no tool exists
    deadline = time.monotonic() + BUILD_BUDGET if deadline is None else deadline
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        return list(pool.map(lambda root: build(root, deadline), roots))


def parse_output(label: str, output: str) -> list[Any]:
    """The documents of a successful build of the root `label`; output that is not YAML (a broken
    or foreign kustomize that still exits 0) is a `ToolError`, not a crash.
    """
    import yaml

    from ..config.load import load_generated_all

    try:
        return load_generated_all(output)
    except yaml.YAMLError as err:
        first = output.strip().splitlines()[:1]
        tool = " ".join([Path(kustomize_command()[0]).name, *kustomize_command()[1:]])
        raise ToolError(f"`{tool} {label}` exited 0 but printed output that is not "
                        f"YAML ({' '.join(str(err).split())}); first line: {first[0][:120] if first else '(empty)'!r}; "
                        "check the kustomize/kubectl on PATH") from err


def build_together(base: Path, roots: Sequence[PurePosixPath],
                   deadline: float | None = None) -> dict[PurePosixPath, list[Any]] | None:
    """The documents of every root (folders under `base`), built in one kustomize run (by
    `deadline`, as `build_all`) and handed back to their roots; None when that run cannot stand
    for the separate builds (see above).
    """
    import json

    import yaml

    folder = base / _TOGETHER
    if len(roots) < 2 or folder.exists() or any(r.is_absolute() or ".." in r.parts for r in roots):
        return None
    folder.mkdir()
    # JSON is YAML: kustomize reads it, and no YAML writer is needed here.
    (folder / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "buildMetadata": ["originAnnotations"], "resources": [f"../{r}" for r in roots]}))
    left = BUILD_BUDGET if deadline is None else deadline - time.monotonic()
    if left <= 0:
        return None  # the separate builds report the spent budget
    done = run([*kustomize_command(), str(folder)], timeout=left)
    if done.returncode != 0:
        return None
    out: dict[PurePosixPath, list[Any]] = {r: [] for r in roots}
    for doc in parse_output(" ".join(str(r) for r in roots), done.stdout):
        if not isinstance(doc, dict):
            continue
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        try:
            origin = yaml.safe_load(annotations.pop(ORIGIN)) if ORIGIN in annotations else None
        except yaml.YAMLError:
            return None
        # A file's objects name it as `path`; a generator's, the kustomization as `configuredIn`.
        source = (origin.get("path") or origin.get("configuredIn")) if isinstance(origin, dict) else None
        if not isinstance(source, str) or not source.startswith("../"):
            return None
        owners = [r for r in roots if r in PurePosixPath(source[3:]).parents]
        if len(owners) != 1:
            return None
        if not annotations:
            del doc["metadata"]["annotations"]
        out[owners[0]].append(doc)
    return out
