"""`hkgen docs [--write | --check]`: the configuration reference generated from the cluster schema."""

from __future__ import annotations

import argparse
import sys

from ._common import err

NAME = "docs"
HELP = "print the configuration reference (docs/configuration.md) generated from the cluster schema"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen docs`."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write it to docs/configuration.md of this source checkout")
    mode.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if docs/configuration.md differs from the schema")


def run(args: argparse.Namespace) -> int:
    """Print, write or check the reference."""
    from ..config.schemadoc import reference, reference_file

    text = reference()
    if not (args.write or args.check):
        sys.stdout.write(text)
        return 0
    target = reference_file()
    current = target.read_text("utf-8") if target.is_file() else None
    if args.check:
        if current != text:
            err(f"{target}: not current with the cluster schema; run `hkgen docs --write`")
            return 1
        err(f"{target}: current")
        return 0
    if current == text:
        err(f"{target}: already current")
        return 0
    target.write_text(text, "utf-8")
    err(f"wrote {target}")
    return 0
