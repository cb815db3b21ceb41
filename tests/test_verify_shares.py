"""Verification of a large tree on two cores: the forked child checks the first share of the seed
files while this process checks the rest after its own work; whatever the split, the problems
are the ones (and in the order) of checking the whole tree in one process."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from hkgen.core import proc
from hkgen.core.errors import VerifyError
from hkgen.pipeline import render_cluster
from hkgen.verify import tree as verify


def _problems(plan: object, tree: dict[PurePosixPath, bytes]) -> list[str]:
    with pytest.raises(VerifyError) as err:
        verify.verify(plan, tree)  # type: ignore[arg-type]
    return err.value.lines()


def test_every_split_reports_what_one_process_reports(home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rendering = render_cluster(home_copy, verify=False)
    tree = dict(rendering.tree)
    early, late = PurePosixPath("nodes/cp1/user-data"), PurePosixPath("satellites/zsat-garden/meta-data")
    tree[early] = tree[early].replace(b"ssh_pwauth: false", b"ssh_pwauth: false\nssh_pw_auth: false")
    tree[late] = tree[late].replace(b"local-hostname: zsat-garden\n", b"")
    monkeypatch.setattr(verify, "PARALLEL_MIN_FILES", 10**9)
    inline = _problems(rendering.blueprint, tree)
    assert len(inline) == 2, inline
    assert "ssh_pw_auth" in inline[0] and "local-hostname" in inline[1]

    forks: list[object] = []
    real = proc.fork_call

    def spy(fn: object, *args: object) -> object:
        child = real(fn, *args)  # type: ignore[arg-type]
        forks.append((child, len(args[1])))  # type: ignore[arg-type]
        return child

    monkeypatch.setattr(proc, "fork_call", spy)
    monkeypatch.setattr(verify, "PARALLEL_MIN_FILES", 0)
    shares = []
    for share in (0.0, 0.3, 0.7, 1.0):
        monkeypatch.setattr(verify, "CHILD_SHARE", share)
        assert _problems(rendering.blueprint, tree) == inline, share
        shares.append(forks[-1][1])  # type: ignore[index]
    # The child really got a part of the tree, more with a larger share, all of it at 1.0.
    assert shares[0] < shares[1] < shares[2] < shares[3] == len(tree)
    assert all(child is not None for child, _size in forks)  # type: ignore[misc]
