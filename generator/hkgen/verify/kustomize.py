"""Build kustomization roots: `kustomize build` if a kustomize binary is on PATH, else
`kubectl kustomize` (kubectl ships kustomize). Builds run in a small bounded pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..core.errors import ToolError
from ..core.proc import find, run

__all__ = ["BuildResult", "build_all", "kustomize_command"]

MAX_PARALLEL = 2  # the target machines have 2 cores; kustomize is CPU-bound


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


def build(root: Path) -> BuildResult:
    """Build one kustomization root."""
    done = run([*kustomize_command(), str(root)], timeout=120)
    if done.returncode != 0:
        return BuildResult(root, False, "", done.tail())
    return BuildResult(root, True, done.stdout, "")


def build_all(roots: Sequence[Path]) -> list[BuildResult]:
    """Build every root, at most MAX_PARALLEL at a time, results in input order."""
    if not roots:
        return []
    kustomize_command()  # fail once, early, if no tool exists
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        return list(pool.map(build, roots))
