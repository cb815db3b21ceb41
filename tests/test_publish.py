"""`hkgen publish` against a real local bare repository with real git.

Each test gets a bare "remote" and a clone of it holding the reference cluster's inputs. Git runs
with the hermetic global config from conftest (GIT_CONFIG_GLOBAL in tmp); the identity is set in
the clone.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from hkgen.core.errors import UsageError, WriteError
from hkgen.ops.publish import publish
from hkgen.output.provenance import seal
from hkgen.output.write import MANIFEST

HOME = Path(__file__).resolve().parents[1] / "clusters" / "home"


def git(cwd: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def clone(remote: Path, dest: Path) -> Path:
    git(remote.parent, "clone", "--quiet", str(remote), str(dest))
    git(dest, "config", "user.name", "Test Person")
    git(dest, "config", "user.email", "test@example.invalid")
    return dest


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose main branch holds a README and a .gitignore (no cluster yet)."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = clone(bare, tmp_path / "seed")
    git(seed, "symbolic-ref", "HEAD", "refs/heads/main")
    (seed / "README.md").write_text("# home ops\n")
    (seed / ".gitignore").write_text(".hkgen-tx/\n.hkgen-tx.tmp/\n*.agekey\n")
    git(seed, "add", "-A")
    git(seed, "commit", "--quiet", "-m", "initial")
    git(seed, "push", "--quiet", "origin", "main")
    shutil.rmtree(seed)
    return bare


@pytest.fixture
def work(remote: Path, tmp_path: Path) -> Path:
    """A clone with clusters/home/{cluster.yaml,secrets.sops.yaml} added but not committed."""
    repo = clone(remote, tmp_path / "work")
    cluster = repo / "clusters" / "home"
    cluster.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(HOME / name, cluster / name)
    return repo


def fast(path: Path, **kwargs: object):
    """publish() without the kustomize/schema verification (seconds per call on the reference
    cluster); the git behaviour under test does not depend on it. The first test verifies fully."""
    return publish(path, verify=False, **kwargs)  # type: ignore[arg-type]


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def remote_main(remote: Path) -> str:
    return git(remote, "rev-parse", "refs/heads/main")


def files_in(repo: Path, commit: str) -> list[str]:
    return git(repo, "show", "--name-only", "--format=", commit).splitlines()


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


def edit_description(cluster: Path, text: str) -> None:
    path = cluster / "cluster.yaml"
    lines = path.read_text().splitlines(keepends=True)
    lines = [f"  description: {text}\n" if ln.startswith("  description:") else ln for ln in lines]
    path.write_text("".join(lines))


def test_first_publish_commits_only_the_cluster_and_pushes(work: Path, remote: Path) -> None:
    (work / "notes.txt").write_text("not for the cluster")  # untracked, outside: must stay out
    before = head(work)
    result = publish(work / "clusters" / "home")
    assert result.commit is not None and result.commit == head(work)
    assert git(work, "rev-parse", f"{result.commit}^") == before
    committed = files_in(work, result.commit)
    assert "clusters/home/cluster.yaml" in committed
    assert "clusters/home/secrets.sops.yaml" in committed
    assert f"clusters/home/{MANIFEST}" in committed
    assert all(p.startswith("clusters/home/") for p in committed)
    manifest = json.loads((work / "clusters" / "home" / MANIFEST).read_text())
    assert {f"clusters/home/{p}" for p in manifest["files"]} <= set(committed)
    assert remote_main(remote) == result.commit
    assert status(work) == "?? notes.txt"
    assert result.pushed == [git(work, "log", "-1", "--format=%h %s")]
    assert git(work, "log", "-1", "--format=%s") == "clusters/home: publish rendered cluster home"
    assert "Rendered by hkgen" in git(work, "log", "-1", "--format=%b")


def test_publish_again_is_a_noop(work: Path, remote: Path) -> None:
    fast(work / "clusters" / "home")
    tip = head(work)
    again = fast(work / "clusters" / "home")
    assert again.nothing_to_do and again.commit is None
    assert not again.report.dirty
    assert head(work) == tip == remote_main(remote)


def test_publish_to_an_empty_remote_creates_the_branch(tmp_path: Path) -> None:
    bare = tmp_path / "empty.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    repo = clone(bare, tmp_path / "fresh")
    git(repo, "symbolic-ref", "HEAD", "refs/heads/main")
    cluster = repo / "clusters" / "home"
    cluster.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(HOME / name, cluster / name)
    result = fast(cluster)
    assert result.commit is not None
    assert remote_main(bare) == result.commit
    assert git(repo, "rev-list", "--count", "HEAD") == "1"


def test_change_publishes_only_cluster_files_and_leaves_other_edits_alone(work: Path, remote: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    (work / "README.md").write_text("# home ops\n\nan unstaged edit of mine\n")
    edit_description(cluster, "Now with a second description.")
    result = fast(cluster, message="describe the cluster better")
    assert result.commit is not None
    committed = files_in(work, result.commit)
    assert "clusters/home/cluster.yaml" in committed
    assert all(p.startswith("clusters/home/") for p in committed)
    assert git(work, "log", "-1", "--format=%s") == "describe the cluster better"
    assert status(work) == "M README.md"
    assert remote_main(remote) == result.commit


def test_refuses_unrelated_staged_changes_and_changes_nothing(work: Path, remote: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    tip = head(work)
    (work / "README.md").write_text("# staged elsewhere\n")
    git(work, "add", "README.md")
    edit_description(cluster, "A change that must wait.")
    manifest = (cluster / MANIFEST).read_bytes()
    with pytest.raises(WriteError, match=r"changes outside the cluster are staged .*: README\.md"):
        fast(cluster)
    assert head(work) == tip == remote_main(remote)
    assert (cluster / MANIFEST).read_bytes() == manifest
    assert git(work, "diff", "--cached", "--name-only") == "README.md"


def test_refuses_drift_in_the_cluster_folder(work: Path, remote: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    tip = head(work)
    (cluster / "secrets.plain.yaml").write_text("stringData: {JOIN_TOKEN: oops}\n")  # a decrypted copy
    (cluster / "cluster.yaml.orig").write_text("editor leftovers\n")
    with pytest.raises(WriteError) as err:
        fast(cluster)
    message = str(err.value)
    assert "changes that `hkgen render` does not produce" in message
    assert "clusters/home/cluster.yaml.orig (untracked)" in message
    assert "clusters/home/secrets.plain.yaml (untracked)" in message
    assert "oops" not in message
    assert head(work) == tip == remote_main(remote)


def _commit_as_if_generated(work: Path, rel: str, content: bytes) -> None:
    """Record `rel` as generated by an earlier render (older hkgen) and commit it."""
    cluster = work / "clusters" / "home"
    manifest = json.loads((cluster / MANIFEST).read_text())
    manifest["files"][rel] = hashlib.sha256(content).hexdigest()
    manifest["seal"] = seal(manifest["files"])  # as hkgen itself writes it
    (cluster / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (cluster / rel).parent.mkdir(parents=True, exist_ok=True)
    (cluster / rel).write_bytes(content)
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "older render")
    git(work, "push", "--quiet", "origin", "main")


def test_refuses_a_hand_edited_generated_file_and_removes_stale_ones(work: Path, remote: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    _commit_as_if_generated(work, "apps/retired/release.yaml", b"kind: HelmRelease\n")
    (cluster / "apps" / "retired" / "release.yaml").write_text("kind: HelmRelease\n# my tweak\n")
    tip = head(work)
    with pytest.raises(WriteError, match=r"release\.yaml: was edited by hand and is no longer generated"):
        fast(cluster)
    assert head(work) == tip
    git(work, "checkout", "--", "clusters/home/apps/retired/release.yaml")
    result = fast(cluster)
    assert result.commit is not None
    assert "clusters/home/apps/retired/release.yaml" in files_in(work, result.commit)
    assert not (cluster / "apps" / "retired").exists()
    assert git(work, "ls-tree", "-r", "--name-only", "HEAD", "clusters/home/apps/retired") == ""
    assert remote_main(remote) == result.commit


def test_refuses_when_behind_or_diverged_and_never_forces(work: Path, remote: Path, tmp_path: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    other = clone(remote, tmp_path / "other")
    (other / "CHANGELOG.md").write_text("someone else\n")
    git(other, "add", "-A")
    git(other, "commit", "--quiet", "-m", "someone else's commit")
    git(other, "push", "--quiet", "origin", "main")
    theirs = remote_main(remote)
    edit_description(cluster, "Mine.")
    with pytest.raises(WriteError, match=r"main is behind origin/main .*git pull --ff-only origin main"):
        fast(cluster)
    (work / "LOCAL.md").write_text("mine\n")
    git(work, "add", "LOCAL.md")
    git(work, "commit", "--quiet", "-m", "a local commit")
    with pytest.raises(WriteError, match=r"main has diverged from origin/main; hkgen never force-pushes"):
        fast(cluster)
    assert remote_main(remote) == theirs
    assert git(work, "log", "-1", "--format=%s") == "a local commit"
    git(work, "pull", "--quiet", "--rebase", "--autostash", "origin", "main")
    result = fast(cluster)
    assert remote_main(remote) == result.commit
    assert git(remote, "merge-base", "--is-ancestor", theirs, "refs/heads/main", check=False) == ""


def test_push_rejected_by_the_remote_is_reported_and_the_commit_kept(work: Path, remote: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch: no direct pushes' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = remote_main(remote)
    with pytest.raises(WriteError) as err:
        fast(work / "clusters" / "home")
    assert "was refused" in str(err.value) and "committed locally as" in str(err.value)
    assert "nothing was forced" in str(err.value)
    assert remote_main(remote) == before
    assert git(work, "log", "-1", "--format=%s").startswith("clusters/home: publish")


def test_dry_run_changes_nothing(work: Path, remote: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    edit_description(cluster, "Dry.")
    before_status, tip = status(work), head(work)
    manifest = (cluster / MANIFEST).read_bytes()
    result = fast(cluster, dry_run=True)
    assert result.dry_run and result.commit is None
    assert "clusters/home/cluster.yaml" in result.files
    assert result.pushed == ["(the new commit)"]
    assert status(work) == before_status and head(work) == tip == remote_main(remote)
    assert (cluster / MANIFEST).read_bytes() == manifest


def test_refuses_detached_head_and_unfinished_merges(work: Path) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    git(work, "switch", "--quiet", "--detach", "HEAD")
    with pytest.raises(WriteError, match="HEAD is detached"):
        fast(cluster)
    git(work, "switch", "--quiet", "main")
    merge_head = Path(git(work, "rev-parse", "--git-path", "MERGE_HEAD"))
    (work / merge_head).write_text(head(work) + "\n")
    with pytest.raises(WriteError, match="a merge is in progress"):
        fast(cluster)


def test_refuses_generated_files_hidden_by_gitignore(work: Path) -> None:
    (work / ".gitignore").write_text(".hkgen-tx/\n*.json\n")
    git(work, "commit", "--quiet", "-am", "ignore json")
    with pytest.raises(WriteError, match=rf"\.gitignore hides clusters/home/{MANIFEST}"):
        fast(work / "clusters" / "home")


def test_outside_a_git_work_tree_is_a_usage_error(home_copy: Path) -> None:
    with pytest.raises(UsageError, match="not inside a git work tree"):
        fast(home_copy)


# --- the command line ---------------------------------------------------------------------------


def test_cli_publish_reports_and_refuses_without_traceback(hkgen, work: Path, remote: Path) -> None:
    run = hkgen("publish", "clusters/home", "--no-verify", "-m", "first render", cwd=work)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "committed clusters/home/cluster.yaml" in run.stdout
    assert "pushed" in run.stdout and "to origin/main" in run.stderr
    assert git(work, "log", "-1", "--format=%s") == "first render"
    assert remote_main(remote) == head(work)
    noop = hkgen("publish", "clusters/home", "--no-verify", cwd=work)
    assert noop.returncode == 0 and "nothing to publish" in noop.stderr
    (work / "clusters" / "home" / "stray.txt").write_text("x")
    refused = hkgen("publish", "clusters/home", "--no-verify", "--dry-run", cwd=work)
    assert refused.returncode == 1
    assert "clusters/home/stray.txt (untracked)" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr


def test_cli_publish_of_an_invalid_cluster_commits_nothing(hkgen, work: Path, remote: Path) -> None:
    fast(work / "clusters" / "home")
    tip = head(work)
    path = work / "clusters" / "home" / "cluster.yaml"
    path.write_text(path.read_text().replace("name: home ", "name: Home "))
    run = hkgen("publish", "clusters/home", cwd=work)
    assert run.returncode == 1
    assert "clusters/home/cluster.yaml:" in run.stdout and "$.cluster.name" in run.stdout
    assert head(work) == tip == remote_main(remote)


def test_publish_warns_about_what_the_engine_cannot_apply_against_what_the_cluster_follows(work: Path, remote: Path,
                                                                                hkgen) -> None:
    cluster = work / "clusters" / "home"
    fast(cluster)
    path = cluster / "cluster.yaml"
    text = path.read_text()
    edited = text.replace("    storageGiB: 10\n    backupClass: critical\n  zigbee2mqtt:",
                          "    storageGiB: 16\n    backupClass: critical\n  zigbee2mqtt:", 1)
    edited = edited.replace("    ip: 192.168.10.26\n", "    ip: 192.168.10.27\n", 1)
    path.write_text(edited.replace("    replicas: 3\n    reservedPercent", "    replicas: 2\n    reservedPercent", 1))
    assert edited != text and path.read_text() != edited and "192.168.10.27" in edited
    # Rendered first, as usual: the tree on disk is current, the remote still has the old one.
    assert hkgen("render", "-q", "--no-verify", str(cluster)).returncode == 0
    dry = fast(cluster, dry_run=True)
    volume, replicas, network = dry.warnings
    # Each at the cluster.yaml line the user changed; the generated file follows as a note.
    lines = path.read_text().splitlines()
    assert {w.file for w in dry.warnings} == {"clusters/home/cluster.yaml"}
    assert network.path.startswith("$.nodes[") and "reflash w6" in network.hint
    assert "hostname: w6" in lines[network.line - 1]
    assert "(generated: clusters/home/nodes/w6/network-config" in network.message
    assert volume.path == "$.apps.home-assistant" and lines[volume.line - 1].strip() == "home-assistant:"
    assert "size 10Gi -> 16Gi" in volume.message and "patch pvc config-home-assistant-0" in volume.hint
    assert "(generated: clusters/home/apps/home-assistant/statefulset.yaml:" in volume.message
    assert replicas.path == "$.storage.longhorn.replicas" and lines[replicas.line - 1].strip().startswith("replicas:")
    assert "(3 -> 2)" in replicas.message
    run = hkgen("publish", "clusters/home", "--no-verify", cwd=work)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^clusters/home/cluster\.yaml:\d+:\d+: \$\.apps\.home-assistant: warning: ", run.stdout, re.M)
    assert remote_main(remote) == head(work)
    assert fast(cluster).warnings == []  # the cluster follows the new templates now


def test_files_render_removed_are_published_as_deletions(work: Path, remote: Path, hkgen) -> None:
    # The day-2 flow: `hkgen render` first (it deletes what is no longer generated), then publish.
    cluster = work / "clusters" / "home"
    fast(cluster)
    path = cluster / "cluster.yaml"
    text = path.read_text()
    path.write_text(text.replace("  grafana:\n    enabled: true\n", "  grafana:\n    enabled: false\n", 1))
    assert path.read_text() != text
    rendered = hkgen("render", "-q", "--no-verify", str(cluster))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    gone = git(work, "diff", "--name-only", "--diff-filter=D").splitlines()
    # Grafana's files, and the restore gate's manifests of its database (the reference's only one).
    assert gone and all("/apps/grafana/" in p or p.endswith("/restore-gate/databases.yaml") for p in gone), gone
    result = fast(cluster)
    assert result.commit is not None and remote_main(remote) == result.commit
    deleted = git(work, "show", "--name-status", "--format=", result.commit).splitlines()
    assert sorted(line.split("\t")[1] for line in deleted if line.startswith("D\t")) == sorted(gone)
    # A generated file deleted by hand that render still produces is put back, not published deleted;
    # one that render never generated stays drift.
    (work / "clusters" / "home" / "notes.md").write_text("mine")
    git(work, "add", "clusters/home/notes.md")
    git(work, "commit", "-q", "-m", "notes")
    (work / "clusters" / "home" / "notes.md").unlink()
    with pytest.raises(WriteError, match=r"clusters/home/notes\.md \(deleted\)"):
        fast(cluster, dry_run=True)


def test_a_rename_staged_by_an_earlier_publish_is_a_retired_file_plus_a_new_one() -> None:
    from hkgen.ops.git import StatusEntry
    from hkgen.ops.publish import _drift

    produced = {PurePosixPath("apps/z/statefulset-house.yaml")}
    retired = {PurePosixPath("apps/z/statefulset-home.yaml")}
    renamed = StatusEntry("R", " ", "c/apps/z/statefulset-house.yaml", "c/apps/z/statefulset-home.yaml")
    assert _drift([renamed], "c", produced, retired) == []
    assert _drift([renamed], "c", produced, set()) == ["c/apps/z/statefulset-home.yaml (renamed)"]
    stray = StatusEntry("R", " ", "c/notes.md", "c/apps/z/statefulset-home.yaml")
    assert _drift([stray], "c", produced, retired) == ["c/notes.md (renamed)"]


def test_publish_without_a_git_identity_refuses_before_writing(work: Path, remote: Path) -> None:
    git(work, "config", "--unset", "user.name")
    git(work, "config", "--unset", "user.email")
    git(work, "config", "user.useConfigOnly", "true")  # never guess one from the host name
    before = status(work)
    with pytest.raises(WriteError, match=r"git does not know who commits here; set it with `git config user.name"):
        fast(work / "clusters" / "home")
    assert status(work) == before  # nothing rendered, nothing staged
    dry = fast(work / "clusters" / "home", dry_run=True)
    assert any("publish would fail: git does not know who commits here" in note for note in dry.notes)


def test_blob_ids_are_gits_own(tmp_path: Path) -> None:
    # publish compares network seeds with the remote's by blob id and reads only the changed ones.
    from hkgen.ops.git import Git

    data = b"network:\n  version: 2\n\xc3\xa4\n"
    sha1 = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True,
                          cwd=tmp_path, timeout=30).stdout.decode().strip()
    assert Git.blob_id(data, sha1) == sha1
    sha256 = subprocess.run(["git", "hash-object", "--stdin", "--object-format=sha256"], input=data,
                            capture_output=True, check=False, cwd=tmp_path, timeout=30)
    if sha256.returncode == 0:  # git 2.29 and later
        assert Git.blob_id(data, sha256.stdout.decode().strip()) == sha256.stdout.decode().strip()
