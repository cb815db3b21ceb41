"""`hkgen boot-media`: the flashable seed with real secrets (issue 4 item 5).

Every test makes its own age key (pyrage) and encrypts a secrets file with the real sops binary
(`secrets_for` in conftest), then decrypts it through hkgen. Output goes to tmp_path only.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml

from hkgen.areas.seeds import host_files
from hkgen.core.errors import ToolError, UsageError
from hkgen.ops.bootmedia import merge_cmdline, write_boot_media
from hkgen.verify.cloudinit import check_seed_file, placeholders
from test_seeds import release, render_seeds, variant

TOKEN = "t0k3nt0k3nt0k3nt0k3nt0k3nt0k3n42"  # noqa: S105 - test value
PASSPHRASE = "hall: closet #2 'upstairs'"  # noqa: S105 - test value
KNOWN = {"JOIN_TOKEN": TOKEN, "WIFI_PASSPHRASE_HOME_IOT": PASSPHRASE}


@pytest.fixture
def cluster_with_secrets(home_copy: Path, secrets_for) -> tuple[Path, Path]:
    key, _values = secrets_for(home_copy, KNOWN)
    return home_copy, key


def _files(card: Path) -> dict[str, str]:
    return {p.relative_to(card).as_posix(): p.read_text() for p in card.rglob("*") if p.is_file()}


def test_seed_holds_the_token_and_no_committed_file_does(cluster_with_secrets, hkgen, tmp_path: Path) -> None:
    from hkgen.pipeline import render_cluster

    home, key = cluster_with_secrets
    card = tmp_path / "card"
    run = hkgen("boot-media", str(home), "--node", "cp1", "--out", str(card), "--age-key", str(key))
    assert run.returncode == 0, run.stdout + run.stderr
    # A control plane also gets the cluster's age key for its GitOps bootstrapper (see below).
    assert sorted(_files(card)) == ["cmdline.txt", "hkgen/age.agekey", "meta-data", "network-config", "user-data"]
    assert TOKEN in _files(card)["user-data"]
    # Everything `hkgen render` commits (the whole tree, not only the seeds), and the inputs.
    tree = render_cluster(home, verify=False).tree
    committed = {str(p): data for p, data in tree.items()}
    committed |= {str(p): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert len(committed) > 50
    for name, body in committed.items():
        assert TOKEN.encode() not in body, name
        assert PASSPHRASE.encode() not in body, name
    assert b"${JOIN_TOKEN}" in tree[next(p for p in tree if p.as_posix() == "nodes/cp1/user-data")]
    assert TOKEN not in run.stdout + run.stderr and PASSPHRASE not in run.stdout + run.stderr
    assert f"wrote {card / 'user-data'}" in run.stdout


def test_boot_media_is_the_committed_seed_with_the_values_filled_in(cluster_with_secrets, tmp_path: Path) -> None:
    home, key = cluster_with_secrets
    card = tmp_path / "card"
    media = write_boot_media(home, "cp1", card, age_key=key)
    assert sorted(str(p) for p in media.written) == ["cmdline.txt", "hkgen/age.agekey", "meta-data",
                                                     "network-config", "user-data"]
    for path in card.rglob("*.*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    files = _files(card)
    ud = yaml.safe_load(files["user-data"])
    by_path = {f["path"]: f["content"] for f in ud["write_files"]}
    assert by_path["/etc/hkgen/microk8s/join-token"] == TOKEN + "\n"
    assert yaml.safe_load(by_path["/etc/hkgen/microk8s/token.yaml"])["persistentClusterToken"] == TOKEN
    # Exactly the committed seed, but with the value where the placeholder was (the fixture's
    # cluster lists its own age key, which the seed names as the backups' recipient).
    recipients = yaml.safe_load((home / "cluster.yaml").read_text())["secrets"]["ageRecipients"]
    cluster = variant(tmp_path / "ref", lambda d: d["secrets"].update(ageRecipients=recipients))
    _plan, tree = render_seeds(cluster)
    committed = tree[next(p for p in tree if p.as_posix() == "nodes/cp1/user-data")].decode()
    assert files["user-data"].replace(TOKEN, "${JOIN_TOKEN}") == committed
    for name, body in files.items():
        assert placeholders(body) == set(), name
        if name.startswith("hkgen/"):
            continue  # the GitOps bootstrapper's secrets, not cloud-init files
        kind = "cmdline.txt" if name.endswith("cmdline.txt") else name
        assert check_seed_file(name, kind, body, node=True) == []


def test_wifi_passphrase_goes_into_network_config_quoted(cluster_with_secrets, tmp_path: Path) -> None:
    home, key = cluster_with_secrets
    write_boot_media(home, "w6", tmp_path / "w6", age_key=key)
    net = yaml.safe_load((tmp_path / "w6" / "network-config").read_text())
    assert net["wifis"]["wlan0"]["access-points"] == {"home-iot": {"password": PASSPHRASE}}
    write_boot_media(home, "zsat-attic", tmp_path / "sat", age_key=key)
    sat = _files(tmp_path / "sat")
    assert TOKEN not in sat["user-data"]  # satellites never join the cluster
    access_points = yaml.safe_load(sat["network-config"])["wifis"]["wlan0"]["access-points"]
    assert access_points["home-iot"]["password"] == PASSPHRASE
    assert "cgroup_enable=memory" not in sat["cmdline.txt"]


def test_kernel_command_line_already_on_the_card_is_kept(cluster_with_secrets, tmp_path: Path) -> None:
    home, key = cluster_with_secrets
    card = tmp_path / "card"
    card.mkdir()
    (card / "cmdline.txt").write_text(
        "console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 rootwait fsck.repair=yes\n")
    (card / "config.txt").write_text("[all]\narm_64bit=1\n")
    media = write_boot_media(home, "w1", card, age_key=key)
    line = (card / "cmdline.txt").read_text()
    assert line.startswith("console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 rootwait fsck.repair=yes ")
    assert line.count("fsck.repair=yes") == 1 and "cgroup_enable=memory cgroup_memory=1" in line
    assert line.endswith("\n") and line.count("\n") == 1
    assert (card / "config.txt").read_text() == "[all]\narm_64bit=1\n"  # other boot files are not touched
    assert any("kept the kernel command line in cmdline.txt" in n for n in media.notes)


def test_ubuntu_26_04_uses_the_a_b_boot_layout(home_copy: Path, secrets_for, tmp_path: Path) -> None:
    text = (home_copy / "cluster.yaml").read_text().replace('release: "24.04"', 'release: "26.04"')
    (home_copy / "cluster.yaml").write_text(text)
    key, _values = secrets_for(home_copy, KNOWN)
    empty = tmp_path / "empty"
    write_boot_media(home_copy, "w2", empty, age_key=key)
    assert (empty / "current" / "cmdline.txt").is_file() and not (empty / "cmdline.txt").exists()
    flashed = tmp_path / "flashed"
    (flashed / "current").mkdir(parents=True)
    (flashed / "current" / "cmdline.txt").write_text("console=tty1 root=LABEL=writable panic=10 rootwait fixrtc\n")
    write_boot_media(home_copy, "w2", flashed, age_key=key)
    assert "cgroup_memory=1" in (flashed / "current" / "cmdline.txt").read_text()
    assert not (flashed / "cmdline.txt").exists()


def test_refuses_to_put_secrets_near_git(cluster_with_secrets, tmp_path: Path) -> None:
    home, key = cluster_with_secrets
    repo = tmp_path / "work"
    (repo / ".git").mkdir(parents=True)
    with pytest.raises(UsageError, match="inside the Git work tree"):
        write_boot_media(home, "cp1", repo / "card", age_key=key)
    assert not (repo / "card").exists()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        write_boot_media(home, "cp1", tmp_path / "a-file", age_key=key)
    with pytest.raises(UsageError, match="into the cluster folder"):
        write_boot_media(home, "cp1", home / "nodes" / "cp1-card", age_key=key)
    assert not (home / "nodes").exists()


def test_wrong_key_fails_without_revealing_anything(cluster_with_secrets, hkgen, tmp_path: Path) -> None:
    import pyrage

    home, _key = cluster_with_secrets
    other = tmp_path / "other.agekey"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    run = hkgen("boot-media", str(home), "--node", "cp1", "--out", str(tmp_path / "card"), "--age-key", str(other))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "cannot decrypt" in run.stderr and TOKEN not in run.stdout + run.stderr
    assert not (tmp_path / "card").exists()


def test_malformed_token_is_named_not_shown(home_copy: Path, secrets_for, tmp_path: Path) -> None:
    key, _values = secrets_for(home_copy, {"JOIN_TOKEN": "Not-A-Token-123"})
    with pytest.raises(ToolError) as err:
        write_boot_media(home_copy, "w3", tmp_path / "card", age_key=key)
    assert "JOIN_TOKEN: does not have the expected form" in str(err.value)
    assert "Not-A-Token-123" not in str(err.value)
    assert not (tmp_path / "card").exists()


def test_unknown_host_and_stale_committed_seed(cluster_with_secrets, tmp_path: Path) -> None:
    home, key = cluster_with_secrets
    with pytest.raises(UsageError, match=r"no node or satellite called 'w7'.*known: cp1, cp2, cp3, w1"):
        write_boot_media(home, "w7", tmp_path / "card", age_key=key)
    (home / "nodes" / "w1").mkdir(parents=True)
    (home / "nodes" / "w1" / "user-data").write_text("#cloud-config\n# an older render\n")
    media = write_boot_media(home, "w1", tmp_path / "card", age_key=key)
    assert any(re.search(r"committed seed in .*nodes/w1 is not current \(user-data\)", n) for n in media.notes)


def test_merge_cmdline() -> None:
    assert merge_cmdline("a b=1 c\nignored second line\n", ("b=1", "d=2")) == "a b=1 c d=2\n"
    assert merge_cmdline("", ("x",)) == "x\n"


def test_secrets_are_quoted_by_the_templates_not_pasted(tmp_path: Path) -> None:
    """A passphrase full of YAML syntax must come back unchanged from every reader."""
    cluster = variant(tmp_path, release("24.04"))
    nasty = "- [x]: {y} & *z | >w #' \""
    files = host_files(cluster, "w6", {"JOIN_TOKEN": "b" * 32, "WIFI_PASSPHRASE_HOME_IOT": nasty})
    from hkgen.render.jinja import render_file

    (net,) = [f for f in files if f.path.name == "network-config"]
    body = render_file(net, {"cluster": cluster, "components": ()}, "x").decode()
    assert yaml.safe_load(body)["wifis"]["wlan0"]["access-points"]["home-iot"]["password"] == nasty
    # ... and the check then refuses it for netplan's sake (the '"'), without printing it.
    problems = [p.format() for p in check_seed_file("n", "network-config", body, node=True)]
    assert problems and all(nasty not in p for p in problems)


def test_only_control_planes_get_the_age_key_and_the_deploy_key(home_copy: Path, secrets_for,
                                                               tmp_path: Path) -> None:
    """The GitOps bootstrapper's secrets (issue 19): a control plane's card carries the cluster's
    age identity (only the one of secrets.ageRecipients) and the deploy key, each 0600 under hkgen/;
    a worker's carries neither."""
    import pyrage

    from hkgen.ops.deploykey import generate_deploy_key

    private, _public = generate_deploy_key("test")
    key, _values = secrets_for(home_copy, {**KNOWN, "GIT_DEPLOY_KEY": private})
    # The key file also holds an unrelated identity, which must stay off the card.
    stranger = str(pyrage.x25519.Identity.generate())
    key.write_text(key.read_text() + stranger + "\n")
    card = tmp_path / "cp2"
    write_boot_media(home_copy, "cp2", card, age_key=key)
    age = (card / "hkgen" / "age.agekey").read_text()
    identities = [line for line in age.splitlines() if line]
    assert len(identities) == 1 and identities[0] in key.read_text() and stranger not in age
    recipients = yaml.safe_load((home_copy / "cluster.yaml").read_text())["secrets"]["ageRecipients"]
    assert str(pyrage.x25519.Identity.from_str(identities[0]).to_public()) in recipients
    assert (card / "hkgen" / "deploy-key").read_text() == private
    for name in ("age.agekey", "deploy-key"):
        assert stat.S_IMODE((card / "hkgen" / name).stat().st_mode) == 0o600
    worker = tmp_path / "w1"
    write_boot_media(home_copy, "w1", worker, age_key=key)
    assert not (worker / "hkgen").exists()
    assert "AGE-SECRET-KEY" not in "".join(_files(worker).values())
