"""CLI contract: commands, exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from hkgen import __version__


def test_version(hkgen) -> None:
    run = hkgen("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"hkgen {__version__}"


def test_help_lists_commands_and_exit_codes(hkgen) -> None:
    run = hkgen("--help")
    assert run.returncode == 0
    for word in ("validate", "render", "schema", "exit codes", "usage error"):
        assert word in run.stdout


def test_validate_reference_cluster(hkgen, repo: Path) -> None:
    run = hkgen("validate", "clusters/home", cwd=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "valid" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_missing_path_is_usage_error(hkgen, tmp_path: Path) -> None:
    run = hkgen("validate", str(tmp_path / "nope"))
    assert run.returncode == 2
    assert "no such file" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_flag_is_usage_error(hkgen) -> None:
    assert hkgen("validate", "--bogus").returncode == 2


def test_invalid_file_exits_1_with_located_message(hkgen, tmp_path: Path) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("version: 1\ncluster: {name: Home}\n")
    run = hkgen("validate", str(bad), cwd=tmp_path)
    assert run.returncode == 1
    assert "cluster.yaml:2:17: $.cluster.name: 'Home' is not a lowercase name" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_render_shows_progress_only_on_a_terminal(hkgen, repo: Path, tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    cluster = tmp_path / "clusters" / "home"
    cluster.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        (cluster / name).write_bytes((repo / "clusters" / "home" / name).read_bytes())
    piped = hkgen("render", "--no-verify", str(cluster))
    assert piped.returncode == 0 and "\r" not in piped.stderr  # pipes, CI and hooks stay quiet
    main, child = pty.openpty()
    done = subprocess.run([sys.executable, "-m", "hkgen", "render", "--check", "--no-verify", str(cluster)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child, timeout=120, check=False)
    import os

    os.close(child)
    shown = os.read(main, 65536).decode()
    os.close(main)
    assert done.returncode == 0
    assert "rendering" in shown and "\r" in shown
