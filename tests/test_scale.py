"""A cluster large enough for the two-core verification (see verify.PARALLEL_MIN_FILES) renders
through the real CLI, and gives the same tree as the one-core path. Timings live in bench/."""

from __future__ import annotations

import importlib.util
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest

from hkgen import pipeline
from hkgen.core import proc
from hkgen.verify import tree as verify


def _bench(repo: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("hkgen_bench", repo / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_large_cluster_renders_the_same_on_two_cores_as_on_one(repo: Path, tmp_path: Path, hkgen,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cluster_dir = _bench(repo).synthetic(60, 8, tmp_path)
    run = hkgen("render", "-q", str(cluster_dir))
    assert run.returncode == 0, run.stdout + run.stderr
    written = {PurePosixPath(p.relative_to(cluster_dir).as_posix()): p.read_bytes()
               for p in cluster_dir.rglob("*") if p.is_file() and p.name not in ("cluster.yaml", "secrets.sops.yaml")
               and not p.name.startswith(".hkgen-")}
    assert len(written) >= verify.PARALLEL_MIN_FILES  # the CLI took the forked path
    # In this process, once forked and once not: both verify and match the CLI's files.
    forks = []
    real = proc.fork_call
    monkeypatch.setattr(proc, "fork_call", lambda fn, *a: forks.append(real(fn, *a)) or forks[-1])
    forked = pipeline.render_cluster(cluster_dir)
    monkeypatch.setattr(verify, "PARALLEL_MIN_FILES", 10**9)
    inline = pipeline.render_cluster(cluster_dir)
    assert len(forks) == 1 and forks[0] is not None
    assert forked.tree == inline.tree
    assert {p: b for p, b in forked.tree.items() if not p.name.startswith(".hkgen-")} == written
