"""Proof that a manifest is the one hkgen wrote: a seal over its file list.

`.hkgen-manifest.json` decides which files a re-render may remove. A hand-added entry (or a bad
merge of two manifests) must not turn a user's file into one hkgen prunes or overwrites, so every
manifest hkgen writes carries `seal`, the sha256 of its canonical file list. A manifest whose seal
is missing or does not match its entries proves nothing: the writer then removes no file on its
word (the user restores the manifest from Git, or passes --force). Rewriting a path hkgen still
generates needs no such proof (that path is hkgen's; a hand edit is still caught by its hash).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SEAL", "proven", "seal"]

SEAL = "seal"


def seal(files: Mapping[str, str]) -> str:
    """The seal of a manifest's `files` (path -> sha256)."""
    canonical = json.dumps(dict(sorted(files.items())), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(("hkgen-manifest\n" + canonical).encode("utf-8")).hexdigest()


def proven(path: Path) -> bool:
    """Whether the manifest at `path` carries a seal that matches its entries (False if absent)."""
    try:
        data = json.loads(path.read_text("utf-8"))
        files = {str(k): str(v) for k, v in data["files"].items()}
        return isinstance(data.get(SEAL), str) and data[SEAL] == seal(files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
