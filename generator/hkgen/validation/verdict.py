"""The schema verdict cache: a cluster's data that already passed the schema is not checked again.

jsonschema costs more to import (~180 ms) than the whole rest of `hkgen validate`, which
pre-commit runs on every commit, usually on an unchanged or barely changed file. Only the verdict
"no schema problems" is kept: problems are always found (and worded, and located) afresh. The key
is sha256 of the loaded data (the verdict depends on nothing else of the file: a comment or a
reformatting still hits), the composed schema, hkgen's code and jsonschema's version; each
verdict is an empty marker file in the CLI's cache folder (`verdicts/`); library use (no cache
folder) always runs jsonschema.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..core.fingerprint import code_hash, dist_version, marker, remember

__all__ = ["known_clean", "record_clean", "schema_key"]

_KIND = "verdicts"


def schema_key(data: Any, schema: dict[str, Any]) -> str | None:
    """The verdict key of `data` under `schema`, or None when no cache folder is in use."""
    if marker(_KIND, "") is None:
        return None
    digest = hashlib.sha256(f"schema-verdict\0{code_hash()}\0jsonschema {dist_version('jsonschema')}\0".encode())
    digest.update(json.dumps(schema, sort_keys=True).encode())
    digest.update(b"\0")
    # sort_keys: key order never changes a verdict; 1 and 1.0 and true stay distinct in JSON text.
    digest.update(json.dumps(data, sort_keys=True).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def known_clean(key: str | None) -> bool:
    """True when data with this key already passed the schema."""
    path = marker(_KIND, key) if key else None
    return path is not None and path.is_file()


def record_clean(key: str | None) -> None:
    """Remember that data with this key passed the schema."""
    if key:
        remember(_KIND, key)
