"""`hkgen migrate`: format 1 -> 2 in place, comments kept, result valid; no-op when current."""

from __future__ import annotations

from pathlib import Path

from hkgen.config.load import load_text
from hkgen.config.migrate import CURRENT, migrate_text
from hkgen.validation.validate import validate_document

REPO = Path(__file__).resolve().parents[1]


def format_1() -> str:
    """The reference cluster written in format 1: one Zigbee coordinator, no ingress address."""
    text = (REPO / "clusters" / "home" / "cluster.yaml").read_text()
    text = text.replace("\nversion: 2 ", "\nversion: 1 ", 1)
    start = text.index("\nzigbee:\n")
    end = text.index("\nstorage:\n")
    single = ("\n# the one coordinator of the house\nzigbee:\n  adapter: zstack   # Sonoff dongle\n  channel: 15\n"
              "  coordinator: {satellite: zsat-garden, device: zigbee-garden}\n")
    text = text[:start] + single + text[end:]
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith("ingressIP:")]
    text = "".join(lines).replace("    users: [esphome, node-red-laptop]\n", "    users: [esphome]\n")
    return text


def test_format_1_is_refused_with_a_migrate_hint() -> None:
    result = validate_document(load_text(format_1(), "cluster.yaml"))
    assert any(p.path == "$.version" and "hkgen migrate" in p.hint for p in result.errors)


def test_migration_to_the_current_format_keeps_comments_and_validates() -> None:
    result = migrate_text(format_1(), "cluster.yaml")
    assert (result.from_version, result.to_version, result.changed) == (1, CURRENT, True)
    assert "version: 2" in result.text
    assert "# the one coordinator of the house" in result.text
    assert "# Sonoff dongle" in result.text
    assert "# MicroK8s defaults; must not overlap the LAN" in result.text
    assert "ingressIP: 192.168.10.201" in result.text  # .200 is mosquitto's
    assert "added by hkgen migrate" in result.text
    assert any("zigbee.networks[0]" in note for note in result.notes)
    migrated = validate_document(load_text(result.text, "cluster.yaml"))
    assert migrated.errors == (), [p.format() for p in migrated.errors]
    assert [z.name for z in migrated.cluster.zigbee] == ["zigbee"]  # type: ignore[union-attr]


def test_current_file_is_left_alone() -> None:
    text = (REPO / "clusters" / "home" / "cluster.yaml").read_text()
    result = migrate_text(text, "cluster.yaml")
    assert not result.changed
    assert result.text == text


def test_cli_migrate_check_then_in_place(hkgen, tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(format_1())
    before = cluster.read_text()
    check = hkgen("migrate", "--check", str(cluster))
    assert check.returncode == 1
    assert cluster.read_text() == before
    run = hkgen("migrate", str(cluster))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "migrated from format 1 to 2" in run.stderr
    assert "version: 2" in cluster.read_text()
    again = hkgen("migrate", str(cluster))
    assert again.returncode == 0 and "already format 2" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.yaml"]  # no temp file left behind


def test_cli_migrate_refuses_hostile_input_with_a_located_message(hkgen, tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("version: 1\nversion: 1\n")
    run = hkgen("migrate", str(cluster))
    assert run.returncode == 1
    assert "cluster.yaml:2:1: $.version: duplicate key" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
