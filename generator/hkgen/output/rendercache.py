"""The render cache: a tree already on disk is not laid out and rendered again to be found current.

A no-op `hkgen render` (and `render --check` of a current tree) used to spend most of its time
building the blueprint and rendering every template, only to find the files on disk equal. The
rendered tree is a pure function of its inputs, so a render remembers, under a key of those
inputs, a digest of the tree it produced and the list of its files (path, template, format,
mode), in the CLI's cache folder (`rendered/<key>`, a small JSON file). The next render with the
same key reads the files at those paths from disk; if their digest is the one remembered, the
disk holds exactly the tree a render would produce, and that tree is used as rendered. Any
missing, extra-edited or changed file is a miss: the cluster is rendered as usual.

The key is sha256 of everything a rendered tree depends on:
- the validated cluster model (`repr` of `Cluster`: every field of the model, whose nested
  dataclasses and plain values repr completely; the blueprint and templates read nothing else
  of the cluster), plus the cluster file's and secrets file's bytes, so any edit at all misses;
- hkgen's own code (`fingerprint.code_hash`: every .py file, versions.yaml, the Python version);
- the templates/ and apps/ data folders (every file's name and bytes);
- the versions of the libraries that shape the output: jinja2, MarkupSafe, ruamel.yaml, PyYAML;
- the format of the entry itself (`_FORMAT`).
Entries are only ever written after a successful render, keep no file content (a digest only),
and at most `_KEEP` are kept; library use (no cache folder) always renders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..config.model import Cluster
from ..core.fingerprint import code_hash, dist_version, files_hash, marker, remember
from ..core.resources import data_dir
from ..render.jinja import Rendered

__all__ = ["Entry", "FileMeta", "remember_render", "render_key", "reuse", "tree_digest"]

_KIND = "rendered"
_FORMAT = "1"
_KEEP = 16  # entries kept: one per recent state of each cluster rendered with this cache folder
LIBRARIES = ("jinja2", "MarkupSafe", "ruamel.yaml", "PyYAML")
FileMeta = tuple[str, str, str, int]  # (path, template, format, mode) of one rendered file


@dataclass(frozen=True)
class Entry:
    """A tree found on disk exactly as a render would produce it."""

    tree: Rendered
    files: tuple[FileMeta, ...]


def _data_hash() -> str:
    return f"templates {files_hash(data_dir('templates'))} apps {files_hash(data_dir('apps'))}"


def render_key(cluster: Cluster, inputs: Iterable[Path] = ()) -> str | None:
    """The render-cache key of `cluster` (and of the input files `inputs`), or None without a cache."""
    if marker(_KIND, "") is None:
        return None
    libraries = " ".join(f"{name}={dist_version(name)}" for name in LIBRARIES)
    digest = hashlib.sha256(f"rendered {_FORMAT}\0{code_hash()}\0{_data_hash()}\0{libraries}\0".encode())
    digest.update(repr(cluster).encode("utf-8", "surrogatepass"))
    for path in inputs:
        try:
            data = path.read_bytes()
        except OSError:
            data = b"\0missing"
        digest.update(f"\0{path.name}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
        digest.update(data)
    return digest.hexdigest()


def tree_digest(tree: Rendered, paths: Iterable[PurePosixPath]) -> str:
    """sha256 over the paths and bytes of `tree`, in the order of `paths`."""
    digest = hashlib.sha256()
    for path in paths:
        data = tree[path]
        digest.update(f"{path}\0{len(data)}\0".encode("utf-8", "surrogatepass"))
        digest.update(data)
    return digest.hexdigest()


def remember_render(key: str | None, files: Iterable[FileMeta], tree: Rendered) -> None:
    """Record the tree a render with `key` produced (its digest and file list in blueprint order,
    not its bytes).
    """
    if not key:
        return
    listed = list(files)  # blueprint order: the verification key hashes them in that order
    entry = {"digest": tree_digest(tree, (PurePosixPath(f[0]) for f in listed)), "files": listed}
    remember(_KIND, key, json.dumps(entry, separators=(",", ":")).encode(), keep=_KEEP)


def reuse(key: str | None, root: Path) -> Entry | None:
    """The tree under `root` if it is exactly what a render with `key` produced, else None."""
    path = marker(_KIND, key) if key else None
    if path is None:
        return None
    try:
        entry = json.loads(path.read_bytes())
        files = tuple((str(p), str(t), str(f), int(m)) for p, t, f, m in entry["files"])
        digest = str(entry["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no entry, or one this hkgen cannot read: render
    tree: Rendered = {}
    try:
        for rel, *_rest in files:
            tree[PurePosixPath(rel)] = (root / rel).read_bytes()
    except OSError:
        return None  # a file is missing or unreadable: render
    if tree_digest(tree, (PurePosixPath(f[0]) for f in files)) != digest:
        return None
    return Entry(tree, files)
