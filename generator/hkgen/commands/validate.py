"""`hkgen validate PATH...`: schema and cluster rules, every problem at once, located."""

from __future__ import annotations

import argparse

from ._common import cluster_paths, err, out

NAME = "validate"
HELP = "check cluster files: schema and cluster rules, all problems at once"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen validate`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace) -> int:
    """Validate each cluster file; exit 1 if any has errors (warnings do not fail)."""
    from ..core.errors import ConfigError
    from ..pipeline import validate_cluster

    status = 0
    for path in cluster_paths(args.paths):
        try:
            doc, result = validate_cluster(path)
        except ConfigError as error:
            for line in error.lines():
                out(line)
            err(f"{path}: invalid")
            status = 1
            continue
        for problem in result.problems:
            if problem.severity == "error" or not args.quiet:
                out(problem.format())
        if result.errors:
            err(f"{doc.file}: invalid ({len(result.errors)} error(s), {len(result.warnings)} warning(s))")
            status = 1
        elif not args.quiet:
            err(f"{doc.file}: valid ({len(result.warnings)} warning(s))")
    return status
