"""`hkgen init`: a new repository from the shipped cookiecutter template, validated, with its age key
outside the repository and nothing else written under HOME."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from conftest import secret_in
from hkgen.config.secrets import decrypt, required_keys
from hkgen.core.errors import UsageError
from hkgen.ops.scaffold import PLACEHOLDER_SSH_KEY, Answers, init_repository, read_recipient, starter_layout


def tree_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def test_init_no_input_creates_a_valid_repository_and_only_the_key_under_home(hkgen, tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    before = tree_of(home) if home.exists() else set()
    run = hkgen("init", "home-ops", "--no-input", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    repo = tmp_path / "home-ops"
    assert tree_of(repo) == {".gitignore", ".pre-commit-config.yaml", ".sops.yaml", "README.md",
                             "schemas/cluster.schema.json", "clusters/home/cluster.yaml",
                             "clusters/home/secrets.sops.yaml", "renovate.json", ".github/workflows/hkgen.yaml",
                             ".forgejo/workflows/hkgen.yaml"}
    assert (repo / ".git").is_dir()  # and it is a Git repository
    # Nothing under HOME but the key (no ~/.cookiecutter_replay, no ~/.cookiecutters, no cache).
    key = home / ".config" / "hkgen" / "home.agekey"
    assert tree_of(home) - before == {str(key.relative_to(home))}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "AGE-SECRET-KEY-1" in key.read_text()
    assert not any("AGE-SECRET-KEY" in (repo / f).read_text() for f in tree_of(repo))
    assert f"created age key {key}" in run.stdout
    valid = hkgen("validate", "clusters/home", cwd=repo)
    assert valid.returncode == 0, valid.stdout + valid.stderr


def test_generated_files_agree_on_the_key_and_the_rules(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "k.agekey"
    created = init_repository(tmp_path / "repo", Answers(name="lake", nodes=5, engine="argocd"), key)
    repo = created.repo
    recipient = read_recipient(key)
    assert created.recipient == recipient and created.key_created
    sops = yaml.safe_load((repo / ".sops.yaml").read_text())
    assert sops == {"creation_rules": [{"path_regex": r"clusters/.*/secrets\.sops\.yaml$",
                                        "encrypted_regex": "^(data|stringData)$", "age": recipient}]}
    cluster = yaml.safe_load((repo / "clusters" / "lake" / "cluster.yaml").read_text())
    assert cluster["secrets"]["ageRecipients"] == [recipient]
    assert cluster["gitops"]["engine"] == "argocd"
    assert cluster["cluster"]["name"] == "lake"
    assert len(cluster["nodes"]) == 5
    assert cluster["os"]["admins"][0]["sshKeys"] == [PLACEHOLDER_SSH_KEY]
    ignore = (repo / ".gitignore").read_text().splitlines()
    assert {".hkgen-tx/", ".hkgen-tx.tmp/", "*.agekey"} <= set(ignore)
    hooks = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())
    assert [h["id"] for h in hooks["repos"][0]["hooks"]] == ["hkgen-validate", "hkgen-render-check"]
    # The secrets file is SOPS-encrypted to that key and holds every required key, decryptable with it.
    text = (repo / "clusters" / "lake" / "secrets.sops.yaml").read_text()
    assert recipient in text and "ENC[AES256_GCM" in text
    values = decrypt(repo / "clusters" / "lake" / "secrets.sops.yaml", age_key_file=key)
    from hkgen.ops.scaffold import load_cluster

    model, _ = load_cluster(repo / "clusters" / "lake")
    # ssh:// repository: the Git deploy key too (issue 19), its public half reported for registering.
    assert set(values) == {k.name for k in required_keys(model)} | {"GIT_DEPLOY_KEY"}
    assert created.secrets.deploy_public.startswith("ssh-ed25519 ")
    # Only the dead-man's switch's ping URL (an outside service's, on in the starter) is the user's to give.
    assert created.secrets.placeholders == ["ALERTS_HEARTBEAT_URL"]
    for value in values.values():
        assert not secret_in(value, text)


def test_local_hooks_in_the_template_match_the_published_hooks(tmp_path: Path, repo: Path) -> None:
    created = init_repository(tmp_path / "r", Answers(), tmp_path / "k.agekey")
    config = yaml.safe_load((created.repo / ".pre-commit-config.yaml").read_text())
    local = {h["id"]: h for h in config["repos"][0]["hooks"]}
    published = {h["id"]: h for h in yaml.safe_load((repo / ".pre-commit-hooks.yaml").read_text())}
    assert local.keys() == published.keys()
    for hook_id, hook in published.items():
        for field in ("entry", "files", "require_serial"):
            assert local[hook_id][field] == hook[field], (hook_id, field)


def test_hooks_repo_option_pins_hkgen_hook_repository(tmp_path: Path) -> None:
    answers = Answers(hooks_repo="https://example.invalid/hkgen.ops.git", hooks_rev="v9.9.9")
    created = init_repository(tmp_path / "r", answers, tmp_path / "k.agekey")
    config = yaml.safe_load((created.repo / ".pre-commit-config.yaml").read_text())
    assert config == {"repos": [{"repo": "https://example.invalid/hkgen.ops.git", "rev": "v9.9.9",
                                 "hooks": [{"id": "hkgen-validate"}, {"id": "hkgen-render-check"}]}]}


@pytest.mark.parametrize("nodes", [1, 3, 4, 6, 9, 25])
def test_every_supported_size_validates(hkgen, tmp_path: Path, nodes: int) -> None:
    created = init_repository(tmp_path / "r", Answers(nodes=nodes), tmp_path / "k.agekey")
    cluster = yaml.safe_load((created.cluster_dir / "cluster.yaml").read_text())
    roles = [n["role"] for n in cluster["nodes"]]
    assert len(roles) == nodes
    assert roles.count("control-plane") == (1 if nodes == 1 else 3)
    assert cluster["cluster"]["topology"] == ("single-node" if nodes == 1 else "ha")
    run = hkgen("validate", str(created.cluster_dir))
    assert run.returncode == 0, run.stdout + run.stderr
    # Valid, but every value only the user knows is pointed at: the key, and each Pi's MAC and SSD.
    warned = re.findall(r"\$\.(\S+): warning: the starter's placeholder", run.stdout)
    schedulable = [i for i, n in enumerate(cluster["nodes"]) if n.get("disks")]
    assert sorted(warned) == sorted(["gitops.repository.url", "os.admins[0].sshKeys[0]",
                                     *(f"nodes[{i}].mac" for i in range(nodes)),
                                     *(f"nodes[{i}].disks[0].id" for i in schedulable),
                                     *(f"nodes[{i}].usbDevices[0].id" for i, n in enumerate(cluster["nodes"])
                                       if n.get("usbDevices"))])


def test_boot_media_refuses_a_pi_with_starter_placeholders(hkgen, tmp_path: Path) -> None:
    created = init_repository(tmp_path / "r", Answers(nodes=3), tmp_path / "k.agekey")
    card = tmp_path / "card"
    run = hkgen("boot-media", str(created.cluster_dir), "--node", "cp2", "--out", str(card),
                "--age-key", str(tmp_path / "k.agekey"))
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines() + run.stderr.splitlines()
    located = sorted(re.findall(r"cluster\.yaml:\d+:\d+: \$\.(\S+): the starter's placeholder", "\n".join(lines)))
    # cp2's own MAC and SSD and the shared admin key; not cp1's or cp3's.
    assert located == ["nodes[1].disks[0].id", "nodes[1].mac", "os.admins[0].sshKeys[0]"], lines
    assert not card.exists() and "Traceback" not in run.stderr
    # Once replaced, the same Pi's seed is written.
    path = created.cluster_dir / "cluster.yaml"
    text = path.read_text().replace(PLACEHOLDER_SSH_KEY, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhrZ2VuLXRlc3Qta2V5"
                                    "LW9mLWEtcmVhbC1wZXJzb24 me@laptop")
    text = text.replace("'02:00:00:00:00:02'", "'dc:a6:32:00:00:02'").replace("usb-REPLACE-WITH-SSD-ID-of-cp2-0:0",
                                                                             "usb-Samsung_T7_S1-0:0")
    path.write_text(text)
    # Without --age-key the cluster's key is found where `hkgen init` keeps it by default.
    default = Path(os.environ["XDG_CONFIG_HOME"]) / "hkgen" / "home.agekey"
    default.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "k.agekey").rename(default)
    again = hkgen("boot-media", str(created.cluster_dir), "--node", "cp2", "--out", str(card))
    assert again.returncode == 0, again.stdout + again.stderr
    assert (card / "user-data").is_file()


def test_two_nodes_are_refused_with_the_reason(hkgen, tmp_path: Path) -> None:
    run = hkgen("init", "r", "--no-input", "--nodes", "2", cwd=tmp_path)
    assert run.returncode == 2
    assert "two control planes cannot keep quorum" in run.stderr
    assert not (tmp_path / "r").exists()
    with pytest.raises(UsageError):
        starter_layout(2)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--name", "Home", "lowercase letters"),
    ("--repo-url", "git@github.com:x/y.git", "ssh:// or https://"),
    ("--timezone", "Mars/Olympus", "unknown time zone"),
    ("--engine", "helm", "invalid choice"),
])
def test_bad_answers_are_usage_errors(hkgen, tmp_path: Path, flag: str, value: str, message: str) -> None:
    run = hkgen("init", "r", "--no-input", flag, value, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "r").exists()


def test_refuses_a_non_empty_directory_and_a_key_inside_the_repository(hkgen, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    run = hkgen("init", "full", "--no-input", cwd=tmp_path)
    assert run.returncode == 2 and "not empty" in run.stderr
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]
    inside = hkgen("init", "new", "--no-input", "--age-key", "new/key.agekey", cwd=tmp_path)
    assert inside.returncode == 2 and "outside the repository" in inside.stderr
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert hkgen("init", "empty", "--no-input", "--age-key", "k.agekey", cwd=tmp_path).returncode == 0


def test_an_existing_key_is_reused_never_overwritten(hkgen, tmp_path: Path) -> None:
    key = tmp_path / "shared.agekey"
    assert hkgen("init", "one", "--no-input", "--age-key", str(key), cwd=tmp_path).returncode == 0
    original = key.read_bytes()
    run = hkgen("init", "two", "--no-input", "--age-key", str(key), "--name", "garage", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"reused age key {key}" in run.stdout
    assert key.read_bytes() == original
    recipient = read_recipient(key)
    assert recipient in (tmp_path / "two" / ".sops.yaml").read_text()
    assert (tmp_path / "two" / "clusters" / "garage" / "cluster.yaml").is_file()


def test_the_users_ssh_key_is_used_when_present(hkgen, tmp_path: Path) -> None:
    ssh = Path(os.environ["HOME"]) / ".ssh"
    ssh.mkdir(parents=True)
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFSddooNZky+BjKXipFHeGaa03v8+vYMd2rBf0U+oLz me@laptop"
    (ssh / "id_ed25519.pub").write_text(line + "\n")
    run = hkgen("init", "r", "--no-input", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    cluster = yaml.safe_load((tmp_path / "r" / "clusters" / "home" / "cluster.yaml").read_text())
    assert cluster["os"]["admins"][0]["sshKeys"] == [line]
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    refused = hkgen("init", "r2", "--no-input", "--ssh-key", str(bad), cwd=tmp_path)
    assert refused.returncode == 2 and "not an OpenSSH public key" in refused.stderr


def test_prompts_take_answers_from_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from hkgen.cli import main

    answers = "\n".join(["Cabin", "cabin", "2", "1", "argocd", "", "Europe/Vienna", ""]) + "\n"
    stdin = io.StringIO(answers)
    stdin.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", stdin)
    code = main(["init", str(tmp_path / "r"), "--age-key", str(tmp_path / "k.agekey")])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "lowercase letters" in captured.err  # "Cabin" was refused and asked again
    assert "two control planes cannot keep quorum" in captured.err  # and so was 2
    cluster = yaml.safe_load((tmp_path / "r" / "clusters" / "cabin" / "cluster.yaml").read_text())
    assert cluster["cluster"]["topology"] == "single-node"
    assert cluster["gitops"]["engine"] == "argocd"
    assert cluster["cluster"]["timezone"] == "Europe/Vienna"
    assert cluster["gitops"]["repository"]["url"] == Answers().repo_url


def test_answers_are_quoted_safely_in_yaml(tmp_path: Path) -> None:
    # A domain that YAML 1.1 would read as a boolean, and a URL with characters YAML cares about.
    answers = Answers(domain="on", repo_url="ssh://git@example.com:2222/~me/on:off#x.git".replace("#", "-"))
    created = init_repository(tmp_path / "r", answers, tmp_path / "k.agekey")
    data = yaml.safe_load((created.cluster_dir / "cluster.yaml").read_text())
    assert data["cluster"]["domain"] == "on"
    assert data["gitops"]["repository"]["url"] == answers.repo_url
