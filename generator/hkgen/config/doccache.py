"""The loaded-document cache: a file that already loaded (and validated) cleanly is not parsed again.

`hkgen validate`, which pre-commit runs on every commit, mostly sees files it has seen before.
Parsing them needs PyYAML (importing it is a tenth of validate) and the event walk of `load.py`;
reading the same data and positions back from a marshal file needs neither. Only what a load
produced is kept, never a problem: problems are always found (and worded, and located) afresh.

- Key: sha256 of the file's bytes, hkgen's code (`code_hash`: its source, versions.yaml and the
  Python version) and the versions of the two YAML readers `load.py` uses (PyYAML with libyaml,
  ruamel.yaml). The name the file is shown under is not part of the key: it is not part of what
  a load produces (`Document.file` comes from the caller).
- Value: marshal of (data, value positions, key positions).
- hkgen's own data (versions.yaml, the composed cluster schema) goes through `own_data`: the
  same key over the bytes it is made from, the data alone as value, written at once (it holds
  nothing private).
- Written only on request (`keep`), for documents `load_file` read in this process: the pipeline
  asks once a cluster validated without errors, so nothing that failed a check (a pasted private
  key, a secrets file not encrypted) is ever copied to the cache folder; decrypted secrets go
  through `load_text`, never through here. Entries live in the CLI's cache folder (`documents/`);
  library use (no cache folder) neither reads nor writes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
from collections.abc import Callable
from typing import Any

from ..core import fingerprint

__all__ = ["document_key", "forget", "keep", "lookup", "own_data", "read"]

_KIND = "documents"
Loaded = tuple[Any, dict[Any, tuple[int, int]], dict[Any, tuple[int, int]]]  # data, value and key positions
# What load_file read in this process (marshalled as it was loaded, before any later step could
# touch the data), by key, until the pipeline keeps or drops it.
_READ: dict[str, bytes] = {}


def document_key(raw: bytes) -> str | None:
    """The cache key of a file's bytes, or None when no cache folder is in use."""
    if fingerprint.marker(_KIND, "") is None:
        return None
    digest = hashlib.sha256(f"document\0{fingerprint.code_hash()}\0PyYAML {fingerprint.dist_version('PyYAML')}\0"
                            f"ruamel.yaml {fingerprint.dist_version('ruamel.yaml')}\0".encode())
    digest.update(raw)
    return digest.hexdigest()


def lookup(key: str | None) -> Loaded | None:
    """What a load of the file cached under `key` produced; None on a miss (or an unreadable entry)."""
    path = fingerprint.marker(_KIND, key) if key else None
    if path is None:
        return None
    try:
        data, values, keys = marshal.loads(path.read_bytes())  # noqa: S302 - hkgen's own cache folder
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return data, values, keys


def read(key: str | None, loaded: Loaded) -> None:
    """Note that `load_file` loaded `loaded` from a file with key `key` (the pipeline may `keep` it)."""
    if key is not None:
        # Plain data only (the loader makes nothing else); anything marshal refuses is not cached.
        with contextlib.suppress(ValueError):
            _READ[key] = marshal.dumps(loaded)


def keep() -> None:
    """Cache every document read since the last call (the cluster they belong to is clean)."""
    for key, loaded in _READ.items():
        fingerprint.remember(_KIND, key, loaded)
    _READ.clear()


def forget() -> None:
    """Drop the documents read so far without caching them (their cluster has problems)."""
    _READ.clear()


def own_data(raw: bytes, load: Callable[[], Any]) -> Any:
    """The data of one of hkgen's own files with these bytes: cached, else `load()` (and cached)."""
    key = document_key(raw)
    path = fingerprint.marker(_KIND, f"own-{key}") if key else None
    if path is not None:
        try:
            return marshal.loads(path.read_bytes())  # noqa: S302 - hkgen's own cache folder
        except (OSError, EOFError, ValueError, TypeError):
            pass
    data = load()
    if path is not None:
        fingerprint.remember(_KIND, path.name, marshal.dumps(data))
    return data
