"""Tools that misbehave: a hung tool and its children are stopped as a group within the time
budget, and a kustomize that exits 0 with garbage is a tool error naming the root (exit 3).

The misbehaving `kustomize` is a script on a tmp PATH (found before kubectl, as hkgen prefers a
kustomize binary); it models the failure modes of a broken or foreign binary: hanging with a
child, or printing non-YAML with exit status 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hkgen.core import proc
from hkgen.core.errors import ToolError
from hkgen.verify import kustomize


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_a_timeout_kills_the_tools_children_too(tmp_path: Path) -> None:
    script = tmp_path / "hangs"
    script.write_text(f"#!/bin/bash\nsleep 300 &\necho $! > {tmp_path}/child\nwait\n")
    script.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(ToolError, match="did not finish within 1 s"):
        proc.run([str(script)], timeout=1)
    assert time.monotonic() - started < 10
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the tool's child survived the timeout"


def _fake_kustomize(tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kustomize"
    fake.write_text("#!/bin/bash\n" + body)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    kustomize.kustomize_command.cache_clear()
    monkeypatch.setattr(kustomize, "kustomize_command", kustomize.kustomize_command)


@pytest.fixture(autouse=True)
def _fresh_command_cache() -> object:
    yield
    kustomize.kustomize_command.cache_clear()


def test_the_budget_bounds_all_builds_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kustomize(tmp_path, "sleep 30\n", monkeypatch)
    monkeypatch.setattr(kustomize, "BUILD_BUDGET", 1.5)
    roots = [tmp_path / f"root{i}" for i in range(5)]  # 5 roots, 2 at a time: 3 rounds
    started = time.monotonic()
    with pytest.raises(ToolError):
        kustomize.build_all(roots)
    # One budget for everything (plus slack for a loaded machine), not 1.5 s per round of builds.
    assert time.monotonic() - started < 1.5 + 2.5


def test_garbage_from_a_kustomize_that_exits_0_is_a_tool_error(tmp_path: Path, hkgen, home_copy: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kustomize(tmp_path, "printf 'kind: [unclosed\\n\\t- garbage: {\\n'\nexit 0\n", monkeypatch)
    done = hkgen("render", str(home_copy))
    assert done.returncode == 3, done.stderr
    assert "internal error" not in done.stderr.lower() and "Traceback" not in done.stderr
    assert "exited 0 but printed output that is not YAML" in done.stderr
    assert "kustomize build flux" in done.stderr or "kustomize build " in done.stderr
    assert not (home_copy / ".hkgen-manifest.json").exists()  # nothing written
