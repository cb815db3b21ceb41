"""Stage 7, write: put a rendered tree on disk safely, tracked by a manifest.

- Only files listed in the previous manifest (`.hkgen-manifest.json`) are hkgen's: a re-render
  removes those no longer produced and never touches anything else.
- A generated file edited by hand (its bytes no longer match the manifest's hash) is not
  overwritten or removed without `force`; neither is a file hkgen did not create.
- Every destination must resolve inside the cluster folder; a symlink on the way is refused.
- Crash safety: changes are staged in `.hkgen-tx.tmp/`, which becomes `.hkgen-tx/` in one
  rename (the commit point). Before it, the old tree is intact; after it, every hkgen command
  first rolls the transaction forward, so a kill leaves the old tree or (once any hkgen command
  runs again) the new one, never a mix that hkgen would accept.
- A no-op render writes nothing at all.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import WriteError
from .render import Rendered

__all__ = ["MANIFEST", "Change", "Report", "check_tree", "diff_text", "plan_changes", "recover", "write_tree"]

MANIFEST = ".hkgen-manifest.json"
TX = ".hkgen-tx"
TX_TMP = ".hkgen-tx.tmp"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Change:
    """What happens to one path."""

    path: PurePosixPath
    action: str  # created | changed | removed | unchanged
    old: bytes | None
    new: bytes | None


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


def _safe_target(root: Path, rel: PurePosixPath) -> Path:
    """`root/rel`, refusing absolute paths, '..' and symlinks anywhere on the way."""
    if rel.is_absolute() or any(p in ("", ".", "..") for p in rel.parts):
        raise WriteError(f"{rel}: refusing a path outside {root}")
    target = root
    for part in rel.parts:
        target = target / part
        if target.is_symlink():
            raise WriteError(f"{root / rel}: refusing to write through the symlink {target}")
    resolved_root = root.resolve()
    if not target.resolve().is_relative_to(resolved_root):
        raise WriteError(f"{root / rel}: resolves outside {root}")
    return target


def read_manifest(root: Path) -> dict[PurePosixPath, str]:
    """Generated paths -> sha256 from the previous render (empty if none)."""
    path = root / MANIFEST
    if path.is_symlink():
        raise WriteError(f"{path}: refusing a symlinked manifest")
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
        return {PurePosixPath(k): str(v) for k, v in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise WriteError(f"{path}: unreadable manifest ({err}); restore it from Git") from err


def manifest_bytes(tree: Rendered) -> bytes:
    """The manifest for `tree`: sorted, stable, one entry per generated file."""
    files = {str(p): _sha(tree[p]) for p in sorted(tree)}
    text = json.dumps({"generator": "hkgen", "format": 1, "files": files}, indent=2, sort_keys=True)
    return (text + "\n").encode("utf-8")


def plan_changes(root: Path, tree: Rendered, *, force: bool = False, read_only: bool = False) -> Report:
    """Compare `tree` with what is on disk; refuse (unless `force`) to clobber files not ours."""
    if read_only:
        if (root / TX).exists():
            raise WriteError(f"{root / TX}: an interrupted render is pending; run `hkgen render` to finish it")
    else:
        recover(root)
    previous = read_manifest(root)
    full = dict(tree)
    full[PurePosixPath(MANIFEST)] = manifest_bytes(tree)
    report = Report()
    refused: list[str] = []
    for rel in sorted(set(full) | set(previous)):
        target = _safe_target(root, rel)
        old = target.read_bytes() if target.is_file() else None
        if target.exists() and not target.is_file():
            refused.append(f"{target}: is not a regular file")
            continue
        new = full.get(rel)
        ours = rel in previous or rel == PurePosixPath(MANIFEST)
        if new is None:  # generated before, not any more
            if old is None:
                continue
            if previous.get(rel) != _sha(old) and not force:
                refused.append(f"{target}: was edited by hand and is no longer generated; "
                               "move your edits to cluster.yaml, or pass --force to remove it")
                continue
            report.changes.append(Change(rel, "removed", old, None))
            continue
        if old == new:
            report.changes.append(Change(rel, "unchanged", old, new))
            continue
        if old is not None and not force:
            if not ours:
                refused.append(f"{target}: exists but was not generated by hkgen; "
                               "move it away, or pass --force to overwrite it")
                continue
            if rel != PurePosixPath(MANIFEST) and previous.get(rel) != _sha(old):
                refused.append(f"{target}: was edited by hand since the last render; "
                               "move your edits to cluster.yaml, or pass --force to overwrite them")
                continue
        report.changes.append(Change(rel, "created" if old is None else "changed", old, new))
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
    finally:
        os.close(fd)


def write_tree(root: Path, tree: Rendered, *, force: bool = False, modes: dict[PurePosixPath, int] | None = None) -> Report:
    """Write `tree` under `root` (see the module docstring for the guarantees)."""
    report = plan_changes(root, tree, force=force)
    if not report.dirty:
        return report
    staging = root / TX_TMP
    if staging.exists():
        shutil.rmtree(staging)
    files = staging / "files"
    files.mkdir(parents=True)
    for change in report.changes:
        if change.action in ("created", "changed"):
            assert change.new is not None
            dest = files / change.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as fh:
                fh.write(change.new)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(dest, (modes or {}).get(change.path, 0o644))
    journal = {
        "write": [str(c.path) for c in report.changes if c.action in ("created", "changed")],
        "remove": [str(c.path) for c in report.changes if c.action == "removed"],
    }
    (staging / "journal.json").write_text(json.dumps(journal, indent=1, sort_keys=True), "utf-8")
    _fsync_dir(staging)
    os.replace(staging, root / TX)  # commit point
    _fsync_dir(root)
    recover(root)
    return report


def recover(root: Path) -> None:
    """Finish a committed transaction left by an interrupted write; drop an uncommitted one."""
    staging = root / TX_TMP
    if staging.exists() and not staging.is_symlink():
        shutil.rmtree(staging)
    tx = root / TX
    if tx.is_symlink():
        raise WriteError(f"{tx}: refusing a symlinked transaction folder")
    if not tx.is_dir():
        return
    try:
        journal = json.loads((tx / "journal.json").read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise WriteError(f"{tx}: unreadable journal ({err}); delete the folder and render again") from err
    for rel in journal["write"]:
        src = tx / "files" / rel
        dest = _safe_target(root, PurePosixPath(rel))
        if src.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    for rel in journal["remove"]:
        dest = _safe_target(root, PurePosixPath(rel))
        if dest.is_file():
            dest.unlink()
        parent = dest.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    _fsync_dir(root)
    shutil.rmtree(tx)


def check_tree(root: Path, tree: Rendered) -> Report:
    """What a write would do, without writing and without refusing (for `render --check`)."""
    return plan_changes(root, tree, force=True, read_only=True)


def diff_text(report: Report, root_label: str) -> str:
    """Unified diff of every created/changed/removed text file in `report`."""
    chunks: list[str] = []
    for change in report.changes:
        if change.action == "unchanged":
            continue
        name = f"{root_label}/{change.path}"
        old = (change.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
        new = (change.new or b"").decode("utf-8", "replace").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(old, new, f"a/{name}" if change.old is not None else "/dev/null",
                                           f"b/{name}" if change.new is not None else "/dev/null"))
    return "".join(chunks)
