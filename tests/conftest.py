"""Shared fixtures. Tests are hermetic: HOME and caches point into tmp, nothing is written to the
repository, no network is used (hypothesis keeps no example database on disk)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
HOME_CLUSTER = REPO / "clusters" / "home"

settings.register_profile(
    "hkgen", database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile("hkgen")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("PRE_COMMIT_HOME", str(home / ".cache" / "pre-commit"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)


@pytest.fixture
def repo() -> Path:
    """The repository root (read-only for tests)."""
    return REPO


@pytest.fixture
def home_copy(tmp_path: Path) -> Path:
    """A writable copy of the reference cluster's inputs (cluster.yaml + secrets), no rendered tree."""
    dest = tmp_path / "clusters" / "home"
    dest.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(HOME_CLUSTER / name, dest / name)
    return dest


@dataclass(frozen=True)
class Run:
    """Result of running the hkgen CLI in a subprocess."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def hkgen() -> Iterator[object]:
    """Run the real `hkgen` entry point as a subprocess: hkgen(args, cwd=...) -> Run."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        import os

        full_env = dict(os.environ)
        full_env.update(env or {})
        done = subprocess.run(
            [sys.executable, "-m", "hkgen", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    yield run
