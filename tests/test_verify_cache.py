"""The verification cache: an unchanged tree (same files, hkgen code and tools) is not verified
again; any changed byte, tool or library version verifies afresh; problems are never cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from hkgen.core import resources
from hkgen.core.errors import Problem, VerifyError
from hkgen.pipeline import render_cluster
from hkgen.verify import cache as verify_cache
from hkgen.verify import tree as verify_tree


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    resources.set_cache_dir(tmp_path / "cache")
    real = verify_tree.verify
    seen: list[int] = []

    def counting(blueprint: object, tree: dict[object, bytes]) -> object:
        seen.append(len(tree))
        return real(blueprint, tree)  # type: ignore[arg-type]

    monkeypatch.setattr(verify_tree, "verify", counting)
    return seen


def test_an_unchanged_tree_is_verified_once(calls: list[int], home_copy: Path) -> None:
    first = render_cluster(home_copy)
    second = render_cluster(home_copy)
    assert len(calls) == 1
    assert first.tree == second.tree
    # A changed input changes the tree: verified again.
    path = home_copy / "cluster.yaml"
    path.write_text(path.read_text().replace("timezone: Europe/Berlin", "timezone: Europe/Paris"))
    render_cluster(home_copy)
    assert len(calls) == 2


def test_a_changed_tool_or_library_verifies_again(calls: list[int], home_copy: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    render_cluster(home_copy)
    from hkgen.core import fingerprint

    verify_cache._tools.cache_clear()
    real = fingerprint.dist_version
    monkeypatch.setattr(verify_cache, "dist_version",
                        lambda name: "99.0" if name == "kubernetes-validate" else real(name))
    render_cluster(home_copy)
    assert len(calls) == 2
    verify_cache._tools.cache_clear()


def test_problems_are_never_cached(tmp_path: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resources.set_cache_dir(tmp_path / "cache")

    def failing(_blueprint: object, _tree: object) -> object:
        raise VerifyError([Problem("f", 1, 1, "$", "broken")])

    monkeypatch.setattr(verify_tree, "verify", failing)
    for _ in range(2):
        with pytest.raises(VerifyError):
            render_cluster(home_copy)
    assert not (tmp_path / "cache" / "verified").exists()


def test_without_a_cache_folder_every_render_verifies(home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(verify_tree, "verify", lambda _b, t: seen.append(len(t)))
    render_cluster(home_copy)
    render_cluster(home_copy)
    assert len(seen) == 2
