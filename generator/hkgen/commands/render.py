"""`hkgen render PATH...`: render, verify and write the tree (or `--check` it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ._common import cluster_paths, err, out

NAME = "render"
HELP = "render the GitOps tree and Pi seeds next to cluster.yaml"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen render`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the tree on disk is not current")
    parser.add_argument("--diff", action="store_true", help="print a unified diff of what changes")
    parser.add_argument("--force", action="store_true", help="overwrite or remove generated files edited by hand")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip kustomize builds and schema checks (faster, unsafe)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only")


def _progress(quiet: bool) -> Callable[[str], None] | None:
    """Stage names on one self-overwriting stderr line, only on a terminal (quiet in CI, hooks, pipes)."""
    if quiet or not sys.stderr.isatty():
        return None

    def show(stage: str) -> None:
        sys.stderr.write("\r\033[K" + stage[:100])
        sys.stderr.flush()

    return show


def run(args: argparse.Namespace) -> int:
    """Render each cluster; with --check compare instead of writing."""
    from ..output.locate import at_cluster_lines
    from ..output.transitions import changes
    from ..output.write import check_tree, diff_text, write_tree
    from ..pipeline import render_cluster

    status = 0
    for path in cluster_paths(args.paths):
        rendering = render_cluster(path, verify=not args.no_verify, progress=_progress(args.quiet))
        if sys.stderr.isatty() and not args.quiet:
            sys.stderr.write("\r\033[K")  # clear the progress line
        if not args.quiet:
            for problem in rendering.validation.warnings:
                out(problem.format())
        label = str(path.parent)
        if args.check:
            report = check_tree(rendering.root, rendering.tree)
            if report.dirty:
                status = 1
                for action, word in (("created", "missing"), ("changed", "differs"), ("removed", "stale")):
                    for rel in report.paths(action):
                        out(f"{label}/{rel}: {word}")
                if args.diff:
                    sys.stdout.write(diff_text(report, label))
                err(f"{label}: rendered tree is not current ({report.summary()}); run `hkgen render {label}`")
            elif not args.quiet:
                err(f"{label}: rendered tree is current ({len(report.changes)} files)")
            continue
        report = write_tree(rendering.root, rendering.tree, force=args.force, modes=rendering.modes)
        if args.diff:
            sys.stdout.write(diff_text(report, label))
        # Printed even with --quiet: each needs commands run by hand once the change is published.
        before = {c.path: c.old for c in report.changes if c.action in ("changed", "removed") and c.old is not None}
        for problem in at_cluster_lines(changes(before, rendering.tree, label), path, str(path), label):
            out(problem.format())
        if not args.quiet:
            for action in ("created", "changed", "removed"):
                for rel in report.paths(action):
                    out(f"{action:>8} {label}/{rel}")
            err(f"{label}: {report.summary()}")
    return status
