"""A smoke run of the benchmark script (figures are judged by people, not asserted: see bench/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import missing


def test_bench_quick_runs_and_prints_every_figure(repo: Path) -> None:
    done = subprocess.run([sys.executable, str(repo / "bench" / "bench.py"), "--quick"], cwd=repo,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for figure in ("validate clusters/home", "vs floor", "check/kz (built, cold)", "write floor", "no-op/render",
                   "peak RSS", "no-op re-render files written: 0"):
        assert figure in done.stdout, figure


def test_schema_bench_runs_and_prints_the_ratio(repo: Path) -> None:
    """bench/schemas.py compares with the copied upstream schemas of commit 7489cbd read from ../shared."""
    if not (repo.parent / "shared" / "schemas" / "crds").is_dir():
        missing("no ../shared/schemas (the 'before' side of the benchmark)")
    if subprocess.run(["git", "cat-file", "-e", "7489cbd^{commit}"], cwd=repo, check=False).returncode:
        missing("shallow checkout: commit 7489cbd (the 'before' code) is not available")
    done = subprocess.run([sys.executable, str(repo / "bench" / "schemas.py"), "--pairs", "1", "--nodes", "9"],
                          cwd=repo, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "after/before" in done.stdout and "custom resources +" in done.stdout, done.stdout
