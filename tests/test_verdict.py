"""The schema verdict cache: a clean verdict is reused (jsonschema is not even imported), problems
are never cached, and any change of data or schema misses."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hkgen.core import resources
from hkgen.pipeline import validate_cluster
from hkgen.validation import validate as validate_module

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path: Path) -> object:
    folder = tmp_path / "cache"
    resources.set_cache_dir(folder)
    yield folder
    resources._CACHE.clear()


def _formatted(path: Path) -> list[str]:
    _doc, result = validate_cluster(path)
    return [p.format() for p in result.problems]


def test_clean_verdict_is_reused_and_reads_the_same(cache: Path, home_copy: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = _formatted(home_copy)
    assert len(list((cache / "verdicts").iterdir())) == 1

    def boom(*_args: object) -> object:
        raise AssertionError("jsonschema ran for an already-validated input")

    monkeypatch.setattr(validate_module, "_schema_problems", boom)
    assert _formatted(home_copy) == first  # warnings (semantic checks) still found afresh
    # A comment changes no verdict; a value does.
    text = (home_copy / "cluster.yaml").read_text()
    (home_copy / "cluster.yaml").write_text("# a comment\n" + text)
    assert len(_formatted(home_copy)) == len(first)  # no jsonschema run, same findings one line lower
    (home_copy / "cluster.yaml").write_text(text.replace("timezone: Europe/Berlin", "timezone: Europe/Paris"))
    with pytest.raises(AssertionError, match="jsonschema ran"):
        _formatted(home_copy)


def test_problems_are_never_cached(cache: Path, home_copy: Path) -> None:
    path = home_copy / "cluster.yaml"
    path.write_text(path.read_text() + "bogus: 3\n")
    first = _formatted(home_copy)
    assert any("unknown key 'bogus'" in line for line in first)
    assert not (cache / "verdicts").exists()
    assert _formatted(home_copy) == first


def test_a_changed_schema_misses(cache: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hkgen.validation import verdict

    _formatted(home_copy)
    key = verdict.schema_key(validate_cluster(home_copy)[0].data, {"type": "object"})
    assert not verdict.known_clean(key)


def test_validate_of_an_unchanged_file_imports_neither_jsonschema_nor_ruamel(tmp_path: Path,
                                                                             home_copy: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    probe = ("import sys, hkgen.cli; code = hkgen.cli.main(['validate', '-q', sys.argv[1]]); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'jsonschema', 'ruamel'}))")
    runs = [subprocess.run([sys.executable, "-c", probe, str(home_copy)], env=env, capture_output=True, text=True,
                           check=True, timeout=120) for _ in range(2)]
    assert "jsonschema" in runs[0].stdout  # first run: validated for real
    assert runs[1].stdout.strip().endswith("[]"), runs[1].stdout
    shutil.rmtree(tmp_path / "xdg")
