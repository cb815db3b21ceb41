"""A smoke run of the benchmark script (figures are judged by people, not asserted: see bench/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_bench_quick_runs_and_prints_every_figure(repo: Path) -> None:
    done = subprocess.run([sys.executable, str(repo / "bench" / "bench.py"), "--quick"], cwd=repo,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for figure in ("validate clusters/home", "vs floor", "check/kz (built, cold)", "write floor", "no-op/render",
                   "peak RSS", "no-op re-render files written: 0"):
        assert figure in done.stdout, figure
