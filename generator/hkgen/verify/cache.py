"""The verification cache: a rendered tree that was verified clean is not verified again.

Verifying (reparse, kustomize builds, schema checks) is most of a render's time, and pre-commit's
`hkgen render --check` and a no-op re-render verify the very tree they verified last time. A
clean verdict is kept, as an empty marker file in the CLI's cache folder (`verified/`), under
sha256 of everything the verdict depends on: every rendered file (path and bytes), the
blueprint (cluster model, file formats and templates), hkgen's code and schemas, the kustomize
binary (path, size, mtime) and the versions of kubernetes-validate (the Kubernetes schemas),
jsonschema, PyYAML and ruamel.yaml. Problems are never cached; library use (no cache folder)
always verifies.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import cache

from ..areas.parts import Blueprint
from ..config.model import Cluster
from ..core.fingerprint import code_hash, dist_version, files_hash, marker, remember
from ..core.resources import data_dir
from ..render.jinja import Rendered

__all__ = ["files_key", "known_verified", "record_verified", "tree_key"]

_KIND = "verified"


@cache
def _tools() -> str:
    from .kustomize import kustomize_command

    binary = kustomize_command()[0]
    info = os.stat(binary)  # noqa: PTH116 - one stat of a tool found on PATH
    libraries = " ".join(f"{name}={dist_version(name)}"
                         for name in ("kubernetes-validate", "jsonschema", "PyYAML", "ruamel.yaml"))
    return f"{binary} {info.st_size} {info.st_mtime_ns} {libraries} schemas {files_hash(data_dir('schemas'))}"


def tree_key(blueprint: Blueprint, tree: Rendered) -> str | None:
    """The verification key of `tree`, or None when no cache folder is in use."""
    return files_key(blueprint.cluster, ((str(f.path), f.template, f.format) for f in blueprint.files), tree)


def files_key(cluster: Cluster, files: Iterable[tuple[str, str, str]], tree: Rendered) -> str | None:
    """`tree_key` from the blueprint's parts: the cluster and its files' (path, template, format),
    in blueprint order (what the render cache keeps of a blueprint).
    """
    if marker(_KIND, "") is None:
        return None
    digest = hashlib.sha256(f"verified\0{code_hash()}\0{_tools()}\0".encode())
    digest.update(repr(cluster).encode("utf-8", "surrogatepass"))
    for name, template, fmt in files:
        digest.update(f"\0{name}\0{template}\0{fmt}".encode("utf-8", "surrogatepass"))
    for path in sorted(tree):
        data = tree[path]
        digest.update(f"\0{path}\0{len(data)}\0".encode("utf-8", "surrogatepass"))
        digest.update(data)
    return digest.hexdigest()


def known_verified(key: str | None) -> bool:
    """True when a tree with this key was verified clean before."""
    path = marker(_KIND, key) if key else None
    return path is not None and path.is_file()


def record_verified(key: str | None) -> None:
    """Remember that a tree with this key verified clean."""
    if key:
        remember(_KIND, key)
