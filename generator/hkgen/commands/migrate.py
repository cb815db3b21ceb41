"""`hkgen migrate PATH [--check] [--diff]`: upgrade a cluster.yaml to the current format in place."""

from __future__ import annotations

import argparse
import sys

from ._common import cluster_paths, err, out

NAME = "migrate"
HELP = "upgrade cluster.yaml to the current format in place, keeping comments"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen migrate`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml or its folder")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file needs migrating")
    parser.add_argument("--diff", action="store_true", help="print a unified diff of the change")


def run(args: argparse.Namespace) -> int:
    """Migrate each file; the result must validate before it replaces the original."""
    import difflib
    import os
    import tempfile
    from pathlib import Path

    from ..config.load import load_file, load_text
    from ..config.migrate import migrate_text
    from ..core.errors import ConfigError
    from ..pipeline import display_name
    from ..validation.validate import validate_document

    status = 0
    for path in cluster_paths(args.paths):
        name = display_name(path)
        load_file(path, name)  # refuses BOMs, bad bytes and hostile YAML with located messages
        text = path.read_text("utf-8")
        result = migrate_text(text, name)
        if not result.changed:
            err(f"{name}: already format {result.to_version}")
            continue
        check = validate_document(load_text(result.text, name))
        if check.errors:
            raise ConfigError(check.errors)
        for note in result.notes:
            out(f"{name}: {note}")
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(text.splitlines(True), result.text.splitlines(True), f"a/{name}", f"b/{name}")
            )
        if args.check:
            err(f"{name}: format {result.from_version} needs migrating to {result.to_version}")
            status = 1
            continue
        fd, tmp = tempfile.mkstemp(prefix=".cluster.", suffix=".yaml", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.text)
        Path(tmp).chmod(path.stat().st_mode & 0o777)
        Path(tmp).replace(path)
        err(f"{name}: migrated from format {result.from_version} to {result.to_version}")
    return status
