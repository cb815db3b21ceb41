"""Day-2 changes `validate` sees coming (validation/dayafter.py): a renamed Zigbee network, node or
custom app, an engine switch, a node added while every seed lists every host. Each is a warning at
the cluster.yaml line that changed, with a procedure that keeps state: never `hkgen secrets
add-missing` for a renamed network (new keys mean pairing every device again). Real render, real
SOPS file (key names are read without the private key)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ADD_MISSING = "add it with `hkgen secrets add-missing`"


def _edit(cluster: Path, old: str, new: str) -> list[str]:
    path = cluster / "cluster.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path.read_text().splitlines()


def _at(out: str, lines: list[str], json_path: str) -> tuple[str, str]:
    """The warning at `json_path` and the cluster.yaml line it points at."""
    found = re.search(rf"^\S*cluster\.yaml:(\d+):\d+: {re.escape(json_path)}: warning: (.*)$", out, re.M)
    assert found, out
    return found.group(2), lines[int(found.group(1)) - 1]


def test_a_renamed_zigbee_network_gets_the_copy_the_keys_procedure(hkgen, home_copy: Path) -> None:
    lines = _edit(home_copy, "    - name: garden\n", "    - name: yard\n")
    done = hkgen("validate", str(home_copy))
    assert done.returncode == 1  # its keys are missing: publishing now would break the network
    warning, line = _at(done.stdout, lines, "$.zigbee.networks[1].name")
    assert line.strip() == "- name: yard"
    assert "still holds the keys of a network that is gone (ZIGBEE_GARDEN_*)" in warning
    assert "copy its keys, do not make new ones" in warning and "ZIGBEE_YARD_NETWORK_KEY" in warning
    assert "keep the claim data-zigbee2mqtt-garden-0" in warning
    # Never a hint that makes new network keys for the renamed network.
    yard = [ln for ln in done.stdout.splitlines() if "missing secret ZIGBEE_YARD_" in ln]
    assert len(yard) == 3 and not any(ADD_MISSING in ln for ln in yard)
    assert all("every device would have to be paired again" in ln for ln in yard)


def test_a_new_zigbee_network_still_gets_add_missing(hkgen, home_copy: Path) -> None:
    _edit(home_copy, "    - name: garden\n", "    - name: yard\n")
    # With the old network still there, nothing is orphaned: a new network needs new keys.
    text = (home_copy / "cluster.yaml").read_text()
    assert "zigbee" in text
    secrets = home_copy / "secrets.sops.yaml"
    secrets.write_text(secrets.read_text().replace("ZIGBEE_GARDEN_", "ZIGBEE_OTHER_NAME_IS_GONE_X_"))
    done = hkgen("validate", str(home_copy))
    assert "ZIGBEE_OTHER_NAME_IS_GONE_X_*" in done.stdout  # still an orphan: reported
    secrets.write_text(secrets.read_text().replace("ZIGBEE_OTHER_NAME_IS_GONE_X_", "ZIGBEE_YARD_"))
    assert "has no keys" not in hkgen("validate", str(home_copy)).stdout


@pytest.fixture
def rendered(hkgen, home_copy: Path) -> Path:
    done = hkgen("render", "-q", "--no-verify", str(home_copy))
    assert done.returncode == 0, done.stdout + done.stderr
    return home_copy


def test_the_reference_after_its_render_has_no_day2_warning(hkgen, rendered: Path) -> None:
    done = hkgen("validate", str(rendered))
    assert done.returncode == 0
    assert not re.search(r"renamed|is new and the last render|GitOps engine changes|/etc/hosts", done.stdout)


def test_an_engine_switch_is_a_warned_migration(hkgen, rendered: Path) -> None:
    lines = _edit(rendered, "  engine: flux\n", "  engine: argocd\n")
    done = hkgen("validate", str(rendered))
    assert done.returncode == 0
    warning, line = _at(done.stdout, lines, "$.gitops.engine")
    assert line.strip().startswith("engine: argocd")
    assert "changes from flux to argocd" in warning and "docs/day2.md 'Switch the GitOps engine'" in warning


def test_a_renamed_node_is_explained(hkgen, rendered: Path) -> None:
    lines = _edit(rendered, "  - hostname: w6\n", "  - hostname: w7\n")
    done = hkgen("validate", str(rendered))
    warning, line = _at(done.stdout, lines, "$.nodes[8].hostname")
    assert line.strip() == "- hostname: w7"
    assert "node 'w7' is new and the last render had a node that is gone (w6)" in warning
    assert "microk8s remove-node w6" in warning


def test_adding_a_node_warns_that_running_pis_keep_their_hosts_file(hkgen, rendered: Path) -> None:
    anchor = "      - {id: usb-Intenso_SSD_Sata_III_AA000000000000026-0:0, sizeGB: 64}\n"
    _edit(rendered, anchor, anchor + "  - hostname: w7\n    role: worker\n    board: rpi4\n    memoryGiB: 4\n"
                            "    ip: 192.168.10.27\n    mac: 'dc:a6:32:10:00:27'\n")
    done = hkgen("validate", str(rendered))
    assert done.returncode == 0, done.stdout
    lines = (rendered / "cluster.yaml").read_text().splitlines()
    warning, line = _at(done.stdout, lines, "$.nodes[9].hostname")
    assert line.strip() == "- hostname: w7"
    assert "adding w7 changes every Pi's seed (/etc/hosts lists every host)" in warning


def test_a_renamed_custom_app_with_a_volume_is_explained(hkgen, home_copy: Path) -> None:
    app = ("customApps:\n  - name: notes\n    image: docker.io/library/nginx:1.29.0\n    port: 80\n"
           "    storage: {sizeGiB: 1, mountPath: /data}\n")
    path = home_copy / "cluster.yaml"
    path.write_text(path.read_text() + app)
    done = hkgen("render", "-q", "--no-verify", str(home_copy))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _edit(home_copy, "  - name: notes\n", "  - name: memo\n")
    done = hkgen("validate", str(home_copy))
    warning, line = _at(done.stdout, lines, "$.customApps[0].name")
    assert line.strip() == "- name: memo"
    assert "'memo' starts on an empty volume" in warning and "claims of 'notes'" in warning


def test_publish_warns_about_an_engine_switch_it_has_not_rendered_yet(hkgen, rendered: Path, tmp_path: Path) -> None:
    import subprocess

    top = rendered.parent.parent
    env_git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    for argv in (["git", "init", "--quiet", "--initial-branch=main", str(top)],
                 ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(tmp_path / "remote.git")],
                 ["git", "-C", str(top), "remote", "add", "origin", str(tmp_path / "remote.git")],
                 ["git", "-C", str(top), "add", "-A"],
                 [*env_git, "-C", str(top), "commit", "--quiet", "-m", "rendered"],
                 ["git", "-C", str(top), "push", "--quiet", "origin", "main"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    lines = _edit(rendered, "  engine: flux\n", "  engine: argocd\n")
    done = hkgen("publish", "--dry-run", "--no-verify", "clusters/home", cwd=top,
                 env={"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                      "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid"})
    assert done.returncode == 0, done.stdout + done.stderr
    warning, line = _at(done.stdout, lines, "$.gitops.engine")
    assert line.strip().startswith("engine: argocd") and "changes from flux to argocd" in warning
