"""fingerprint.files_hash remembers a folder's digest by its files' names and stat times: the
same digest as hashing the bytes, and a miss for every change a file's bytes can go with."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hkgen.core import fingerprint, resources


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    folder = tmp_path / "cache"
    resources.set_cache_dir(folder)
    # The files here were all written a moment ago (a ctime cannot be set back): no racy window,
    # but for the test of the window itself.
    monkeypatch.setattr(fingerprint, "_RACY_SECONDS", 0.0)
    yield folder
    resources._CACHE.clear()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "pkg").mkdir(parents=True)
    (root / "a.py").write_text("A = 1\n")
    (root / "pkg" / "b.py").write_text("B = 2\n")
    (root / "notes.txt").write_text("not source\n")
    return root


def _plain(root: Path, suffixes: tuple[str, ...] = ()) -> str:
    """The digest from the bytes, no memo (library use)."""
    saved = list(resources._CACHE)
    resources._CACHE.clear()
    try:
        return fingerprint.files_hash(root, suffixes)
    finally:
        resources._CACHE[:] = saved


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Path) -> bytes:
        raise AssertionError(f"read {self}")

    monkeypatch.setattr(Path, "read_bytes", boom)


def test_the_memo_gives_the_digest_of_the_bytes(cache: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fingerprint.files_hash(tree, (".py",))
    assert first == _plain(tree, (".py",))
    assert len(list((cache / "hashes").iterdir())) == 1
    with monkeypatch.context() as m:
        _no_reads(m)
        assert fingerprint.files_hash(tree, (".py",)) == first  # from the memo
    assert fingerprint.files_hash(tree) != first  # other suffixes: another key


@pytest.mark.parametrize("change", ["same size, mtime restored", "added", "removed", "renamed"])
def test_every_change_misses(cache: Path, tree: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    before = fingerprint.files_hash(tree, (".py",))
    time.sleep(0.05)  # past the clock's granularity: the window the memo leaves out in real use
    target = tree / "pkg" / "b.py"
    if change == "same size, mtime restored":
        info = target.stat()
        target.write_text("B = 3\n")  # same size
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))  # mtime as before: the ctime still moves
    elif change == "added":
        (tree / "pkg" / "c.py").write_text("C = 3\n")
    elif change == "removed":
        target.unlink()
    else:
        target.rename(tree / "pkg" / "c.py")
    after = fingerprint.files_hash(tree, (".py",))
    assert after != before
    assert after == _plain(tree, (".py",))


def test_a_folder_just_written_is_not_remembered(cache: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint, "_RACY_SECONDS", 2.0)
    (tree / "a.py").write_text("A = 10\n")  # now: inside the racy window
    assert fingerprint.files_hash(tree, (".py",)) == _plain(tree, (".py",))
    assert not (cache / "hashes").exists()


def test_a_damaged_memo_is_not_believed(cache: Path, tree: Path) -> None:
    digest = fingerprint.files_hash(tree, (".py",))
    (memo,) = (cache / "hashes").iterdir()
    memo.write_text(digest[:20])  # cut short
    assert fingerprint.files_hash(tree, (".py",)) == digest
