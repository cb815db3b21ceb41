"""The render cache: a tree on disk that is exactly what a render produces is used as rendered;
every input of the key (cluster model, cluster and secrets files, hkgen code, templates, apps,
library versions) and every changed, missing or edited file on disk renders afresh."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hkgen.core import resources
from hkgen.output import rendercache
from hkgen.output.write import write_tree
from hkgen.pipeline import render_cluster
from hkgen.render import jinja


@pytest.fixture
def renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real renders (render_blueprint calls), with a cache folder in use."""
    resources.set_cache_dir(tmp_path / "cache")
    real = jinja.render_blueprint
    seen: list[int] = []

    def counting(blueprint: object) -> object:
        result = real(blueprint)  # type: ignore[arg-type]
        seen.append(len(result))
        return result

    monkeypatch.setattr(jinja, "render_blueprint", counting)
    return seen


def _written(home: Path) -> dict[str, bytes]:
    rendering = render_cluster(home)
    write_tree(rendering.root, rendering.tree, modes=rendering.modes)
    return {str(p): d for p, d in rendering.tree.items()}


def test_a_current_tree_is_not_rendered_again(renders: list[int], home_copy: Path) -> None:
    first = render_cluster(home_copy)
    write_tree(first.root, first.tree, modes=first.modes)
    again = render_cluster(home_copy)
    assert len(renders) == 1
    assert again.tree == first.tree
    assert list(again.tree) == list(first.tree)  # the same order as rendered
    assert again.modes == first.modes
    # The blueprint is laid out on demand, the same as the render's.
    assert again.blueprint.files == first.blueprint.files
    assert not write_tree(again.root, again.tree, modes=again.modes).dirty


@pytest.mark.parametrize("damage", ["edit", "remove", "append"])
def test_a_changed_file_on_disk_is_rendered_again(renders: list[int], home_copy: Path, damage: str) -> None:
    tree = _written(home_copy)
    victim = home_copy / next(p for p in sorted(tree) if p.endswith("kustomization.yaml"))
    if damage == "edit":
        data = victim.read_bytes()
        victim.write_bytes(data[:-2] + b"x\n")
    elif damage == "remove":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes() + b"# mine\n")
    again = render_cluster(home_copy)
    assert len(renders) == 2
    assert {str(p): d for p, d in again.tree.items()} == tree  # the rendered bytes, not the disk's


@pytest.mark.parametrize(("name", "old", "new"), [
    ("cluster.yaml", "timezone: Europe/Berlin", "timezone: Europe/Paris"),  # the model
    ("cluster.yaml", "\n", "\n# a comment\n"),  # the file only
    ("secrets.sops.yaml", "\n", "\n\n"),  # the secrets file's bytes
])
def test_an_edited_input_file_renders_again(renders: list[int], home_copy: Path, name: str, old: str,
                                            new: str) -> None:
    _written(home_copy)
    path = home_copy / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    render_cluster(home_copy)
    assert len(renders) == 2


def test_changed_hkgen_code_renders_again(renders: list[int], home_copy: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _written(home_copy)
    monkeypatch.setattr(rendercache, "code_hash", lambda: "another hkgen")
    render_cluster(home_copy)
    assert len(renders) == 2


@pytest.mark.parametrize("library", rendercache.LIBRARIES)
def test_a_changed_library_renders_again(renders: list[int], home_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                         library: str) -> None:
    _written(home_copy)
    real = rendercache.dist_version
    monkeypatch.setattr(rendercache, "dist_version", lambda name: "99.0" if name == library else real(name))
    render_cluster(home_copy)
    assert len(renders) == 2


@pytest.mark.parametrize("folder", ["templates", "apps"])
def test_a_changed_data_file_changes_the_key(tmp_path: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                             folder: str) -> None:
    resources.set_cache_dir(tmp_path / "cache")
    cluster = render_cluster(home_copy, verify=False).validation.cluster
    assert cluster is not None
    copies = {name: tmp_path / name for name in ("templates", "apps")}
    for name, dest in copies.items():
        shutil.copytree(resources.data_dir(name), dest)
    monkeypatch.setattr(rendercache, "data_dir", lambda name: copies[name])
    before = rendercache.render_key(cluster)
    victim = next(p for p in sorted(copies[folder].rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes() + b" ")
    assert rendercache.render_key(cluster) != before


def test_without_a_cache_folder_every_render_renders(home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = jinja.render_blueprint
    monkeypatch.setattr(jinja, "render_blueprint", lambda b: seen.append(1) or real(b))
    first = render_cluster(home_copy, verify=False)
    write_tree(first.root, first.tree, modes=first.modes)
    render_cluster(home_copy, verify=False)
    assert len(seen) == 2


def test_an_unreadable_entry_renders(renders: list[int], home_copy: Path, tmp_path: Path) -> None:
    _written(home_copy)
    for entry in (tmp_path / "cache" / "rendered").iterdir():
        entry.write_text("{not json")
    render_cluster(home_copy)
    assert len(renders) == 2


def test_every_library_of_the_key_is_found() -> None:
    # A version read as "" would make the key blind to that library's upgrades.
    from hkgen.core.fingerprint import dist_version

    found = {name: dist_version(name) for name in rendercache.LIBRARIES}
    assert all(found.values()), found
