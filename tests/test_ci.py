"""CI tells the truth: `.ci/run` stops when a system package cannot be installed, exports
HKGEN_REQUIRE_TOOLS=1, and under that switch a test whose tool is missing fails instead of skipping.

`.ci/run` runs here against recording fakes of `apt-get`, `python3` and the tools on a tmp PATH
(installing packages needs root and a network; the fakes model apt-get's exit status 100 for a
package it cannot install, and pytest's exit status 5 for "no tests collected").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, missing

CI_RUN = REPO / ".ci" / "run"
# Programs .ci/run itself calls (besides the tools it checks for).
BASICS = ("bash", "dirname", "sort", "mkdir", "cat", "env", "chmod")
TOOLS = ("netplan", "shellcheck", "age", "promtool", "prometheus", "amtool", "prometheus-alertmanager",
         "mosquitto", "mosquitto_pub", "mosquitto_sub", "systemd-analyze", "openssl", "git", "mkfs.ext4",
         "blkid", "gpg", "gpgv", "chromium", "npm", "kubectl")


def test_no_test_skips_on_a_missing_tool_behind_the_switch() -> None:
    """Every skip for want of a tool or data goes through conftest's helpers (which fail under
    HKGEN_REQUIRE_TOOLS=1); a bare pytest.skip/skipif/importorskip would pass CI silently."""
    raw = re.compile(r"pytest\.skip\(|pytest\.importorskip\(|mark\.skipif\(")
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted((REPO / "tests").glob("test_*.py"))
             if path.name != "test_ci.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if raw.search(line)]
    assert found == []


def test_missing_skips_by_default_and_fails_under_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HKGEN_REQUIRE_TOOLS", raising=False)
    with pytest.raises(pytest.skip.Exception):
        missing("frobnicate is not installed")
    monkeypatch.setenv("HKGEN_REQUIRE_TOOLS", "1")
    with pytest.raises(pytest.fail.Exception, match="frobnicate is not installed"):
        missing("frobnicate is not installed")


def test_the_tools_marker_fails_a_test_under_the_switch(tmp_path: Path) -> None:
    shutil.copy2(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_needs.py").write_text(
        "from conftest import tools\n\n\n@tools('hkgen-no-such-program')\ndef test_x() -> None:\n    pass\n")

    def run(switch: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HKGEN_REQUIRE_TOOLS": switch}
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "-rf",
                               str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    lenient = run("")
    assert lenient.returncode == 0 and "1 skipped" in lenient.stdout, lenient.stdout
    strict = run("1")
    assert strict.returncode == 1 and "hkgen-no-such-program not installed" in strict.stdout, strict.stdout


# --- .ci/run against fakes --------------------------------------------------------------------------


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def _world(tmp_path: Path, present: tuple[str, ...], apt: str) -> tuple[Path, dict[str, str]]:
    """A checkout holding .ci/run, a tmp PATH with the basics, fakes of `present` and an apt-get."""
    checkout = tmp_path / "work" / "repo"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy2(CI_RUN, checkout / ".ci" / "run")
    (tmp_path / "work" / "shared" / "charts").mkdir(parents=True)
    mermaid = tmp_path / "tools" / "node" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    mermaid.parent.mkdir(parents=True)
    mermaid.write_text("// mermaid")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        real = shutil.which(name)
        assert real, name
        (bin_dir / name).symlink_to(real)
    for name in present:
        _script(bin_dir / name, "exit 0\n")
    _script(bin_dir / "apt-get", f'echo "apt-get $*" >> "{tmp_path}/apt.log"\n{apt}')
    # python3 -m venv .venv creates a venv whose pytest collects nothing (exit 5) and records the switch.
    _script(bin_dir / "python3", f"""mkdir -p .venv/bin
printf '#!/bin/bash\\nexit 0\\n' > .venv/bin/pip
printf '#!/bin/bash\\necho "$HKGEN_REQUIRE_TOOLS" > "{tmp_path}/switch"\\nexit 5\\n' > .venv/bin/python
chmod +x .venv/bin/pip .venv/bin/python
""")
    # /usr/sbin and /sbin are appended by .ci/run itself; a fake PATH that is empty of the tools
    # still finds Debian's sbin programs there, so the tests name only /usr/bin tools as missing.
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "HKGEN_TOOLS_DIR": str(tmp_path / "tools")}
    return checkout, env


def _ci(checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(checkout / ".ci" / "run")], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_ci_fails_when_a_package_cannot_be_installed(tmp_path: Path) -> None:
    missing_ones = ("shellcheck", "age")
    present = tuple(t for t in TOOLS if t not in missing_ones)
    checkout, env = _world(tmp_path, present, 'case "$1" in update) exit 0;; *) '
                                              'echo "E: Unable to locate package" >&2; exit 100;; esac\n')
    done = _ci(checkout, env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"apt-get could not install .*age.*shellcheck", done.stderr), done.stderr
    assert "warning" not in done.stdout + done.stderr
    assert not (tmp_path / "switch").exists()  # the suite never ran


def test_ci_fails_when_an_install_leaves_the_program_missing(tmp_path: Path) -> None:
    present = tuple(t for t in TOOLS if t != "age")
    checkout, env = _world(tmp_path, present, "exit 0\n")
    done = _ci(checkout, env)
    assert done.returncode == 1 and "still missing the programs of: age" in done.stderr, done.stderr


def test_ci_installs_chromium_in_an_apt_get_call_of_its_own(tmp_path: Path) -> None:
    present = tuple(t for t in TOOLS if t not in ("chromium", "age"))
    checkout, env = _world(tmp_path, present, 'case "$1" in update) exit 0;; *) exit 100;; esac\n')
    _ci(checkout, env)
    calls = (tmp_path / "apt.log").read_text().splitlines()
    # age fails first: chromium is never installed together with it.
    assert calls == ["apt-get update -qq", "apt-get install -y -qq age"], calls
    checkout2, env2 = _world(tmp_path / "b", tuple(t for t in TOOLS if t != "chromium"),
                             'case "$1" in update) exit 0;; *) exit 100;; esac\n')
    done = _ci(checkout2, env2)
    assert (tmp_path / "b" / "apt.log").read_text().splitlines() == [
        "apt-get update -qq", "apt-get install -y -qq chromium"]
    assert done.returncode == 1 and "could not install chromium" in done.stderr


def test_ci_sets_the_switch_and_fails_when_pytest_collects_nothing(tmp_path: Path) -> None:
    checkout, env = _world(tmp_path, TOOLS, "exit 1\n")
    done = _ci(checkout, env)
    assert (tmp_path / "switch").is_file(), done.stderr
    assert (tmp_path / "switch").read_text().strip() == "1"
    assert done.returncode == 1 and "pytest collected no tests" in done.stderr, done.stderr
    assert not (tmp_path / "apt.log").exists()  # nothing was missing, nothing installed


def test_ci_fails_without_the_vendored_charts(tmp_path: Path) -> None:
    checkout, env = _world(tmp_path, TOOLS, "exit 1\n")
    shutil.rmtree(tmp_path / "work" / "shared")
    done = _ci(checkout, env)
    assert done.returncode == 1 and "../shared/charts" in done.stderr
