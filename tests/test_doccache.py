"""The loaded-document cache (config/doccache.py): a cluster that validated cleanly is read back
without parsing (PyYAML is not even imported), exactly as a parse reads it; nothing that failed a
check is cached; every input of the key misses when it changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import formatted_problems
from hkgen.config import doccache
from hkgen.config import load as load_module
from hkgen.config.load import load_bytes, load_file, load_text
from hkgen.core import fingerprint, resources


@pytest.fixture
def cache(hkgen_cache: Path) -> Path:
    return hkgen_cache


def _entries(cache: Path) -> list[Path]:
    folder = cache / "documents"
    return sorted(p for p in folder.iterdir() if not p.name.startswith("own-")) if folder.is_dir() else []


def _no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object) -> object:
        raise AssertionError("parsed a file the cache holds")

    monkeypatch.setattr(load_module, "load_bytes", boom)


def test_a_clean_cluster_is_read_back_exactly_as_parsed(cache: Path, home_copy: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first = formatted_problems(home_copy)
    assert len(_entries(cache)) == 2  # cluster.yaml and its secrets file
    parsed = load_bytes((home_copy / "cluster.yaml").read_bytes(), "shown/as.yaml")
    _no_parse(monkeypatch)
    assert formatted_problems(home_copy) == first  # the same problems (warnings), located the same
    hit = load_file(home_copy / "cluster.yaml", "shown/as.yaml")
    assert hit == parsed  # data, value positions and key positions
    assert hit.file == "shown/as.yaml"  # the name comes from the caller, not from the cache
    assert repr(hit.data) == repr(parsed.data)  # types too: 1 is not 1.0 or True


def test_nothing_that_failed_a_check_is_cached(cache: Path, home_copy: Path) -> None:
    path = home_copy / "cluster.yaml"
    path.write_text(path.read_text() + "bogus: 3\n")
    first = formatted_problems(home_copy)
    assert any("unknown key 'bogus'" in line for line in first)
    assert _entries(cache) == []
    assert formatted_problems(home_copy) == first
    # A secrets file with a plaintext value: the cluster is invalid, neither file is cached.
    path.write_text(path.read_text().replace("bogus: 3\n", ""))
    secrets = home_copy / "secrets.sops.yaml"
    secrets.write_text(secrets.read_text().replace("stringData:\n", "stringData:\n    PLAIN_VALUE: hunter2\n", 1))
    found = formatted_problems(home_copy)
    assert any("value of PLAIN_VALUE is not encrypted" in line for line in found), found
    assert _entries(cache) == []


def test_decrypted_text_is_never_cached(cache: Path) -> None:
    load_text("stringData:\n  TOKEN: s3cret\n", "decrypted.yaml")
    doccache.keep()
    assert _entries(cache) == []


def test_changed_bytes_miss(cache: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    formatted_problems(home_copy)
    path = home_copy / "cluster.yaml"
    path.write_text("# a comment moves every line\n" + path.read_text())
    _no_parse(monkeypatch)
    with pytest.raises(AssertionError, match="parsed a file"):
        load_file(path)


@pytest.mark.parametrize("what", ["code", "PyYAML", "ruamel.yaml"])
def test_changed_code_or_yaml_reader_misses(cache: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                            what: str) -> None:
    formatted_problems(home_copy)
    raw = (home_copy / "cluster.yaml").read_bytes()
    assert doccache.lookup(doccache.document_key(raw)) is not None
    if what == "code":
        monkeypatch.setattr(fingerprint, "code_hash", lambda: "another hkgen")
    else:
        real = fingerprint.dist_version
        monkeypatch.setattr(fingerprint, "dist_version", lambda name: "0.0" if name == what else real(name))
    assert doccache.lookup(doccache.document_key(raw)) is None


def test_no_cache_folder_no_cache(home_copy: Path) -> None:
    resources._CACHE.clear()
    assert doccache.document_key(b"x: 1\n") is None
    formatted_problems(home_copy)  # library use: neither reads nor writes a cache


def test_own_data_is_cached_by_its_bytes(cache: Path) -> None:
    calls: list[int] = []

    def load() -> object:
        calls.append(1)
        return {"charts": {"a": "1.0"}}

    assert doccache.own_data(b"charts: {a: '1.0'}\n", load) == {"charts": {"a": "1.0"}}
    assert doccache.own_data(b"charts: {a: '1.0'}\n", load) == {"charts": {"a": "1.0"}}
    assert len(calls) == 1
    doccache.own_data(b"charts: {a: '2.0'}\n", load)
    assert len(calls) == 2


def test_validate_of_an_unchanged_file_does_not_import_pyyaml(tmp_path: Path, home_copy: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    probe = ("import sys, hkgen.cli; code = hkgen.cli.main(['validate', '-q', sys.argv[1]]); "
             "print(code, 'yaml' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", probe, str(home_copy)], env=env, capture_output=True, text=True,
                           check=True, timeout=120) for _ in range(2)]
    assert runs[0].stdout.split()[-2:] == ["0", "True"]  # first run: parsed for real
    assert runs[1].stdout.split()[-2:] == ["0", "False"], runs[1].stdout
    assert runs[0].stderr == runs[1].stderr
    shutil.rmtree(tmp_path / "xdg")


# --- the composed cluster schema (config/schema.py) -----------------------------------------------


@pytest.fixture
def fresh_schema() -> object:
    from hkgen.config import schema as schema_module

    schema_module.cluster_schema.cache_clear()
    yield schema_module
    schema_module.cluster_schema.cache_clear()


def _catalogue_must_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from hkgen.config import catalogue

    def boom(*_args: object) -> object:
        raise AssertionError("the catalogue was loaded")

    monkeypatch.setattr(catalogue, "load_catalogue", boom)


def test_the_composed_schema_is_cached_and_equal(cache: Path, fresh_schema: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    module = fresh_schema
    composed = module.cluster_schema()
    module.cluster_schema.cache_clear()
    with monkeypatch.context() as m:
        _catalogue_must_not_load(m)
        assert module.cluster_schema() == composed
    resources._CACHE.clear()
    module.cluster_schema.cache_clear()
    assert module.cluster_schema() == composed  # library use composes it: the same schema


@pytest.mark.parametrize("what", ["apps", "core schema", "code"])
def test_the_composed_schema_misses_when_an_input_changes(cache: Path, fresh_schema: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    module = fresh_schema
    module.cluster_schema()
    module.cluster_schema.cache_clear()
    if what == "apps":
        monkeypatch.setattr(module, "apps_key", lambda: "another catalogue")
    elif what == "core schema":
        schemas = tmp_path / "schemas"
        schemas.mkdir()
        real = module.data_dir
        text = (real("schemas") / "cluster.schema.json").read_text()
        (schemas / "cluster.schema.json").write_text(text.replace('"description": "', '"description": "Changed. ', 1))
        monkeypatch.setattr(module, "data_dir", lambda folder: schemas if folder == "schemas" else real(folder))
    else:
        monkeypatch.setattr(fingerprint, "code_hash", lambda: "another hkgen")
    _catalogue_must_not_load(monkeypatch)
    with pytest.raises(AssertionError, match="the catalogue was loaded"):
        module.cluster_schema()
