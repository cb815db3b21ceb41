"""Helpers shared by the subcommand modules: output, PATH arguments and the age key to use."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import UsageError

__all__ = ["EXIT_CODES", "age_key_file", "cluster_paths", "err", "out"]

EXIT_CODES = """exit codes:
  0  success (valid, rendered, tree current)
  1  problems found: invalid cluster file, stale or refused tree, failed verification
  2  usage error: bad arguments, missing path
  3  an external tool (kustomize/kubectl, git, sops) is missing, failed or timed out
"""


def out(line: str = "") -> None:
    """A line of the command's result on stdout."""
    sys.stdout.write(line + "\n")


def err(line: str) -> None:
    """A status or error line on stderr (stdout flushed first so the two interleave correctly)."""
    sys.stdout.flush()
    sys.stderr.write(line + "\n")


def cluster_paths(values: Sequence[str]) -> list[Path]:
    """Command-line PATHs -> distinct cluster.yaml files (a file, its folder, or a file inside it)."""
    from ..pipeline import cluster_file_for

    seen: list[Path] = []
    for value in values:
        path = Path(value)
        if not path.exists():
            raise UsageError(f"{value}: no such file or folder")
        file = cluster_file_for(path)
        if file.resolve() not in [p.resolve() for p in seen]:
            seen.append(file)
    return seen


def age_key_file(option: str | Path | None, cluster_name: str) -> Path | None:
    """The age key sops should decrypt with: `--age-key`, else none when SOPS_AGE_KEY_FILE or
    SOPS_AGE_KEY is set (sops reads them itself), else hkgen's key of this cluster if it exists
    (`hkgen init` writes it to ~/.config/hkgen/<cluster>.agekey), else none (sops' own default).
    """
    from ..ops.scaffold import default_key_file

    if option:
        path = Path(option)
        if not path.is_file():
            raise UsageError(f"{option}: no such age key file")
        return path
    if os.environ.get("SOPS_AGE_KEY_FILE") or os.environ.get("SOPS_AGE_KEY"):
        return None
    default = default_key_file(cluster_name, os.environ)
    return default if default.is_file() else None
