"""Build kustomization roots: `kustomize build` if a kustomize binary is on PATH, else
`kubectl kustomize` (kubectl ships kustomize). Builds run in a small bounded pool, all within one
time budget (BUILD_BUDGET seconds for every root together, however many there are), and their
output must parse: a kustomize that exits 0 with garbage is a tool error naming the root.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..core.errors import ToolError
from ..core.proc import find, run

__all__ = ["BuildResult", "build_all", "kustomize_command", "parse_output"]

MAX_PARALLEL = 2  # the target machines have 2 cores; kustomize is CPU-bound
BUILD_BUDGET = 300.0  # seconds for all builds of one verification together


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


def build_all(roots: Sequence[Path]) -> list[BuildResult]:
    """Build every root, at most MAX_PARALLEL at a time, results in input order."""
    if not roots:
        return []
    kustomize_command()  # fail once, early, if no tool exists
    deadline = time.monotonic() + BUILD_BUDGET
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
