"""`hkgen secrets init|check|add-missing|rekey` with the real sops binary and real age keys.

Every test also checks that no secret value ever reaches the command's output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyrage
import pytest

from conftest import secret_in
from hkgen.config.secrets import decrypt, required_keys
from hkgen.ops.scaffold import PLACEHOLDER, _generate, load_cluster


def fresh_key(cluster: Path) -> Path:
    """A new age key outside the cluster folder; cluster.yaml is re-pointed at it."""
    identity = pyrage.x25519.Identity.generate()
    key = cluster.parent.parent / "test.agekey"
    key.write_text(f"{identity}\n")
    text = (cluster / "cluster.yaml").read_text()
    text = re.sub(r"age1[02-9ac-hj-np-z]{58}", str(identity.to_public()), text)
    (cluster / "cluster.yaml").write_text(text)
    return key


def no_values_in(output: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        if value != PLACEHOLDER:
            assert not secret_in(value, output), f"the value of {name} was printed"


S3 = {"HKGEN_SECRET_S3_ACCESS_KEY_ID": "AKIAEXAMPLE123", "HKGEN_SECRET_S3_SECRET_ACCESS_KEY": "s3cr3t-Example-Key-42"}


def test_init_generates_every_key_in_its_form(hkgen, home_copy: Path) -> None:
    key = fresh_key(home_copy)
    (home_copy / "secrets.sops.yaml").unlink()
    run = hkgen("secrets", "init", "clusters/home", "--no-input", cwd=home_copy.parent.parent, env=S3)
    assert run.returncode == 0, run.stdout + run.stderr
    values = decrypt(home_copy / "secrets.sops.yaml", age_key_file=key)
    cluster, _ = load_cluster(home_copy)
    needed = {k.name: k for k in required_keys(cluster)}
    # The repository is ssh://: a Git deploy key pair too; its public half is printed with where it goes.
    assert set(values) == set(needed) | {"GIT_DEPLOY_KEY"}
    assert values["GIT_DEPLOY_KEY"].startswith("-----BEGIN OPENSSH " + "PRIVATE KEY-----\n")
    public = re.search(r"deploy key \(public half\): (ssh-ed25519 \S+)", run.stdout)
    assert public is not None and "read-only deploy key of ssh://git@github.com/" in run.stderr
    from hkgen.ops.deploykey import public_key

    assert public_key(values["GIT_DEPLOY_KEY"]).split()[:2] == public.group(1).split()[:2]
    assert re.fullmatch(r"[a-z0-9]{32}", values["JOIN_TOKEN"])
    nets = ("HOUSE", "GARDEN", "ATTIC")
    for net in nets:
        assert re.fullmatch(r"[0-9a-f]{32}", values[f"ZIGBEE_{net}_NETWORK_KEY"])
        assert re.fullmatch(r"[0-9a-f]{16}", values[f"ZIGBEE_{net}_EXT_PAN_ID"])
        assert 0x0001 <= int(values[f"ZIGBEE_{net}_PAN_ID"], 16) <= 0x3FFE
    for suffix in ("NETWORK_KEY", "EXT_PAN_ID", "PAN_ID"):
        assert len({values[f"ZIGBEE_{n}_{suffix}"] for n in nets}) == 3, f"two networks share a {suffix}"
    for name in needed:
        if "PASSWORD" in name:
            assert re.fullmatch(r"[A-Za-z0-9]{32}", values[name])
    assert values["S3_ACCESS_KEY_ID"] == S3["HKGEN_SECRET_S3_ACCESS_KEY_ID"]
    assert values["WIFI_PASSPHRASE_HOME_IOT"] == PLACEHOLDER  # only the user knows it
    assert "not set yet (placeholder): WIFI_PASSPHRASE_HOME_IOT" in run.stdout
    no_values_in(run.stdout + run.stderr, values)
    # Encrypted, to the cluster's recipient, and accepted by validate (which cannot decrypt).
    text = (home_copy / "secrets.sops.yaml").read_text()
    assert "encrypted_regex: ^(data|stringData)$" in text
    no_values_in(text, values)
    valid = hkgen("validate", "clusters/home", cwd=home_copy.parent.parent)
    assert valid.returncode == 0, valid.stdout
    # `check` reports the placeholder (without its value) and fails.
    check = hkgen("secrets", "check", "clusters/home", "--age-key", str(key), cwd=home_copy.parent.parent)
    assert check.returncode == 1
    assert "WIFI_PASSPHRASE_HOME_IOT: not set yet" in check.stdout
    assert "JOIN_TOKEN" not in check.stdout
    no_values_in(check.stdout + check.stderr, values)


def test_init_never_overwrites_an_existing_file(hkgen, home_copy: Path) -> None:
    before = (home_copy / "secrets.sops.yaml").read_bytes()
    run = hkgen("secrets", "init", "clusters/home", "--no-input", cwd=home_copy.parent.parent)
    assert run.returncode == 1
    assert "already exists" in run.stderr and "add-missing" in run.stderr
    assert (home_copy / "secrets.sops.yaml").read_bytes() == before


def test_check_passes_on_a_complete_file(hkgen, home_copy: Path, secrets_for) -> None:
    key, values = secrets_for(home_copy)
    run = hkgen("secrets", "check", "clusters/home", "--age-key", str(key), cwd=home_copy.parent.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "required secrets are set and well-formed" in run.stderr
    no_values_in(run.stdout + run.stderr, values)


def test_check_reports_malformed_duplicate_and_unused_keys_without_values(hkgen, home_copy: Path,
                                                                          secrets_for) -> None:
    key, values = secrets_for(home_copy, {"JOIN_TOKEN": "Not-A-Token", "ZIGBEE_GARDEN_PAN_ID": "1a62",
                                          "ZIGBEE_ATTIC_PAN_ID": "1A62", "OLD_UNUSED_KEY": "whatever-value"})
    run = hkgen("secrets", "check", "clusters/home", "--age-key", str(key), cwd=home_copy.parent.parent)
    assert run.returncode == 1
    assert "JOIN_TOKEN: does not have the expected form" in run.stdout
    assert "ZIGBEE_GARDEN_PAN_ID: same value as ZIGBEE_ATTIC_PAN_ID" in run.stdout
    assert "OLD_UNUSED_KEY: not used by this cluster any more" in run.stdout
    no_values_in(run.stdout + run.stderr, values)


def test_check_with_the_wrong_key_is_a_user_error(hkgen, home_copy: Path, secrets_for, tmp_path: Path) -> None:
    secrets_for(home_copy)
    other = tmp_path / "other.agekey"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    run = hkgen("secrets", "check", "clusters/home", "--age-key", str(other), cwd=home_copy.parent.parent)
    assert run.returncode == 1  # the user's key setup, not a tool failure (tests/test_agekeys.py)
    assert "cannot decrypt" in run.stderr and f"key file {other}" in run.stderr
    assert "Traceback" not in run.stderr


def test_add_missing_after_a_new_zigbee_network_keeps_every_existing_value(hkgen, home_copy: Path,
                                                                          secrets_for) -> None:
    key, values = secrets_for(home_copy)
    before = (home_copy / "secrets.sops.yaml").read_text()
    old_lines = [ln for ln in before.splitlines() if "ENC[AES256_GCM" in ln and not ln.strip().startswith("mac:")]
    text = (home_copy / "cluster.yaml").read_text()
    text = text.replace("zigbee:\n  networks:\n", "zigbee:\n  networks:\n    - name: shed\n      adapter: ember\n"
                        "      channel: 11\n      coordinator: {host: 192.168.10.40, port: 6638}\n")
    (home_copy / "cluster.yaml").write_text(text)
    stale = hkgen("validate", "clusters/home", cwd=home_copy.parent.parent)
    assert stale.returncode == 1 and "missing secret ZIGBEE_SHED_NETWORK_KEY" in stale.stdout
    run = hkgen("secrets", "add-missing", "clusters/home", "--no-input", "--age-key", str(key),
                cwd=home_copy.parent.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    # (the fixture's file predates the deploy key of the ssh:// repository: it is generated too;
    # the new bridge is also a new MQTT user of its own)
    assert ("generated: MQTT_PASSWORD_ZIGBEE2MQTT_SHED, ZIGBEE_SHED_EXT_PAN_ID, ZIGBEE_SHED_NETWORK_KEY, "
            "ZIGBEE_SHED_PAN_ID, GIT_DEPLOY_KEY") in run.stdout
    after = decrypt(home_copy / "secrets.sops.yaml", age_key_file=key)
    assert {k: after[k] for k in values} == values
    assert set(after) - set(values) == {"GIT_DEPLOY_KEY", "ZIGBEE_SHED_EXT_PAN_ID", "ZIGBEE_SHED_NETWORK_KEY",
                                        "ZIGBEE_SHED_PAN_ID", "MQTT_PASSWORD_ZIGBEE2MQTT_SHED"}
    for suffix in ("NETWORK_KEY", "EXT_PAN_ID", "PAN_ID"):
        others = {values[k].lower() for k in values if k.startswith("ZIGBEE_") and k.endswith("_" + suffix)
                  and (suffix != "PAN_ID" or not k.endswith("EXT_PAN_ID"))}
        assert after[f"ZIGBEE_SHED_{suffix}"].lower() not in others
    # Existing values keep their ciphertext: the Git diff shows only the new keys (and sops' MAC).
    new_text = (home_copy / "secrets.sops.yaml").read_text()
    assert all(line in new_text for line in old_lines)
    assert hkgen("validate", "clusters/home", cwd=home_copy.parent.parent).returncode == 0
    again = hkgen("secrets", "add-missing", "clusters/home", "--no-input", "--age-key", str(key),
                  cwd=home_copy.parent.parent)
    assert again.returncode == 0 and "nothing to add" in again.stderr
    assert (home_copy / "secrets.sops.yaml").read_text() == new_text
    no_values_in(run.stdout + run.stderr + again.stdout + again.stderr, after)


def test_add_missing_fills_placeholders_from_the_environment_and_checks_their_form(hkgen, home_copy: Path,
                                                                                   secrets_for) -> None:
    key, values = secrets_for(home_copy, {"WIFI_PASSPHRASE_HOME_IOT": PLACEHOLDER})
    cwd = home_copy.parent.parent
    before = (home_copy / "secrets.sops.yaml").read_bytes()
    bad = hkgen("secrets", "add-missing", "clusters/home", "--no-input", "--age-key", str(key), cwd=cwd,
                env={"HKGEN_SECRET_WIFI_PASSPHRASE_HOME_IOT": "short"})
    assert bad.returncode == 2
    assert "WIFI_PASSPHRASE_HOME_IOT does not have the expected form" in bad.stderr
    assert "short" not in bad.stderr
    assert (home_copy / "secrets.sops.yaml").read_bytes() == before
    good = hkgen("secrets", "add-missing", "clusters/home", "--no-input", "--age-key", str(key), cwd=cwd,
                 env={"HKGEN_SECRET_WIFI_PASSPHRASE_HOME_IOT": "correct horse battery",
                      "HKGEN_SECRET_JOIN_TOKEN": "x" * 32})
    assert good.returncode == 0, good.stdout + good.stderr
    assert "set from your input: WIFI_PASSPHRASE_HOME_IOT" in good.stdout
    assert "ignored HKGEN_SECRET_JOIN_TOKEN" in good.stderr  # existing values are never replaced
    after = decrypt(home_copy / "secrets.sops.yaml", age_key_file=key)
    assert after["WIFI_PASSPHRASE_HOME_IOT"] == "correct horse battery"  # noqa: S105 - a test value
    assert after["JOIN_TOKEN"] == values["JOIN_TOKEN"]
    check = hkgen("secrets", "check", "clusters/home", "--age-key", str(key), cwd=cwd)
    assert check.returncode == 0, check.stdout
    assert not list(home_copy.glob(".*hkgen-new"))


def test_the_default_key_location_is_found(hkgen, home_copy: Path, secrets_for) -> None:
    import os

    key, _ = secrets_for(home_copy)
    default = Path(os.environ["XDG_CONFIG_HOME"]) / "hkgen" / "home.agekey"
    default.parent.mkdir(parents=True)
    default.write_bytes(key.read_bytes())
    key.unlink()
    run = hkgen("secrets", "check", "clusters/home", cwd=home_copy.parent.parent)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", ["JOIN_TOKEN", "ZIGBEE_X_NETWORK_KEY", "ZIGBEE_X_PAN_ID", "ZIGBEE_X_EXT_PAN_ID",
                                  "MQTT_PASSWORD_ESPHOME", "GRAFANA_ADMIN_PASSWORD", "ZIGBEE2MQTT_FRONTEND_TOKEN"])
def test_generated_values_always_match_their_pattern(home_copy: Path, name: str) -> None:
    cluster, _ = load_cluster(home_copy)
    patterns = {k.name: k for k in required_keys(cluster)}
    key = patterns.get(name) or patterns[name.replace("_X_", "_HOUSE_")]
    seen = {_generate(key, set()) for _ in range(300)}
    assert all(v is not None and re.match(key.pattern, v) for v in seen)
    assert len(seen) > 250  # random, not a constant
    assert PLACEHOLDER not in seen and not re.match(key.pattern, PLACEHOLDER)


def test_placeholder_fails_every_pattern(home_copy: Path) -> None:
    cluster, _ = load_cluster(home_copy)
    for key in required_keys(cluster):
        assert not re.match(key.pattern, PLACEHOLDER), key.name


# --- rekey: the age recipients of cluster.yaml, exactly ------------------------------------------------


def _second_key(folder: Path, name: str) -> tuple[Path, str]:
    identity = pyrage.x25519.Identity.generate()
    key = folder / f"{name}.agekey"
    key.write_text(f"{identity}\n")
    return key, str(identity.to_public())


def _set_recipients(cluster: Path, recipients: list[str]) -> None:
    text = (cluster / "cluster.yaml").read_text()
    listed = "".join(f"    - {r}\n" for r in recipients)
    text = re.sub(r"(  ageRecipients:\n)(    - age1[02-9ac-hj-np-z]{58}\n)+", lambda m: m.group(1) + listed, text)
    (cluster / "cluster.yaml").write_text(text)


def test_rekey_adds_a_new_admin_and_then_removes_the_old_key(hkgen, home_copy: Path, secrets_for) -> None:
    old_key, values = secrets_for(home_copy)
    old_public = re.search(r"age1[02-9ac-hj-np-z]{58}", (home_copy / "cluster.yaml").read_text()).group(0)
    new_key, new_public = _second_key(home_copy.parent.parent, "new")
    cwd = home_copy.parent.parent
    # A second admin: validate names the missing recipient and points at rekey.
    _set_recipients(home_copy, [old_public, new_public])
    before = hkgen("validate", "clusters/home", cwd=cwd)
    assert before.returncode == 1
    assert "not encrypted to" in before.stdout and "hkgen secrets rekey" in before.stdout
    with pytest.raises(Exception, match="cannot decrypt"):
        decrypt(home_copy / "secrets.sops.yaml", age_key_file=new_key)
    added = hkgen("secrets", "rekey", "clusters/home", "--age-key", str(old_key), cwd=cwd)
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.splitlines() == [f"added: {new_public}"]
    assert hkgen("validate", "clusters/home", cwd=cwd).returncode == 0
    assert decrypt(home_copy / "secrets.sops.yaml", age_key_file=new_key) == values
    # The old key leaves (a lost laptop): validate flags that it can still read, rekey drops it.
    _set_recipients(home_copy, [new_public])
    stale = hkgen("validate", "clusters/home", cwd=cwd)
    assert stale.returncode == 1 and "that key can still read every secret" in stale.stdout
    removed = hkgen("secrets", "rekey", "clusters/home", "--age-key", str(new_key), cwd=cwd)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert removed.stdout.splitlines() == [f"removed: {old_public}"]
    assert "Git history" in removed.stderr
    assert hkgen("validate", "clusters/home", cwd=cwd).returncode == 0
    assert decrypt(home_copy / "secrets.sops.yaml", age_key_file=new_key) == values
    with pytest.raises(Exception, match="cannot decrypt"):
        decrypt(home_copy / "secrets.sops.yaml", age_key_file=old_key)
    for run in (added, removed):
        no_values_in(run.stdout + run.stderr, values)
    assert not list(home_copy.glob(".*hkgen-new"))


def test_rekey_with_nothing_to_do_or_a_key_that_cannot_read_changes_nothing(hkgen, home_copy: Path,
                                                                            secrets_for) -> None:
    key, _values = secrets_for(home_copy)
    cwd = home_copy.parent.parent
    before = (home_copy / "secrets.sops.yaml").read_bytes()
    same = hkgen("secrets", "rekey", "clusters/home", "--age-key", str(key), cwd=cwd)
    assert same.returncode == 0 and "nothing changed" in same.stderr
    stranger, stranger_public = _second_key(cwd, "stranger")
    _set_recipients(home_copy, [stranger_public])
    refused = hkgen("secrets", "rekey", "clusters/home", "--age-key", str(stranger), cwd=cwd)
    assert refused.returncode == 1 and "cannot decrypt" in refused.stderr
    assert "is not one the file is encrypted to" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (home_copy / "secrets.sops.yaml").read_bytes() == before
