"""Cache keys: what hkgen's code and the tools it trusts look like right now, as sha256 digests.

Every cache hkgen keeps (compiled templates, schema verdicts, verified trees) must miss when
anything that shaped its entry changes. `__version__` does not change between commits, so the
keys hash hkgen's own source instead, plus the versions of the libraries whose judgement the
entry records. A cache entry is only ever a shortcut: a wrong key is a stale answer, so when in
doubt these functions hash more, never less.

Hashing a folder's bytes (hkgen's 0.8 MB of source for every command) is itself remembered, as
git's index does: `hashes/<key>` holds the digest of a folder, where the key is sha256 of the
folder's path, the suffixes asked for and every file's name, size, inode, mtime and ctime
(nanoseconds). Writing a file changes its ctime (and `touch -m`/`os.utime` to restore an mtime
changes the ctime too), adding, removing or renaming one changes the listing: any of them misses
and the bytes are hashed again. A folder with a file changed in the last two seconds is not
remembered (a second write within the clock's granularity could keep every time stamp).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from functools import cache
from pathlib import Path

from .resources import cache_dir, package_dir

__all__ = ["code_hash", "dist_version", "files_hash", "marker", "remember"]


_RACY_SECONDS = 2.0


def files_hash(root: Path, suffixes: tuple[str, ...] = ()) -> str:
    """sha256 over every file under `root` (names and bytes, in sorted order); remembered in the
    cache folder by the files' names and stat times (see the module docstring).
    """
    found: list[tuple[str, str]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.extend((folder, n) for n in names if not suffixes or n.endswith(suffixes))
    found.sort()
    memo: Path | None = None
    racy = False
    if cache_dir() is not None:
        listing = hashlib.sha256(f"files\0{root}\0{suffixes}\0".encode("utf-8", "surrogateescape"))
        newest = 0
        for folder, name in found:
            info = os.stat(os.path.join(folder, name))  # noqa: PTH116, PTH118 - no Path object per file: a hot loop
            newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
            listing.update(f"{folder}/{name}\0{info.st_size} {info.st_ino} {info.st_mtime_ns} {info.st_ctime_ns}\0"
                           .encode("utf-8", "surrogateescape"))
        memo = marker("hashes", listing.hexdigest())
        racy = time.time_ns() - newest < _RACY_SECONDS * 1e9
        if memo is not None and not racy:
            try:
                known = memo.read_text("ascii")
            except (OSError, UnicodeDecodeError):
                known = ""
            if len(known) == 64:  # a sha256 in hex, as `remember` wrote it below
                return known
    digest = hashlib.sha256()
    for folder, name in found:
        path = Path(folder, name)
        digest.update(str(path.relative_to(root)).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    if memo is not None and not racy:
        remember("hashes", memo.name, digest.hexdigest().encode("ascii"))
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
