"""Safe writes: manifest-tracked re-renders, refusals, symlinks, crash safety, determinism.

Most tests drive `write.write_tree` with small synthetic trees, so they hold whatever the real
render grows into; the CLI tests at the end use the real `hkgen render` on the reference cluster
and only rely on what every render has (the manifest), plus a crafted previous manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hkgen.core.errors import WriteError
from hkgen.output import write
from hkgen.output.provenance import seal
from hkgen.output.write import MANIFEST, check_tree, diff_text, plan_changes, recover, write_tree

P = PurePosixPath


def tree(**files: str) -> dict[PurePosixPath, bytes]:
    """tree(a="x", **{"d/e.yaml": "y"}) -> {P('a'): b'x', P('d/e.yaml'): b'y'}."""
    return {P(k): v.encode() for k, v in files.items()}


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a write could change: kind, bytes, inode, mode and timestamps of every entry."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st_ = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            out[str(path.relative_to(root))] = (st_.st_mode, st_.st_ino, st_.st_mtime_ns, st_.st_ctime_ns, data)
    st_ = root.stat()
    out["."] = (st_.st_mode, st_.st_ino, st_.st_mtime_ns, st_.st_ctime_ns, None)
    return out


def on_disk(root: Path) -> dict[PurePosixPath, bytes]:
    """Generated files as listed in the manifest, read back."""
    files = json.loads((root / MANIFEST).read_text())["files"]
    return {P(k): (root / k).read_bytes() for k in files}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "clusters" / "home"
    r.mkdir(parents=True)
    (r / "cluster.yaml").write_text("version: 1\n")
    (r / "secrets.sops.yaml").write_text("sops: {}\n")
    return r


# --- reports and the manifest -------------------------------------------------------------------


def test_first_write_creates_files_and_manifest(root: Path) -> None:
    new = tree(**{"a.yaml": "a\n", "apps/b/c.yaml": "c\n"})
    report = write_tree(root, new)
    assert report.paths("created") == [P(MANIFEST), P("a.yaml"), P("apps/b/c.yaml")]
    assert report.summary() == "3 created, 0 changed, 0 removed, 0 unchanged"
    assert on_disk(root) == new
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["files"] == {"a.yaml": sha(b"a\n"), "apps/b/c.yaml": sha(b"c\n")}
    assert not (root / write.TX).exists() and not (root / write.TX_TMP).exists()


def test_noop_rewrite_writes_nothing(root: Path) -> None:
    new = tree(**{"a.yaml": "a\n", "apps/b/c.yaml": "c\n", "nodes/cp1/user-data": "#cloud-config\n"})
    write_tree(root, new)
    before = snapshot(root)
    time.sleep(0.01)  # a rewrite would show in the nanosecond timestamps
    report = write_tree(root, dict(new))
    assert not report.dirty
    assert report.summary() == "0 created, 0 changed, 0 removed, 4 unchanged"
    assert snapshot(root) == before


def test_changes_and_removals_are_reported_and_empty_folders_pruned(root: Path) -> None:
    write_tree(root, tree(**{"keep.yaml": "k", "edit.yaml": "1", "gone/deep/x.yaml": "x", "gone/y.yaml": "y"}))
    report = write_tree(root, tree(**{"keep.yaml": "k", "edit.yaml": "2", "new/z.yaml": "z"}))
    assert report.paths("created") == [P("new/z.yaml")]
    assert report.paths("changed") == [P(MANIFEST), P("edit.yaml")]
    assert report.paths("removed") == [P("gone/deep/x.yaml"), P("gone/y.yaml")]
    assert report.paths("unchanged") == [P("keep.yaml")]
    assert not (root / "gone").exists()
    assert (root / "edit.yaml").read_bytes() == b"2"


def test_files_hkgen_did_not_generate_are_never_touched(root: Path) -> None:
    write_tree(root, tree(**{"apps/a.yaml": "a", "b.yaml": "b"}))
    (root / "NOTES.md").write_text("mine")
    (root / "apps" / "mine.yaml").write_text("mine too")
    mine = {k: v for k, v in snapshot(root).items() if k in ("NOTES.md", "cluster.yaml", "secrets.sops.yaml",
                                                             "apps/mine.yaml")}
    write_tree(root, tree(**{"b.yaml": "b2"}))  # apps/a.yaml goes; apps/ still holds the user's file
    after = snapshot(root)
    assert {k: after[k] for k in mine} == mine
    assert not (root / "apps" / "a.yaml").exists()
    assert (root / "apps").is_dir()


def test_hand_edited_file_is_not_overwritten_without_force(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "generated\n"}))
    (root / "a.yaml").write_text("my edit\n")
    before = snapshot(root)
    with pytest.raises(WriteError) as err:
        write_tree(root, tree(**{"a.yaml": "generated v2\n"}))
    assert f"{root / 'a.yaml'}: was edited by hand since the last render" in str(err.value)
    assert "--force" in str(err.value)
    assert snapshot(root) == before
    report = write_tree(root, tree(**{"a.yaml": "generated v2\n"}), force=True)
    assert report.paths("changed") == [P(MANIFEST), P("a.yaml")]
    assert [c.hand_edited for c in report.changes if c.path == P("a.yaml")] == [True]
    assert (root / "a.yaml").read_text() == "generated v2\n"


def test_hand_edited_file_that_is_no_longer_generated_is_not_removed(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "a", "old.yaml": "old"}))
    (root / "old.yaml").write_text("old, with my notes")
    with pytest.raises(WriteError, match=r"old\.yaml: was edited by hand and is no longer generated"):
        write_tree(root, tree(**{"a.yaml": "a"}))
    assert (root / "old.yaml").read_text() == "old, with my notes"
    report = write_tree(root, tree(**{"a.yaml": "a"}), force=True)
    assert report.paths("removed") == [P("old.yaml")]
    assert not (root / "old.yaml").exists()


def test_edit_that_matches_the_new_render_is_accepted(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "1"}))
    (root / "a.yaml").write_text("2")
    assert write_tree(root, tree(**{"a.yaml": "2"})).paths("unchanged") == [P("a.yaml")]


def test_existing_file_not_generated_by_hkgen_is_not_overwritten(root: Path) -> None:
    (root / "README.md").write_text("the user's own readme")
    with pytest.raises(WriteError, match=r"README\.md: exists but was not generated by hkgen"):
        write_tree(root, tree(**{"README.md": "generated readme", "a.yaml": "a"}))
    assert not (root / "a.yaml").exists() and not (root / MANIFEST).exists()
    write_tree(root, tree(**{"README.md": "generated readme", "a.yaml": "a"}), force=True)
    assert (root / "README.md").read_text() == "generated readme"


def test_identical_existing_file_is_adopted(root: Path) -> None:
    (root / "a.yaml").write_text("same")  # e.g. the manifest was lost: identical files are fine
    report = write_tree(root, tree(**{"a.yaml": "same"}))
    assert report.paths("unchanged") == [P("a.yaml")]
    assert "a.yaml" in json.loads((root / MANIFEST).read_text())["files"]


@pytest.mark.parametrize("name", ["cluster.yaml", "secrets.sops.yaml", "other.sops.yml", ".hkgen-tx/x", MANIFEST])
def test_inputs_and_bookkeeping_are_never_generated_even_with_force(root: Path, name: str) -> None:
    before = snapshot(root)
    with pytest.raises(WriteError, match="would overwrite inputs or hkgen's own files"):
        write_tree(root, {P(name): b"x"}, force=True)
    assert snapshot(root) == before


def test_manifest_listing_an_input_is_refused(root: Path) -> None:
    text = (root / "cluster.yaml").read_bytes()
    (root / MANIFEST).write_text(json.dumps({"files": {"cluster.yaml": sha(text)}}))
    with pytest.raises(WriteError, match=r"lists cluster\.yaml, which hkgen never generates"):
        write_tree(root, tree(**{"a.yaml": "a"}), force=True)
    assert (root / "cluster.yaml").read_bytes() == text


@pytest.mark.parametrize("content", ["{not json", '{"files": []}', '["x"]', ""])
def test_unreadable_manifest_is_refused(root: Path, content: str) -> None:
    (root / MANIFEST).write_text(content)
    with pytest.raises(WriteError, match=r"unreadable manifest .*restore it from Git"):
        write_tree(root, tree(**{"a.yaml": "a"}))


def test_file_can_become_a_folder_and_back(root: Path) -> None:
    write_tree(root, tree(**{"a": "file"}))
    write_tree(root, tree(**{"a/b": "inside"}))
    assert (root / "a" / "b").read_text() == "inside"
    write_tree(root, tree(**{"a": "file again"}))
    assert (root / "a").read_text() == "file again"


def test_tree_using_a_path_as_file_and_folder_is_refused(root: Path) -> None:
    with pytest.raises(WriteError, match="both as a file and as a folder"):
        write_tree(root, tree(**{"a": "x", "a/b": "y"}))


def test_user_file_in_the_way_of_a_generated_folder_is_refused(root: Path) -> None:
    (root / "apps").write_text("a file called apps")
    with pytest.raises(WriteError, match="apps: is a file, but hkgen needs a folder there"):
        write_tree(root, tree(**{"apps/a.yaml": "a"}))
    assert (root / "apps").read_text() == "a file called apps"


def test_user_folder_in_the_way_of_a_generated_file_is_refused(root: Path) -> None:
    (root / "a.yaml").mkdir()
    with pytest.raises(WriteError, match=r"a\.yaml: is in the way of a generated file"):
        write_tree(root, tree(**{"a.yaml": "a"}))


def test_file_modes_follow_the_plan(root: Path) -> None:
    write_tree(root, tree(**{"a.sh": "#!/bin/sh\n", "b.yaml": "b"}), modes={P("a.sh"): 0o755})
    assert (root / "a.sh").stat().st_mode & 0o777 == 0o755
    assert (root / "b.yaml").stat().st_mode & 0o777 == 0o644


# --- paths and symlinks ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../escape.yaml", "/etc/passwd", "a/../../x"])
def test_paths_outside_the_root_are_refused(root: Path, bad: str) -> None:
    with pytest.raises(WriteError, match="refusing a path outside"):
        write_tree(root, {P(bad): b"x"})
    assert not (root.parent / "escape.yaml").exists()


def test_symlinked_folder_pointing_out_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "apps").symlink_to(outside, target_is_directory=True)
    with pytest.raises(WriteError, match="refusing to write through the symlink"):
        write_tree(root, tree(**{"apps/a.yaml": "a"}))
    assert list(outside.iterdir()) == []


def test_symlinked_file_pointing_out_is_refused_and_its_target_untouched(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    write_tree(root, tree(**{"a.yaml": "a"}))
    (root / "a.yaml").unlink()
    (root / "a.yaml").symlink_to(victim)
    for force in (False, True):
        with pytest.raises(WriteError, match="symlink"):
            write_tree(root, tree(**{"a.yaml": "new"}), force=force)
    assert victim.read_text() == "precious"


def test_stale_file_behind_a_symlink_is_not_removed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.yaml").write_text("x")
    write_tree(root, tree(**{"d/x.yaml": "x"}))
    (root / "d" / "x.yaml").unlink()
    (root / "d").rmdir()
    (root / "d").symlink_to(outside, target_is_directory=True)
    with pytest.raises(WriteError, match="symlink"):
        write_tree(root, tree(**{"e.yaml": "e"}), force=True)
    assert (outside / "x.yaml").read_text() == "x"


def test_symlinked_manifest_and_transaction_folders_are_refused(root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.json"
    fake.write_text('{"files": {}}')
    (root / MANIFEST).symlink_to(fake)
    with pytest.raises(WriteError, match="symlinked manifest"):
        write_tree(root, tree(**{"a": "a"}))
    (root / MANIFEST).unlink()
    elsewhere = tmp_path / "tx"
    (elsewhere / "files").mkdir(parents=True)
    (root / write.TX).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(WriteError, match="symlinked transaction folder"):
        write_tree(root, tree(**{"a": "a"}))


def test_cluster_folder_reached_through_a_symlink_still_works(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    write_tree(link, tree(**{"a/b.yaml": "b"}))
    assert (root / "a" / "b.yaml").read_text() == "b"


# --- crash safety -----------------------------------------------------------------------------------

OLD = tree(**{"keep.yaml": "k", "change.yaml": "old", "gone/x.yaml": "x", "f": "file"})
NEW = tree(**{"keep.yaml": "k", "change.yaml": "new", "added/y.yaml": "y", "f/now-a-folder": "z"})


def test_kill_before_the_commit_point_leaves_the_old_tree(root: Path) -> None:
    write_tree(root, OLD)
    before = snapshot(root)
    report = plan_changes(root, NEW)
    write._stage(root, report)  # killed here: staged, not committed
    assert (root / write.TX_TMP).is_dir()
    def files() -> dict[str, tuple[object, ...]]:  # the folder's own mtime moves with the staging
        return {k: v for k, v in snapshot(root).items() if not k.startswith(write.TX_TMP) and k != "."}

    assert files() == {k: v for k, v in before.items() if k != "."}
    # A read-only check ignores the abandoned staging and sees the old tree.
    assert check_tree(root, OLD).dirty is False
    recover(root)  # what the next run does first
    assert not (root / write.TX_TMP).exists()
    assert files() == {k: v for k, v in before.items() if k != "."}
    write_tree(root, NEW)
    assert on_disk(root) == NEW


def test_kill_after_the_commit_point_is_finished_by_the_next_run(root: Path) -> None:
    write_tree(root, OLD)
    write._stage(root, plan_changes(root, NEW))
    write._commit(root)  # killed here: committed, nothing applied yet
    assert on_disk(root) == OLD
    with pytest.raises(WriteError, match="an interrupted render is pending; run `hkgen render`"):
        check_tree(root, NEW)
    report = write_tree(root, NEW)  # rolls forward first, then finds nothing left to do
    assert not report.dirty
    assert on_disk(root) == NEW
    assert not (root / "gone").exists()
    assert not (root / write.TX).exists() and not (root / write.TX_TMP).exists()


@pytest.mark.parametrize("moves_before_kill", [0, 1, 2, 3])
def test_kill_while_rolling_forward_is_finished_by_the_next_run(root: Path, moves_before_kill: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(root, OLD)
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src: object, dst: object) -> None:
        # Moves of staged files into the tree count; the commit rename itself happens first.
        if calls["n"] > moves_before_kill:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        write_tree(root, NEW)
    monkeypatch.setattr(os, "replace", real_replace)
    assert write.pending(root)
    with pytest.raises(WriteError, match="pending"):
        check_tree(root, NEW)
    recover(root)
    assert on_disk(root) == NEW
    assert not check_tree(root, NEW).dirty


def test_unreadable_journal_is_reported_not_guessed(root: Path) -> None:
    write_tree(root, OLD)
    write._stage(root, plan_changes(root, NEW))
    write._commit(root)
    (root / write.TX / "journal.json").write_text("{truncated")
    with pytest.raises(WriteError, match="unreadable journal"):
        write_tree(root, NEW)


_KILL_SCRIPT = """
import sys
from pathlib import Path, PurePosixPath
from hkgen.output.write import write_tree
root, gen = Path(sys.argv[1]), sys.argv[2]
tree = {PurePosixPath(f"d{i % 7}/f{i}.yaml"): f"{gen} {i}\\n".encode() * 40 for i in range(60)}
if gen == "new":
    tree = {p: v for p, v in tree.items() if not p.name.endswith("3.yaml")}
    tree[PurePosixPath("only-new.yaml")] = b"x"
