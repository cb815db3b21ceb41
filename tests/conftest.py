"""Shared fixtures. Tests are hermetic: HOME and caches point into tmp, nothing is written to the
repository, no network is used (hypothesis keeps no example database on disk)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

REPO = Path(__file__).resolve().parents[1]
HOME_CLUSTER = REPO / "clusters" / "home"

# Hypothesis keeps caches (constants, unicode data) in ./.hypothesis by default: tests write
# nothing into the repository, so they go to a temporary folder removed at exit.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="hkgen-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, True)

settings.register_profile(
    "hkgen", database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile("hkgen")

# CI (.ci/run) sets HKGEN_REQUIRE_TOOLS=1: a test whose tool or data is missing then fails instead of
# skipping, so a CI run whose machine lost a tool cannot pass green with the test silently skipped.
REQUIRE_TOOLS_ENV = "HKGEN_REQUIRE_TOOLS"


def require_tools() -> bool:
    """Whether missing tools fail the tests (read when asked: tests may change the environment)."""
    return os.environ.get(REQUIRE_TOOLS_ENV, "") not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Skip the current test for want of a tool or data; under HKGEN_REQUIRE_TOOLS=1 fail it."""
    if require_tools():
        pytest.fail(f"{reason} ({REQUIRE_TOOLS_ENV}=1: this machine must have it)", pytrace=False)
    pytest.skip(reason)


def need_programs(*programs: str, reason: str = "") -> None:
    """`missing(...)` unless every program is on PATH."""
    absent = [p for p in programs if shutil.which(p) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed" + (f" ({reason})" if reason else ""))


def need_module(name: str) -> ModuleType:
    """`pytest.importorskip`, failing instead under HKGEN_REQUIRE_TOOLS=1."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python module {name} is not installed (pip install -e '.[dev,charts]')")


def need_path(path: Path, what: str) -> Path:
    """`missing(...)` unless `path` exists."""
    if not path.exists():
        missing(f"{what} not found at {path}")
    return path


def tools(*programs: str, reason: str = "") -> pytest.MarkDecorator:
    """Mark a test (or module, via pytestmark) as needing these programs on PATH."""
    return pytest.mark.tools(*programs, reason=reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tools(*programs, reason=''): needs these programs on PATH "
                                       "(skipped without them; failed under HKGEN_REQUIRE_TOOLS=1)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("tools"):
        need_programs(*mark.args, reason=str(mark.kwargs.get("reason", "")))


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
    # The CLI sets a process-wide cache folder; an in-process run must not leave it to the next test.
    from hkgen.core import resources

    monkeypatch.setattr(resources, "_CACHE", [])


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


# Values this short are searched as whole words only: a 4-hex-digit Zigbee PAN id such as "3500"
# turns up by chance inside any checksum or ciphertext, which is no leak.
SHORT_SECRET = 8


def secret_in(value: str, text: str) -> bool:
    """Whether `text` holds the secret `value` (short values only as a whole word)."""
    if len(value) >= SHORT_SECRET:
        return value in text
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text) is not None


def write_secrets(cluster_dir: Path, values: dict[str, str] | None = None) -> tuple[Path, dict[str, str]]:
    """Give `cluster_dir` a fresh age key (outside the cluster folder) and a real SOPS-encrypted
    secrets file holding every key its cluster.yaml requires. Returns (age key file, values).

    cluster.yaml's `secrets.ageRecipients` is rewritten to the new key. `values` override the
    generated ones (tests use known values to scan the tree for them).
    """
    import secrets as rnd

    import pyrage

    from hkgen.config.load import load_file
    from hkgen.config.secrets import required_keys, sops_command
    from hkgen.core.yamlio import dump
    from hkgen.validation.validate import validate_document

    identity = pyrage.x25519.Identity.generate()
    key_file = cluster_dir.parent.parent / f"{cluster_dir.name}.agekey"
    key_file.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    key_file.chmod(0o600)
    cluster_file = cluster_dir / "cluster.yaml"
    text = cluster_file.read_text()
    doc = load_file(cluster_file)
    for old in doc.data["secrets"]["ageRecipients"]:
        text = text.replace(old, str(identity.to_public()))
    cluster_file.write_text(text)
    result = validate_document(load_file(cluster_file))
    if result.cluster is None:
        raise AssertionError("cluster invalid: " + "; ".join(p.format() for p in result.errors))
    from hkgen.ops.scaffold import _generate

    generated: dict[str, str] = {}
    for need in required_keys(result.cluster):
        # hkgen's own generator (the forms `secrets check` accepts); values a user must bring
        # (S3, Wi-Fi, custom apps) get a random URL-safe string, which fits each of their forms.
        generated[need.name] = _generate(need, set(generated.values())) or rnd.token_urlsafe(18)
    from hkgen.ops.pki import DERIVED, derive  # the CA pair and the login hash, made from the others

    derived = {k.name for k in required_keys(result.cluster) if k.name in DERIVED}
    generated.update(values or {})
    generated.update(derive(result.cluster, derived - set(values or {}), generated))
    plain = cluster_dir.parent.parent / "secrets.plain.yaml"
    plain.write_text(dump({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "cluster-secrets", "namespace": "flux-system"},
                           "type": "Opaque", "stringData": generated}))
    done = subprocess.run(
        [sops_command(), "--disable-version-check", "--encrypt", "--age", str(identity.to_public()),
         "--encrypted-regex", "^(data|stringData)$", "--input-type", "yaml", "--output-type", "yaml", str(plain)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    plain.unlink()
    (cluster_dir / "secrets.sops.yaml").write_text(done.stdout)
    return key_file, generated


@pytest.fixture
def secrets_for() -> object:
    """`secrets_for(cluster_dir, values=None) -> (age key file, values)`: see write_secrets."""
    return write_secrets


# A stand-in `openssl` for the join and reclaim scripts (no peer runs here): s_client prints which
# address it reached; x509 answers with the CA that address presents ($FAKE_CAS: "address keyid" lines).
FAKE_OPENSSL = """#!/bin/bash
case $1 in
  s_client) echo "CERT ${3%%:*}" ;;
  x509)
    read -r _ peer
    ca=$(sed -n "s/^$peer //p" "$FAKE_CAS")
    [ -n "$ca" ] && printf 'X509v3 Authority Key Identifier: \\n    keyid:%s\\n' "$ca" ;;
esac
exit 0
"""


@pytest.fixture
def hkgen_cache(tmp_path: Path) -> Iterator[Path]:
    """hkgen's cache folder (as the CLI sets it) in tmp, with the in-process document memory empty
    before and after: for tests of the caches that live there."""
    from hkgen.config import doccache
    from hkgen.core import resources

    folder = tmp_path / "cache"
    resources.set_cache_dir(folder)
    doccache.forget()
    yield folder
    resources._CACHE.clear()
    doccache.forget()


def formatted_problems(path: Path) -> list[str]:
    """What `hkgen validate` would print for the cluster folder (or file) `path`, line by line."""
    from hkgen.pipeline import validate_cluster

    _doc, result = validate_cluster(path)
    return [p.format() for p in result.problems]


@pytest.fixture(scope="session")
def home_model() -> Any:
    """The reference cluster's validated model (`hkgen.config.model.Cluster`), read once."""
    from hkgen.config.load import load_text
    from hkgen.validation.validate import validate_document

    result = validate_document(load_text((HOME_CLUSTER / "cluster.yaml").read_text(), "cluster.yaml"))
    assert result.cluster is not None
    return result.cluster
