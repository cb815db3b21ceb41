"""A repository that works from its first push: `hkgen init` makes the Git repository (or refuses
inside another one), the first `hkgen publish` commits the scaffold (hooks, schema, CI workflows,
Renovate config) with the cluster, and a fresh clone passes the pre-commit hooks and
`render --check` with no extra step.

Everything is real: git with a bare repository in tmp as the remote, the real `pre-commit` running
the repository's local hooks (the installed hkgen), real kustomize in render's verification.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
HKGEN = BIN / "hkgen"
PRE_COMMIT = BIN / "pre-commit"
SCAFFOLD_FILES = {".gitignore", ".sops.yaml", ".pre-commit-config.yaml", "README.md", "schemas/cluster.schema.json",
                  ".github/workflows/hkgen.yaml", ".forgejo/workflows/hkgen.yaml", "renovate.json"}


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "GIT_AUTHOR_NAME": "Test",
                "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "Test",
                "GIT_COMMITTER_EMAIL": "t@example.invalid", "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")})
    return env


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str],
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _ok(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = _run(argv, cwd, env, timeout)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def fill_placeholders(cluster_file: Path) -> None:
    """What a user does after `hkgen init`: the real MACs, device ids, SSH key and repository URL."""
    text = cluster_file.read_text()
    text = re.sub(r"ssh-ed25519 \S+ replace-with-your-key",
                  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJzLW93bi1rZXktZm9yLXRoZS1waXMtMTIzNDU2 me@laptop", text)
    text = re.sub(r"'02:00:00:00:00:0(\d)'", r"'dc:a6:32:12:34:5\1'", text)
    text = re.sub(r"usb-REPLACE-WITH-SSD-ID-of-(\w+)-0:0", r"usb-Samsung_Portable_SSD_T7_S6W\1-0:0", text)
    text = text.replace("usb-REPLACE-WITH-ZIGBEE-STICK-ID-if00-port0",
                        "usb-Silicon_Labs_Sonoff_Zigbee_3.0_USB_Dongle_Plus_0001-if00-port0")
    text = text.replace("ssh://git@github.com/your-account/home-ops.git", "ssh://git@git.example.invalid/me/ops.git")
    cluster_file.write_text(text)


def test_init_publish_clone_hooks_and_render_check(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _ok([HKGEN, "init", "ops", "--no-input", "--age-key", tmp_path / "ops.agekey"], tmp_path, env)
    repo = tmp_path / "ops"
    assert (repo / ".git").is_dir()  # init made the Git repository
    assert _ok(["git", "symbolic-ref", "--short", "HEAD"], repo, env).strip() == "main"
    cluster = repo / "clusters" / "home"
    fill_placeholders(cluster / "cluster.yaml")
    validated = _run([HKGEN, "validate", "clusters/home"], repo, env)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "placeholder" not in validated.stdout
    _ok([HKGEN, "render", "clusters/home", "-q"], repo, env)
    remote = tmp_path / "remote.git"
    _ok(["git", "init", "--quiet", "--bare", "--initial-branch=main", remote], tmp_path, env)
    _ok(["git", "remote", "add", "origin", remote], repo, env)
    dry = _run([HKGEN, "publish", "--dry-run", "clusters/home"], repo, env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert all(f"would commit {name}" in dry.stdout for name in SCAFFOLD_FILES), dry.stdout
    published = _run([HKGEN, "publish", "clusters/home"], repo, env)
    assert published.returncode == 0, published.stdout + published.stderr
    # The first commit holds the scaffold beside the cluster; nothing of init is left untracked.
    committed = set(_ok(["git", "ls-tree", "-r", "--name-only", "HEAD"], repo, env).split())
    assert committed >= SCAFFOLD_FILES, SCAFFOLD_FILES - committed
    assert "clusters/home/cluster.yaml" in committed and "clusters/home/.hkgen-manifest.json" in committed
    assert _ok(["git", "status", "--porcelain", "--untracked-files=all"], repo, env) == ""
    # Someone else clones it: the hooks and the check pass as they are.
    clone = tmp_path / "clone"
    _ok(["git", "clone", "--quiet", remote, clone], tmp_path, env)
    hooks = _run([PRE_COMMIT, "run", "--all-files"], clone, env, timeout=600)
    assert hooks.returncode == 0, hooks.stdout + hooks.stderr
    assert "hkgen render --check" in hooks.stdout and "Passed" in hooks.stdout
    check = _run([HKGEN, "render", "--check", "clusters/home"], clone, env)
    assert check.returncode == 0, check.stdout + check.stderr
    # A second publish commits only the cluster's folder again.
    (repo / "NOTES.md").write_text("mine\n")
    cluster_file = cluster / "cluster.yaml"
    cluster_file.write_text(cluster_file.read_text().replace("timezone: Etc/UTC", "timezone: Europe/Berlin"))
    again = _run([HKGEN, "publish", "clusters/home"], repo, env)
    assert again.returncode == 0, again.stdout + again.stderr
    last = _ok(["git", "show", "--name-only", "--format=", "HEAD"], repo, env).split()
    assert last and all(p.startswith("clusters/home/") for p in last), last


def test_init_refuses_a_folder_inside_another_repository(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _ok(["git", "init", "--quiet", tmp_path / "outer"], tmp_path, env)
    done = _run([HKGEN, "init", "outer/ops", "--no-input", "--age-key", tmp_path / "k.agekey"], tmp_path, env)
    assert done.returncode == 2
    assert f"is inside the Git repository {tmp_path / 'outer'}" in done.stderr
    assert not (tmp_path / "outer" / "ops").exists() and not (tmp_path / "k.agekey").exists()


def test_generated_workflows_run_validate_and_render_check(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _ok([HKGEN, "init", "ops", "--no-input", "--age-key", tmp_path / "ops.agekey", "--hooks-repo",
         "https://git.example.invalid/hkgen.git", "--hooks-rev", "v9.9.9"], tmp_path, env)
    for path in (".github/workflows/hkgen.yaml", ".forgejo/workflows/hkgen.yaml"):
        flow = yaml.safe_load((tmp_path / "ops" / path).read_text())
        steps = [s.get("run", "") for job in flow["jobs"].values() for s in job["steps"]]
        assert any("pip install" in s and "'hkgen @ git+https://git.example.invalid/hkgen.git@v9.9.9'" in s
                   for s in steps), steps
        assert any("hkgen validate --format github" in s for s in steps)
        assert any("hkgen render --check" in s for s in steps)
        assert set(flow[True] if True in flow else flow["on"]) == {"push", "pull_request"}


def _js_to_python(pattern: str) -> str:
    return pattern.replace("(?<", "(?P<")


def test_renovate_custom_manager_finds_version_overrides(tmp_path: Path, repo: Path) -> None:
    """The regex of renovate.json (JavaScript named groups, read here with Python's equivalent)
    finds every override written in the `# renovate:` form of hkgen's own versions file."""
    env = _env(tmp_path)
    _ok([HKGEN, "init", "ops", "--no-input", "--age-key", tmp_path / "ops.agekey"], tmp_path, env)
    config = json.loads((tmp_path / "ops" / "renovate.json").read_text())
    (manager,) = config["customManagers"]
    files = [re.compile(p.strip("/")) for p in manager["managerFilePatterns"]]
    assert any(f.search("clusters/home/cluster.yaml") for f in files)
    assert not any(f.search("clusters/home/apps/grafana/release.yaml") for f in files)
    (pattern,) = (re.compile(_js_to_python(m)) for m in manager["matchStrings"])
    versions = (repo / "generator" / "hkgen" / "versions.yaml").read_text()
    pins = yaml.safe_load(versions)
    found = {m["depName"]: m["currentValue"] for m in pattern.finditer(versions)}
    expected = {str(v) for section in ("charts", "images") for v in pins[section].values()}
    assert set(found.values()) == expected
    override = ("versions:\n  images:\n"
                "    # renovate: datasource=docker depName=ghcr.io/home-assistant/home-assistant\n"
                "    home-assistant: \"2026.12.1\"\n")
    (match,) = pattern.finditer(override)
    assert (match["datasource"], match["depName"], match["currentValue"]) == (
        "docker", "ghcr.io/home-assistant/home-assistant", "2026.12.1")


@pytest.mark.parametrize("fmt", ["github", "json"])
def test_validate_formats_for_ci(tmp_path: Path, fmt: str) -> None:
    env = _env(tmp_path)
    _ok([HKGEN, "init", "ops", "--no-input", "--age-key", tmp_path / "ops.agekey"], tmp_path, env)
    # The starter's placeholders are warnings: annotations too, and no failure.
    starter = _run([HKGEN, "validate", "--format", fmt, "clusters/home"], tmp_path / "ops", env)
    assert starter.returncode == 0, starter.stderr
    if fmt == "github":
        assert re.search(r"^::warning file=clusters/home/cluster\.yaml,line=\d+,col=\d+,title=\$\.nodes\[0\]\.mac::",
                         starter.stdout, re.M), starter.stdout
    else:
        assert json.loads(starter.stdout)["valid"] is True
    cluster_file = tmp_path / "ops" / "clusters" / "home" / "cluster.yaml"
    lines = cluster_file.read_text().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if ln.strip() == "- hostname: cp1")
    lines[n] = lines[n].replace("cp1", "CP_1")
    cluster_file.write_text("".join(lines))
    col = lines[n].index("CP_1") + 1
    done = _run([HKGEN, "validate", "--format", fmt, "clusters/home"], tmp_path / "ops", env)
    assert done.returncode == 1
    if fmt == "github":
        assert re.search(rf"^::error file=clusters/home/cluster\.yaml,line={n + 1},col={col},"
                         r"title=\$\.nodes\[0\]\.hostname::\$\.nodes\[0\]\.hostname: ", done.stdout, re.M), done.stdout
        assert all(line.startswith("::") for line in done.stdout.splitlines())
    else:
        data = json.loads(done.stdout)
        assert data["valid"] is False
        (entry,) = data["files"]
        first = next(p for p in entry["problems"] if p["severity"] == "error")
        assert (first["file"], first["line"], first["col"], first["path"]) == (
            "clusters/home/cluster.yaml", n + 1, col, "$.nodes[0].hostname")
