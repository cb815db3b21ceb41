"""`hkgen schema [--write]`: the composed cluster JSON schema (catalogue apps included)."""

from __future__ import annotations

import argparse
import sys

from ._common import err

NAME = "schema"
HELP = "print the full cluster JSON schema (catalogue apps included)"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen schema`."""
    parser.add_argument("--write", action="store_true", help="write it to hkgen's schemas/cluster.schema.json")


def run(args: argparse.Namespace) -> int:
    """Print or write the schema."""
    from ..config.schema import composed_schema_text
    from ..core.resources import data_dir

    text = composed_schema_text()
    if args.write:
        target = data_dir("schemas") / "cluster.schema.json"
        target.write_text(text, "utf-8")
        err(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0
