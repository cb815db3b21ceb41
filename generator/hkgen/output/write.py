"""Stage 7, write: put a rendered tree on disk safely, tracked by a manifest.

- Only files listed in the previous manifest (`.hkgen-manifest.json`, path -> sha256) are
  hkgen's: a re-render removes those no longer produced and never touches anything else.
- A generated file edited by hand (its bytes no longer match the manifest's hash) is not
  overwritten or removed without `force`; neither is a file hkgen did not create. The cluster's
  inputs (`cluster.yaml`, `*.sops.yaml`) are never written or removed, even with `force`.
- Every destination must resolve inside the cluster folder; a symlink on the way is refused.
- Crash safety: changes are staged in `.hkgen-tx.tmp/`, which becomes `.hkgen-tx/` in one
  rename (the commit point). Before it, the old tree is intact and the next run discards the
  staging; after it, the next write rolls the transaction forward (then renames it back to
  `.hkgen-tx.tmp/` and deletes it) and every read-only check refuses to judge the tree until
  then. So a kill leaves the old tree or (once any hkgen write runs again) the new one, never a
  mix that hkgen would accept.
- One writer at a time: the cluster folder is flock'ed (exclusive to write, shared to check).
- A no-op render writes nothing at all: no file, directory or timestamp changes.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.errors import WriteError
from ..render.jinja import Rendered
from .provenance import SEAL, proven, seal

__all__ = [
    "MANIFEST",
    "Change",
    "Report",
    "check_tree",
    "diff_text",
    "is_input",
    "manifest_bytes",
    "pending",
    "plan_changes",
    "read_manifest",
    "recover",
    "write_tree",
]

MANIFEST = ".hkgen-manifest.json"
TX = ".hkgen-tx"
TX_TMP = ".hkgen-tx.tmp"
_MANIFEST_PATH = PurePosixPath(MANIFEST)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Change:
    """What happens to one path."""

    path: PurePosixPath
    action: str  # created | changed | removed | unchanged
    old: bytes | None
    new: bytes | None
    # The bytes on disk are not what hkgen wrote last time (only meaningful for generated files).
    hand_edited: bool = False


@dataclass
class Report:
    """Outcome of comparing (and possibly writing) a rendered tree."""

    changes: list[Change] = field(default_factory=list)

    def paths(self, action: str) -> list[PurePosixPath]:
        """Paths with the given action, sorted."""
        return sorted(c.path for c in self.changes if c.action == action)

    @property
    def dirty(self) -> bool:
        """True when anything would be created, changed or removed."""
        return any(c.action != "unchanged" for c in self.changes)

    def summary(self) -> str:
        """`N created, N changed, N removed, N unchanged`."""
        counts = {a: len(self.paths(a)) for a in ("created", "changed", "removed", "unchanged")}
        return ", ".join(f"{n} {a}" for a, n in counts.items())


def is_input(rel: PurePosixPath) -> bool:
    """True for the cluster's own inputs and hkgen's bookkeeping, which no rendered file may be.

    `cluster.yaml` and the SOPS files at the top of the cluster folder are what the user edits;
    `.hkgen-*` names belong to this module (the manifest is written here, not by templates).
    """
    top = rel.parts[0] if rel.parts else ""
    if top.startswith(".hkgen-"):
        return True
    return len(rel.parts) == 1 and (top == "cluster.yaml" or top.endswith((".sops.yaml", ".sops.yml")))


def _safe_target(root: Path, rel: PurePosixPath, checked: set[PurePosixPath] | None = None) -> Path:
    """`root/rel`, refusing absolute paths, '..' and symlinks anywhere on the way.

    `checked` holds folders (relative to root) already found free of symlinks during this
    write, so a tree of 4,000 files does not lstat the same folders 16,000 times.
    """
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") or "\x00" in p for p in rel.parts):
        raise WriteError(f"{rel}: refusing a path outside {root}")
    # With no '..' and no symlink on the way, root/rel cannot resolve outside root.
    for folder in reversed(rel.parents[:-1]):
        if checked is not None and folder in checked:
            continue
        _refuse_symlink(root, rel, root / folder)
        if checked is not None:
            checked.add(folder)
    target = root / rel
    _refuse_symlink(root, rel, target)
    return target


def _refuse_symlink(root: Path, rel: PurePosixPath, spot: Path) -> None:
    if spot.is_symlink():
        raise WriteError(f"{root / rel}: refusing to write through the symlink {spot} "
                         f"(-> {spot.readlink()}); hkgen writes only real files inside {root}")


def read_manifest(root: Path) -> dict[PurePosixPath, str]:
    """Generated paths -> sha256 from the previous render (empty if none)."""
    path = root / MANIFEST
    if path.is_symlink():
        raise WriteError(f"{path}: refusing a symlinked manifest")
    if not path.exists():
        return {}
    try:
        text = path.read_text("utf-8")
    except (OSError, ValueError) as err:
        raise WriteError(f"{path}: unreadable manifest ({err}); restore it from Git") from err
    return parse_manifest(text, str(path))


def parse_manifest(text: str, where: str) -> dict[PurePosixPath, str]:
    """The generated paths -> sha256 of a manifest's text (`where` names it in errors)."""
    try:
        data = json.loads(text)
        files = {PurePosixPath(k): str(v) for k, v in data["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WriteError(f"{where}: unreadable manifest ({err}); restore it from Git") from err
    for rel in files:
        if is_input(rel) or rel.is_absolute() or ".." in rel.parts:
            raise WriteError(f"{where}: lists {rel}, which hkgen never generates; restore the manifest from Git")
    return files


def manifest_bytes(tree: Rendered) -> bytes:
    """The manifest for `tree`: sorted, stable, one entry per generated file."""
    files = {str(p): _sha(tree[p]) for p in sorted(tree)}
    text = json.dumps({"generator": "hkgen", "format": 1, "files": files, SEAL: seal(files)}, indent=2, sort_keys=True)
    return (text + "\n").encode("utf-8")


def _check_tree_paths(root: Path, tree: Rendered) -> None:
    """A rendered tree never holds inputs, bookkeeping, or a path that is both file and folder."""
    bad = [str(p) for p in tree if not p.parts or is_input(p)]
    if bad:
        raise WriteError(f"{root}: the rendered tree would overwrite inputs or hkgen's own files: "
                         f"{', '.join(sorted(bad))}")
    folders = {parent for p in tree for parent in p.parents}
    clash = sorted(str(p) for p in tree if p in folders)
    if clash:
        raise WriteError(f"{root}: the rendered tree uses {', '.join(clash)} both as a file and as a folder")


def _emptied_by(root: Path, folder: Path, removing: set[PurePosixPath]) -> bool:
    """True when `folder` holds only generated files this write removes (so a file may replace it)."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    # Removing files prunes only the folders above them: any other folder would stay in the way.
    pruned = {parent for rel in removing for parent in rel.parents}
    if PurePosixPath(folder.relative_to(root).as_posix()) not in pruned:
        return False
    for path in folder.rglob("*"):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_symlink() or rel not in (pruned if path.is_dir() else removing):
            return False
    return True


def pending(root: Path) -> bool:
    """True when a committed write was interrupted and not yet rolled forward."""
    return (root / TX).exists() or (root / TX).is_symlink()


def plan_changes(root: Path, tree: Rendered, *, force: bool = False, read_only: bool = False) -> Report:
    """Compare `tree` with what is on disk; refuse (unless `force`) to clobber files not ours.

    With `read_only`, an interrupted write is an error (the tree on disk is a mix); otherwise it
    is rolled forward first.
    """
    if read_only:
        if pending(root):
            raise WriteError(f"{root / TX}: an interrupted render is pending; run `hkgen render` to finish it")
    else:
        recover(root)
    _check_tree_paths(root, tree)
    previous = read_manifest(root)
    # Only a sealed manifest proves which files hkgen wrote (see provenance.py).
    trusted = proven(root / MANIFEST)
    full = dict(tree)
    full[_MANIFEST_PATH] = manifest_bytes(tree)
    removing = {rel for rel in previous if rel not in full}
    report = Report()
    refused: list[str] = []
    checked: set[PurePosixPath] = set()
    for rel in sorted(set(full) | set(previous)):
        target = _safe_target(root, rel, checked)
        new = full.get(rel)
        if target.exists() and not target.is_file():
            if new is not None and not _emptied_by(root, target, removing):
                refused.append(f"{target}: is in the way of a generated file (not a regular file)")
                continue
            if new is None:
                continue  # a stale path someone replaced with a folder is theirs now: leave it
        old = target.read_bytes() if target.is_file() else None
        ours = rel in previous or rel == _MANIFEST_PATH
        edited = old is not None and rel in previous and previous[rel] != _sha(old)
        if new is None:  # generated before, not any more
            if old is None:
                continue
            if edited and not force:
                refused.append(f"{target}: was edited by hand and is no longer generated; "
                               "move your edits to cluster.yaml, or pass --force to remove it")
                continue
            if not trusted and not force:
                # Only removals need the proof: a path hkgen still generates is hkgen's to rewrite.
                refused.append(f"{target}: is listed in {MANIFEST}, but that manifest has no seal matching its "
                               "entries (edited by hand, merged badly, or written by an hkgen older than the "
                               "seal), so nothing proves hkgen wrote this file; restore the manifest from Git, "
                               "delete the file yourself if it is not yours, or pass --force to remove it")
                continue
            report.changes.append(Change(rel, "removed", old, None, edited))
            continue
        if old is None:
            # Every folder on the way must be a folder already, or not exist, or be a file this
            # very write removes: never a user's file in the way of a generated folder.
            for parent in reversed(rel.parents[:-1]):
                spot = root / parent
                if spot.exists() and not spot.is_dir() and parent not in removing:
                    refused.append(f"{spot}: is a file, but hkgen needs a folder there for {rel}")
                    break
            else:
                report.changes.append(Change(rel, "created", None, new))
            continue
        if old == new:
            # `new` for both: the bytes read from disk are freed (a 1,000-node tree is 58 MB).
            report.changes.append(Change(rel, "unchanged", new, new))
            continue
        if not force:
            if not ours:
                refused.append(f"{target}: exists but was not generated by hkgen; "
                               "move it away, or pass --force to overwrite it")
                continue
            if edited and rel != _MANIFEST_PATH:
                refused.append(f"{target}: was edited by hand since the last render; "
                               "move your edits to cluster.yaml, or pass --force to overwrite them")
                continue
        report.changes.append(Change(rel, "changed", old, new, edited))
    if refused:
        raise WriteError("refusing to write:\n  " + "\n  ".join(refused))
    return report


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
    path.chmod(mode)


def _create_files(jobs: list[tuple[Path, bytes, int]]) -> None:
    """Create many new files; in a few threads when there are many.

    Creating a file costs a fraction of a millisecond of kernel time on some machines, which
    for the 4,000 files of a 1,000-node tree is seconds; the threads overlap those system calls
    (they release the GIL), on separate folders mostly.
    """
    workers = min(4, os.cpu_count() or 1) if len(jobs) >= 256 else 1
    if workers == 1:
        for path, data, mode in jobs:
            _write_durable(path, data, mode, sync=False)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hkgen-write") as pool:
        # list(): re-raises the first OSError here, after every job has finished or failed.
        list(pool.map(lambda job: _write_durable(job[0], job[1], job[2], sync=False), jobs))


@contextlib.contextmanager
def _locked(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a lock on the cluster folder itself (no lock file to clean up or commit)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; hkgen still never writes a mix
        yield
        return
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError as err:
        raise WriteError(f"{root}: cannot open the cluster folder ({err.strerror})") from err
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WriteError(f"{root}: another hkgen command is writing this cluster; "
                             "wait for it to finish and run again") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _journal(report: Report) -> dict[str, list[str]]:
    writes = [str(c.path) for c in report.changes if c.action in ("created", "changed")]
    # The manifest goes last: until it is in place, the previous one still describes the files.
    writes.sort(key=lambda p: (p == MANIFEST, p))
    return {"remove": [str(c.path) for c in report.changes if c.action == "removed"], "write": writes}


def _stage(root: Path, report: Report, modes: dict[PurePosixPath, int] | None = None) -> Path:
    """Write every new file and the journal into `.hkgen-tx.tmp/`, durably; the tree is untouched."""
    staging = root / TX_TMP
    if staging.is_symlink():
        raise WriteError(f"{staging}: refusing a symlinked staging folder")
    if staging.exists():
        shutil.rmtree(staging)
    files = staging / "files"
    try:
        files.mkdir(parents=True)
        made: set[PurePosixPath] = set()
        jobs: list[tuple[Path, bytes, int]] = []
        for change in report.changes:
            if change.action in ("created", "changed") and change.new is not None:
                folder = change.path.parent
                if folder not in made:
                    (files / folder).mkdir(parents=True, exist_ok=True)
                    made.update(folder.parents)
                    made.add(folder)
                jobs.append((files / change.path, change.new, (modes or {}).get(change.path, 0o644)))
        _create_files(jobs)
        _write_durable(staging / "journal.json",
                       json.dumps(_journal(report), indent=1, sort_keys=True).encode("utf-8"), 0o644, sync=False)
        # One flush of every staged file and folder before the commit point instead of an fsync
        # per file and folder: a 1,000-node tree has 4,000 files in 1,000 folders. sync(2) waits
        # for data and metadata of every file system on Linux.
        os.sync()
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(f"{root}: could not stage the new tree ({err}); nothing was changed") from err
    return staging


def _commit(root: Path) -> None:
    """The commit point: one rename makes the staged transaction the one to finish."""
    try:
        (root / TX_TMP).replace(root / TX)
    except OSError as err:
        raise WriteError(f"{root}: could not commit the new tree ({err}); nothing was changed") from err
    _fsync_dir(root)


def write_tree(root: Path, tree: Rendered, *, force: bool = False,
               modes: dict[PurePosixPath, int] | None = None) -> Report:
    """Write `tree` under `root` (see the module docstring for the guarantees)."""
    with _locked(root, exclusive=True):
        report = plan_changes(root, tree, force=force)
        if not report.dirty:
            return report
        _stage(root, report, modes)
        _commit(root)
        recover(root)
    return report


def _read_journal(tx: Path) -> tuple[list[PurePosixPath], list[PurePosixPath]]:
    try:
        journal = json.loads((tx / "journal.json").read_text("utf-8"))
        removes = [PurePosixPath(p) for p in journal["remove"] if isinstance(p, str)]
        writes = [PurePosixPath(p) for p in journal["write"] if isinstance(p, str)]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WriteError(f"{tx}: unreadable journal ({err}); delete the folder, check the tree with "
                         "`git status`, and render again") from err
    return removes, writes


def recover(root: Path) -> None:
    """Finish a committed transaction left by an interrupted write; drop an uncommitted one.

    Idempotent: a kill during recovery is finished by the next call.
    """
    staging = root / TX_TMP
    if staging.is_symlink():
        staging.unlink()
    elif staging.exists():
        shutil.rmtree(staging)
    tx = root / TX
    if tx.is_symlink():
        raise WriteError(f"{tx}: refusing a symlinked transaction folder")
    if not tx.is_dir():
        return
    removes, writes = _read_journal(tx)
    try:
        # Removals first: a file may give way to a folder of the same name, or the reverse.
        for rel in removes:
            dest = _safe_target(root, rel)
            if dest.is_file():
                dest.unlink()
            parent = dest.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        checked: set[PurePosixPath] = set()
        made: set[PurePosixPath] = set()
        for rel in writes:
            src = tx / "files" / rel
            dest = _safe_target(root, rel, checked)
            if src.is_file():
                if rel.parent not in made:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    made.add(rel.parent)
                src.replace(dest)
    except OSError as err:
        raise WriteError(f"{root}: could not finish an interrupted render ({err}); fix the cause and run "
                         "`hkgen render` again, which resumes it") from err
    os.sync()  # the moves (in up to 1,000 folders) are durable before the journal goes
    # Retire the journal in one rename before deleting it: a kill while deleting must not leave
    # a transaction folder without its journal. A leftover staging folder is always discarded.
    tx.replace(staging)
    _fsync_dir(root)
    shutil.rmtree(staging)


def check_tree(root: Path, tree: Rendered) -> Report:
    """What a write would do, without writing and without refusing (for `render --check`)."""
    with _locked(root, exclusive=False):
        return plan_changes(root, tree, force=True, read_only=True)


def diff_text(report: Report, root_label: str) -> str:
    """Unified diff of every created/changed/removed text file in `report`."""
    chunks: list[str] = []
    for change in report.changes:
        if change.action == "unchanged" or change.path == _MANIFEST_PATH:  # hashes: nothing to review
            continue
        name = f"{root_label}/{change.path}"
        old = (change.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
        new = (change.new or b"").decode("utf-8", "replace").splitlines(keepends=True)
        for line in difflib.unified_diff(old, new, f"a/{name}" if change.old is not None else "/dev/null",
                                         f"b/{name}" if change.new is not None else "/dev/null"):
            chunks.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(chunks)
