"""The Jinja bytecode cache folder is keyed by the jinja2 version, hkgen's code and the Environment
options: Jinja keys entries by template name and source alone, so a changed option (here
trim_blocks) would otherwise be served the code compiled under the old one."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import DictLoader, Environment, FileSystemBytecodeCache

from hkgen.core import resources
from hkgen.render import jinja

SOURCE = {"t.j2": "{% if true %}\nx\n{% endif %}\n"}


@pytest.fixture
def cache(tmp_path: Path) -> object:
    resources.set_cache_dir(tmp_path / "cache")
    yield tmp_path / "cache"
    resources._CACHE.clear()


def _render(options: dict[str, object], bcc: object) -> str:
    env = Environment(loader=DictLoader(SOURCE), bytecode_cache=bcc, autoescape=False, **options)  # noqa: S701
    return env.get_template("t.j2").render()


def test_a_changed_environment_option_is_not_served_stale(cache: Path) -> None:
    trim, keep = {"trim_blocks": True}, {"trim_blocks": False}
    assert _render(trim, jinja._bytecode_cache(FileSystemBytecodeCache, trim)) == "x\n"
    assert list(cache.glob("jinja-*/*.cache"))  # compiled and stored
    assert _render(keep, jinja._bytecode_cache(FileSystemBytecodeCache, keep)) == "\nx\n"
    assert len(list(cache.glob("jinja-*"))) == 2


def test_one_folder_for_everything_would_be_stale(tmp_path: Path) -> None:
    """The failure the key prevents, shown with Jinja's own cache in one folder."""
    folder = str(tmp_path)
    assert _render({"trim_blocks": True}, FileSystemBytecodeCache(folder)) == "x\n"
    assert _render({"trim_blocks": False}, FileSystemBytecodeCache(folder)) == "x\n"  # stale


def test_the_key_follows_the_jinja2_version_and_hkgen_code(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hkgen.core import fingerprint

    first = jinja._bytecode_cache(FileSystemBytecodeCache, {}).directory
    monkeypatch.setattr(fingerprint, "dist_version", lambda name: "9.9" if name == "jinja2" else "")
    second = jinja._bytecode_cache(FileSystemBytecodeCache, {}).directory
    monkeypatch.setattr(fingerprint, "code_hash", lambda: "changed")
    third = jinja._bytecode_cache(FileSystemBytecodeCache, {}).directory
    assert len({first, second, third}) == 3
