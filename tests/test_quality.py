"""The code base stays clean (ruff, mypy --strict) and the wheel carries its data folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import need_module

BIN = Path(sys.executable).parent


def test_ruff_is_clean(repo: Path) -> None:
    done = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "generator", "tests", "bench"],
                          cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean(repo: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "mypy"), "--cache-dir", str(tmp_path / "mypy")],
                          cwd=repo, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_ships_data_and_works_outside_the_checkout(repo: Path, tmp_path: Path) -> None:
    """Build the wheel, unpack it away from the repository and validate the reference cluster with it."""
    need_module("hatchling")
    out = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(repo)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("hkgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("hkgen/data/schemas/cluster.schema.json", "hkgen/data/apps/home-assistant/app.yaml",
                   "hkgen/data/templates/docs/RECOVERY.md.j2", "hkgen/versions.yaml",
                   "hkgen/data/templates/scaffold/cookiecutter.json"):
        assert needed in names, needed
    # hkgen's own schemas, and no upstream schema file (issue 18): exactly the checkout's schemas/.
    shipped = {n.removeprefix("hkgen/data/schemas/") for n in names if n.startswith("hkgen/data/schemas/")}
    assert shipped == {p.relative_to(repo / "schemas").as_posix() for p in (repo / "schemas").rglob("*") if p.is_file()}
    assert {"cloud-config.schema.json", "kinds/helm.toolkit.fluxcd.io/helmrelease-v2.json"} <= shipped
    assert not [n for n in names if "schemas/crds/" in n or "schemas/cloud-init/" in n or "NOTICE" in n]
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    cluster = tmp_path / "clusters" / "home"
    cluster.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        (cluster / name).write_bytes((repo / "clusters" / "home" / name).read_bytes())
    run = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "import hkgen.core.resources as r; assert 'site' in str(r.data_dir('apps')); "
                          "from hkgen.cli import main; sys.exit(main(['validate', sys.argv[2]]))",
                          str(site), str(cluster)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stdout + run.stderr
