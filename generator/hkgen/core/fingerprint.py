"""Cache keys: what hkgen's code and the tools it trusts look like right now, as sha256 digests.

Every cache hkgen keeps (compiled templates, schema verdicts, verified trees) must miss when
anything that shaped its entry changes. `__version__` does not change between commits, so the
keys hash hkgen's own source instead, plus the versions of the libraries whose judgement the
entry records. A cache entry is only ever a shortcut: a wrong key is a stale answer, so when in
doubt these functions hash more, never less.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from functools import cache
from pathlib import Path

from .resources import cache_dir, package_dir

__all__ = ["code_hash", "dist_version", "files_hash", "marker", "remember"]


def files_hash(root: Path, suffixes: tuple[str, ...] = ()) -> str:
    """sha256 over every file under `root` (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    found: list[tuple[str, str]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.extend((folder, n) for n in names if not suffixes or n.endswith(suffixes))
    for folder, name in sorted(found):
        path = Path(folder, name)
        digest.update(str(path.relative_to(root)).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@cache
def code_hash() -> str:
    """sha256 of hkgen's Python source and versions.yaml (about 0.6 MB: a few ms)."""
    digest = hashlib.sha256(files_hash(package_dir(), (".py",)).encode())
    digest.update((package_dir() / "versions.yaml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


@cache
def dist_version(name: str) -> str:
    """The installed version of distribution `name`, read from its dist-info folder's name.

    importlib.metadata would cost more than a cache hit saves. "" when it is not installed.
    """
    wanted = _normalised(name)
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")  # noqa: PTH208 - names only, for one prefix test
        except OSError:
            continue
        for item in listing:
            if item.endswith(".dist-info"):
                # `ruamel.yaml` installs as ruamel_yaml-0.19.1.dist-info: compare normalised names.
                project, _, version = item[: -len(".dist-info")].partition("-")
                if _normalised(project) == wanted:
                    return version
    return ""


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def marker(kind: str, key: str) -> Path | None:
    """The file whose existence records a cached verdict `key` of `kind`, or None without a cache."""
    base = cache_dir()
    if base is None:
        return None
    return base / kind / key


_KEEP = 256  # markers kept per kind: every edit of cluster.yaml adds one


def remember(kind: str, key: str, content: bytes = b"", keep: int = _KEEP) -> None:
    """Record verdict `key` (atomically; a read-only cache folder is no error); keep the newest `keep`."""
    path = marker(kind, key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(content)
        tmp.replace(path)
        entries = list(path.parent.iterdir())
        if len(entries) > keep:
            entries.sort(key=lambda p: p.stat().st_mtime)
            for old in entries[: len(entries) - keep]:
                old.unlink(missing_ok=True)
    except OSError:
        pass
