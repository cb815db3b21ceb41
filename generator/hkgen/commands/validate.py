"""`hkgen validate PATH...`: schema and cluster rules, every problem at once, located."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._common import cluster_paths, err, out

if TYPE_CHECKING:
    from ..validation.formats import FileResult

NAME = "validate"
HELP = "check cluster files: schema and cluster rules, all problems at once"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen validate`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.add_argument("--format", choices=("text", "json", "github"), default="text",
                        help="text (FILE:LINE:COL lines, default), json (one document), or github "
                             "(GitHub Actions annotations, `::error file=...,line=...,col=...::...`)")


def run(args: argparse.Namespace) -> int:
    """Validate each cluster file; exit 1 if any has errors (warnings do not fail)."""
    from ..core.errors import ConfigError
    from ..pipeline import validate_cluster

    fmt = getattr(args, "format", "text")
    if fmt != "text":  # the machine forms only: text is what pre-commit runs, on every commit
        from ..validation.formats import FileResult, github_line, json_document
    status = 0
    results: list[FileResult] = []
    for path in cluster_paths(args.paths):
        try:
            doc, result = validate_cluster(path)
        except ConfigError as error:
            if fmt == "json":
                results.append(FileResult(str(path), error.problems))
            if fmt == "text":
                for line in error.lines():
                    out(line)
            elif fmt == "github":
                for problem in error.problems:
                    out(github_line(problem))
            err(f"{path}: invalid")
            status = 1
            continue
        shown = [p for p in result.problems if p.severity == "error" or not args.quiet]
        if fmt == "json":
            results.append(FileResult(doc.file, shown))
        if fmt != "json":
            for problem in shown:
                out(problem.format() if fmt == "text" else github_line(problem))
        if result.errors:
            err(f"{doc.file}: invalid ({len(result.errors)} error(s), {len(result.warnings)} warning(s))")
            status = 1
        elif not args.quiet:
            err(f"{doc.file}: valid ({len(result.warnings)} warning(s))")
    if fmt == "json":
        out(json_document(results))
    return status
