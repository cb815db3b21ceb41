"""The cluster-rules cache (validation/checkcache.py): findings on a file without errors are
reused only while the document, its defaults, hkgen's code and the catalogue are unchanged, the
time-zone rule runs on every hit, and errors are never cached."""

from __future__ import annotations

import zoneinfo
from pathlib import Path

import pytest

from conftest import formatted_problems
from hkgen.config import schema as schema_module
from hkgen.config.load import load_file
from hkgen.config.schema import apply_defaults
from hkgen.core import fingerprint, resources
from hkgen.validation import checkcache
from hkgen.validation import validate as validate_module


@pytest.fixture
def cache(hkgen_cache: Path) -> Path:
    return hkgen_cache


def _entries(cache: Path) -> list[Path]:
    folder = cache / "checks"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _rules_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_self: object) -> object:
        raise AssertionError("the cluster rules ran for a cached file")

    monkeypatch.setattr(validate_module._Checks, "run", boom)


def _warned(home: Path) -> None:
    """The reference cluster with more warnings: two of the starter's placeholder MAC addresses."""
    path = home / "cluster.yaml"
    text = path.read_text()
    for mac in ("dc:a6:32:10:00:11", "dc:a6:32:10:00:12"):
        assert mac in text
        text = text.replace(mac, "02:00:00:00:" + mac[-5:])
    path.write_text(text)


def test_findings_are_reused_and_read_the_same(cache: Path, home_copy: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = formatted_problems(home_copy)
    assert first and all(": warning: " in line for line in first)
    assert len(_entries(cache)) == 1
    _rules_must_not_run(monkeypatch)
    assert formatted_problems(home_copy) == first


def test_a_cold_run_and_a_hit_agree_with_library_use(cache: Path, home_copy: Path) -> None:
    """Library use (no cache folder) is the reference: the hit prints exactly what it prints."""
    formatted_problems(home_copy)
    hit = formatted_problems(home_copy)
    resources._CACHE.clear()
    assert formatted_problems(home_copy) == hit


def test_errors_are_never_cached(cache: Path, home_copy: Path) -> None:
    path = home_copy / "cluster.yaml"
    text = path.read_text()
    path.write_text(text.replace("timezone: Europe/Berlin", "timezone: Europe/Nowhere"))
    first = formatted_problems(home_copy)
    assert any("unknown time zone 'Europe/Nowhere'" in line for line in first)
    assert _entries(cache) == []
    assert formatted_problems(home_copy) == first


def test_a_time_zone_gone_from_this_machine_runs_every_rule(cache: Path, home_copy: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    formatted_problems(home_copy)
    real = zoneinfo.ZoneInfo

    def gone(key: str) -> object:
        if key == "Europe/Berlin":
            raise zoneinfo.ZoneInfoNotFoundError(key)
        return real(key)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", gone)
    warm = formatted_problems(home_copy)
    assert any("unknown time zone 'Europe/Berlin'" in line for line in warm)
    resources._CACHE.clear()
    assert formatted_problems(home_copy) == warm  # exactly a cold run's findings


def _key(home: Path) -> str | None:
    doc = load_file(home / "cluster.yaml", "clusters/home/cluster.yaml")
    return checkcache.checks_key(doc, apply_defaults(doc.data))


def test_every_input_of_the_key_misses(cache: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _key(home_copy)
    assert base is not None and base == _key(home_copy)
    doc = load_file(home_copy / "cluster.yaml", "clusters/home/cluster.yaml")
    data = apply_defaults(doc.data)
    keys = {
        # the name the file is shown under (messages carry it)
        "name": checkcache.checks_key(load_file(home_copy / "cluster.yaml", "elsewhere/cluster.yaml"), data),
        # the defaults the schema adds (the schema file is not hkgen's code)
        "defaults": checkcache.checks_key(doc, {**data, "extra": 1}),
    }
    # positions alone (a comment moves every line)
    path = home_copy / "cluster.yaml"
    text = path.read_text()
    path.write_text("# a comment\n" + text)
    keys["positions"] = _key(home_copy)
    path.write_text(text.replace("timezone: Europe/Berlin", "timezone: Europe/Paris"))
    keys["data"] = _key(home_copy)
    path.write_text(text)
    with monkeypatch.context() as m:
        m.setattr(fingerprint, "code_hash", lambda: "another hkgen")
        keys["code"] = _key(home_copy)
    with monkeypatch.context() as m:
        m.setattr(schema_module, "apps_key", lambda: "another catalogue")
        keys["catalogue"] = _key(home_copy)
    assert _key(home_copy) == base
    assert all(k is not None and k != base for k in keys.values()), keys
    assert len(set(keys.values())) == len(keys)


def test_no_cache_folder_no_key(cache: Path) -> None:
    resources._CACHE.clear()
    assert checkcache.checks_key(load_file(Path(__file__).parents[1] / "clusters/home/cluster.yaml"), {}) is None


def test_more_warnings_round_trip(cache: Path, home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warned(home_copy)
    first = formatted_problems(home_copy)
    assert sum("placeholder MAC address" in line for line in first) == 2, first
    _rules_must_not_run(monkeypatch)
    assert formatted_problems(home_copy) == first