print("ready", flush=True)
sys.stdin.readline()
write_tree(root, tree)
print("done", flush=True)
"""


def _tree_for(gen: str) -> dict[PurePosixPath, bytes]:
    t = {P(f"d{i % 7}/f{i}.yaml"): f"{gen} {i}\n".encode() * 40 for i in range(60)}
    if gen == "new":
        t = {p: v for p, v in t.items() if not p.name.endswith("3.yaml")}
        t[P("only-new.yaml")] = b"x"
    return t


def _generated_state(root: Path) -> dict[PurePosixPath, bytes]:
    out = {}
    for path in root.rglob("*"):
        rel = P(path.relative_to(root).as_posix())
        if path.is_file() and not rel.parts[0].startswith(".hkgen") and rel.name != "cluster.yaml" \
                and not rel.name.endswith(".sops.yaml"):
            out[rel] = path.read_bytes()
    return out


def test_real_sigkill_at_any_moment_leaves_old_or_new_tree(tmp_path: Path) -> None:
    """SIGKILL a real writer at spread-out moments; after recovery the tree is exactly old or new."""
    old, new = _tree_for("old"), _tree_for("new")
    # Time one undisturbed write to spread the kills over it.
    probe = tmp_path / "probe"
    probe.mkdir()
    write_tree(probe, old)
    start = time.perf_counter()
    write_tree(probe, new)
    duration = max(time.perf_counter() - start, 0.01)
    outcomes = set()
    for i in range(8):
        root = tmp_path / f"r{i}"
        root.mkdir()
        write_tree(root, old)
        with subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(root), "new"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(duration * i / 6)  # from "immediately" to "after it would have finished"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if not write.pending(root):
            state = _generated_state(root)
            assert state in (old, new), "a kill outside a committed transaction must leave old or new"
        recover(root)
        state = _generated_state(root)
        assert state in (old, new)
        outcomes.add("new" if state == new else "old")
        assert not check_tree(root, new if state == new else old).dirty
    assert outcomes  # (which moments hit which side depends on the machine's speed)


# --- locking ------------------------------------------------------------------------------------------


def test_second_writer_is_refused_while_one_is_writing(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(WriteError, match="another hkgen command is writing this cluster"):
            write_tree(root, tree(**{"a": "a"}))
        with pytest.raises(WriteError, match="another hkgen command"):
            check_tree(root, tree(**{"a": "a"}))
    finally:
        os.close(fd)
    write_tree(root, tree(**{"a": "a"}))


# --- diff ---------------------------------------------------------------------------------------------


def test_diff_shows_changes_but_not_manifest_hashes(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "one\ntwo\n", "gone.yaml": "bye"}))
    report = write_tree(root, tree(**{"a.yaml": "one\nthree\n", "b.yaml": "new\n"}))
    text = diff_text(report, "clusters/home")
    assert "--- a/clusters/home/a.yaml\n+++ b/clusters/home/a.yaml\n" in text
    assert "-two\n+three\n" in text
    assert "--- /dev/null\n+++ b/clusters/home/b.yaml\n" in text
    assert "--- a/clusters/home/gone.yaml\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n\\ No newline at end of file\n" in text
    assert MANIFEST not in text


# --- any sequence of renders --------------------------------------------------------------------------

_names = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda parts: P(*parts))
_trees = st.dictionaries(_paths, st.sampled_from([b"x", b"y", b"x\n"]), max_size=6).filter(
    lambda t: not ({q for p in t for q in p.parents} & set(t)))


@settings(max_examples=60)
@given(st.lists(_trees, min_size=1, max_size=5), st.booleans())
def test_any_sequence_of_renders_keeps_disk_equal_to_the_last_one(trees: list[dict[PurePosixPath, bytes]],
                                                                  user_file_in_a: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cluster.yaml").write_text("mine")
        (root / "user").mkdir()
        (root / "user" / "notes").write_text("mine")
        user_files = {P("cluster.yaml"), P("user/notes")}
        for t in trees:
            if user_file_in_a and (root / "a").is_dir() and not (root / "a" / "mine").exists():
                (root / "a" / "mine").write_text("mine")
                user_files.add(P("a/mine"))
            before = snapshot(root)
            try:
                write_tree(root, t)
            except WriteError:
                assert snapshot(root) == before  # a refusal changes nothing
                continue
            assert on_disk(root) == t
            assert _generated_state(root) == {**t, **{u: b"mine" for u in user_files if u.name != "cluster.yaml"}}
            assert (root / "cluster.yaml").read_text() == "mine"
            for dirpath, dirnames, filenames in os.walk(root):
                assert dirnames or filenames, f"empty folder left behind: {dirpath}"
            assert not write_tree(root, t).dirty


# --- the real render (CLI) ------------------------------------------------------------------------------


def _render(hkgen, folder: Path, *args: str, env: dict[str, str] | None = None, verify: bool = False):
    """`hkgen render clusters/<name> ARGS` run from the folder holding clusters/, as a user would.

    Verification (kustomize builds, schemas) takes seconds and writes nothing to the tree, so the
    write-behaviour tests skip it; the no-op test below runs the full pipeline.
    """
    extra = () if verify else ("--no-verify",)
    return hkgen("render", "clusters/" + folder.name, *args, *extra, cwd=folder.parent.parent, env=env)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_is_deterministic_across_runs_paths_and_hash_seeds(hkgen, tmp_path: Path, home_copy: Path) -> None:
    other = tmp_path / "elsewhere" / "deeper" / "clusters" / "home"
    other.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(home_copy, other)
    first = _render(hkgen, home_copy, "-q", env={"PYTHONHASHSEED": "1"})
    second = _render(hkgen, other, "-q", env={"PYTHONHASHSEED": "2"})
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert _files(home_copy) == _files(other)
    assert MANIFEST in _files(home_copy)


def test_rerender_of_the_reference_cluster_is_a_noop(hkgen, home_copy: Path) -> None:
    first = _render(hkgen, home_copy, verify=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"created clusters/home/{MANIFEST}" in first.stdout
    before = snapshot(home_copy)
    time.sleep(0.01)
    second = _render(hkgen, home_copy, verify=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "clusters/home: 0 created, 0 changed, 0 removed," in second.stderr
    assert not any(line.lstrip().startswith(("created", "changed", "removed")) for line in second.stdout.splitlines())
    assert snapshot(home_copy) == before


def _add_stale_file(cluster: Path, rel: str, content: bytes) -> None:
    """Make it look as if an earlier render (or hkgen version) had generated `rel`."""
    manifest = json.loads((cluster / MANIFEST).read_text())
    manifest["files"][rel] = sha(content)
    manifest["seal"] = seal(manifest["files"])  # as hkgen itself writes it
    (cluster / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (cluster / rel).parent.mkdir(parents=True, exist_ok=True)
    (cluster / rel).write_bytes(content)


def test_render_removes_stale_generated_files_and_keeps_the_users(hkgen, home_copy: Path) -> None:
    assert _render(hkgen, home_copy).returncode == 0
    _add_stale_file(home_copy, "apps/retired-app/release.yaml", b"kind: HelmRelease\n")
    (home_copy / "NOTES.md").write_text("my notes")
    check = _render(hkgen, home_copy, "--check")
    assert check.returncode == 1
    assert "clusters/home/apps/retired-app/release.yaml: stale" in check.stdout
    run = _render(hkgen, home_copy, "--diff")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "removed clusters/home/apps/retired-app/release.yaml" in run.stdout
    assert ("--- a/clusters/home/apps/retired-app/release.yaml\n+++ /dev/null\n@@ -1 +0,0 @@\n"
            "-kind: HelmRelease\n") in run.stdout
    assert "1 removed" in run.stderr
    assert not (home_copy / "apps" / "retired-app").exists()
    assert (home_copy / "NOTES.md").read_text() == "my notes"
    assert not check_tree(home_copy, {P(k): (home_copy / k).read_bytes() for k in
                                      json.loads((home_copy / MANIFEST).read_text())["files"]}).dirty


def test_render_refuses_to_remove_a_hand_edited_stale_file_without_force(hkgen, home_copy: Path) -> None:
    assert _render(hkgen, home_copy).returncode == 0
    _add_stale_file(home_copy, "old.yaml", b"generated\n")
    (home_copy / "old.yaml").write_text("generated\nplus my edit\n")
    before = snapshot(home_copy)
    run = _render(hkgen, home_copy)
    assert run.returncode == 1
    assert "old.yaml: was edited by hand and is no longer generated" in run.stderr
    assert "--force" in run.stderr and "Traceback" not in run.stderr
    assert snapshot(home_copy) == before
    forced = _render(hkgen, home_copy, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (home_copy / "old.yaml").exists()


def test_render_check_writes_nothing_and_reports_current_or_not(hkgen, home_copy: Path) -> None:
    before = snapshot(home_copy)
    missing = _render(hkgen, home_copy, "--check")
    assert missing.returncode == 1
    assert f"clusters/home/{MANIFEST}: missing" in missing.stdout
    assert snapshot(home_copy) == before
    assert _render(hkgen, home_copy, "-q").returncode == 0
    before = snapshot(home_copy)
    current = _render(hkgen, home_copy, "--check")
    assert current.returncode == 0, current.stdout + current.stderr
    assert "rendered tree is current" in current.stderr
    # Hand-edit a generated file (the largest one the render produced).
    listed = json.loads((home_copy / MANIFEST).read_text())["files"]
    victim = max(listed, key=lambda k: (home_copy / k).stat().st_size) if listed else MANIFEST
    if victim == MANIFEST:  # nothing else rendered yet: edit the manifest, keeping it readable
        (home_copy / victim).write_text(json.dumps(json.loads((home_copy / victim).read_text()), indent=4))
    else:
        with (home_copy / victim).open("a") as fh:
            fh.write("# edited by hand\n")
    stale = _render(hkgen, home_copy, "--check")
    assert stale.returncode == 1
    assert f"clusters/home/{victim}: differs" in stale.stdout
    assert snapshot(home_copy)[victim][4] != before[victim][4]
    assert {k: v for k, v in snapshot(home_copy).items() if k not in (victim, ".")} == \
        {k: v for k, v in before.items() if k not in (victim, ".")}


def test_render_check_refuses_to_judge_an_interrupted_render(hkgen, home_copy: Path) -> None:
    assert _render(hkgen, home_copy, "-q").returncode == 0
    write._stage(home_copy, plan_changes(home_copy, {P("extra.yaml"): b"x\n"}))
    write._commit(home_copy)
    check = _render(hkgen, home_copy, "--check")
    assert check.returncode == 1
    assert "an interrupted render is pending" in check.stderr
    finish = _render(hkgen, home_copy)  # finishes the old transaction, then renders the real tree
    assert finish.returncode == 0, finish.stderr
    assert not (home_copy / "extra.yaml").exists()
    assert not write.pending(home_copy)


# --- the manifest proves what hkgen wrote --------------------------------------------------------


def _forge(root: Path, rel: str) -> None:
    """Hand-add a manifest entry for `rel` (with the right hash, as a careful forger would)."""
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["files"][rel] = sha((root / rel).read_bytes())
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_a_hand_added_manifest_entry_does_not_make_a_users_file_prunable(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "a"}))
    (root / "notes").mkdir()
    (root / "notes" / "mine.md").write_text("the user's own notes")
    _forge(root, "notes/mine.md")
    with pytest.raises(WriteError, match=r"mine\.md: is listed in .*no seal matching its entries"):
        write_tree(root, tree(**{"a.yaml": "a2"}))
    assert (root / "notes" / "mine.md").read_text() == "the user's own notes"


def test_a_sealed_manifest_still_prunes_what_hkgen_wrote(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "a", "old.yaml": "o"}))
    report = write_tree(root, tree(**{"a.yaml": "a"}))
    assert report.paths("removed") == [P("old.yaml")] and not (root / "old.yaml").exists()
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["seal"] == seal(manifest["files"])


def test_a_manifest_without_a_seal_proves_nothing(root: Path) -> None:
    write_tree(root, tree(**{"a.yaml": "a", "old.yaml": "o"}))
    manifest = json.loads((root / MANIFEST).read_text())
    del manifest["seal"]  # e.g. a badly merged manifest, or one rewritten by hand
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(WriteError, match=r"old\.yaml: is listed in"):
        write_tree(root, tree(**{"a.yaml": "a"}))
    assert (root / "old.yaml").exists()
    write_tree(root, tree(**{"a.yaml": "a"}), force=True)
    assert not (root / "old.yaml").exists()
