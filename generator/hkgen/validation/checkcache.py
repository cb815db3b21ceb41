"""The cluster-rules cache: the findings of validate's cluster-wide rules on a file they found no
error in are reused while nothing they depend on changes.

The rules (`validate._Checks`) need half of hkgen to run: the planner's survival verdict
(`analysis/`), the seeds' schedule rules, the platform's distribution facts. On the unchanged file
pre-commit validates on every commit they would find the same warnings again; reading those back
costs none of those imports. What the rules see is the loaded document, the model built from it
and the app catalogue; what they are is hkgen's code. Hence:

- Key: sha256 of hkgen's code (`code_hash`: its source, versions.yaml and the Python version),
  the digest of the app catalogue folder (`schema.apps_key`), the loaded document exactly (the
  name it is shown under, its data and every value and key position: `repr` tells 1, 1.0 and
  true apart) and the data with the schema's defaults applied (the schema file is not part of
  hkgen's code). The model is a function of these.
- Value: marshal of the findings (every field of each `Problem`, in the order the rules found
  them). Only findings without an error are kept: an error is always found afresh.
- The one rule that reads the machine rather than the file, the time zone's existence in the tz
  database, runs on every hit; should it now fail, every rule runs again (`validate` then words
  the same findings a cold run would).

Entries live in the CLI's cache folder (`checks/`); library use (no cache folder) always runs the rules.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Callable
from typing import Any

from ..config.load import Document
from ..core import fingerprint
from ..core.errors import Problem

__all__ = ["checked", "checks_key"]

_KIND = "checks"


def checks_key(doc: Document, data: Any) -> str | None:
    """The key of the rules' findings on `doc`, or None when there is no cache folder."""
    from ..config.schema import apps_key

    if fingerprint.marker(_KIND, "") is None:
        return None
    catalogue = apps_key()
    digest = hashlib.sha256(f"cluster-rules\0{fingerprint.code_hash()}\0{catalogue}\0".encode())
    digest.update(repr((doc.file, doc.data, doc.values, doc.keys, data)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def checked(doc: Document, data: Any, run: Callable[[], list[Problem]],
            machine: Callable[[], list[Problem]]) -> list[Problem]:
    """The findings of the rules on `doc` (`data`: with defaults): `run()` (all rules), unless
    cached and `machine()` (the rules that read the machine, part of `run`) still finds nothing.
    """
    key = checks_key(doc, data)
    path = fingerprint.marker(_KIND, key) if key else None
    if path is not None:
        try:
            found = [Problem(*fields) for fields in marshal.loads(path.read_bytes())]  # noqa: S302 - own cache
        except (OSError, EOFError, ValueError, TypeError):
            found = None
        if found is not None and not machine():
            return found
    problems = run()
    if key is not None and not any(p.severity == "error" for p in problems):
        fingerprint.remember(_KIND, key, marshal.dumps([
            (p.file, p.line, p.col, p.path, p.message, p.hint, p.severity) for p in problems]))
    return problems
