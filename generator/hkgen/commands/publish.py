"""`hkgen publish PATH`: validate, render, commit the cluster's folder only, and push (never forced)."""

from __future__ import annotations

import argparse

from ._common import cluster_paths, err, out

NAME = "publish"
HELP = "validate, render, commit only this cluster's folder and push it (refuses on drift or divergence)"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen publish`."""
    parser.add_argument("path", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    parser.add_argument("--remote", default="origin", help="git remote to push to (default: origin)")
    parser.add_argument("--branch", help="remote branch to update (default: the checked-out branch)")
    parser.add_argument("-m", "--message", help="commit message (default: '<folder>: publish rendered cluster')")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything (including the remote) and show what would happen; change nothing")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip kustomize builds and schema checks of the rendered tree (faster, unsafe)")


def run(args: argparse.Namespace) -> int:
    """Publish one cluster and say what happened."""
    from ..ops.publish import publish

    (path,) = cluster_paths([args.path])
    result = publish(path, remote=args.remote, branch=args.branch, message=args.message, dry_run=args.dry_run,
                     verify=not args.no_verify)
    for note in result.notes:
        err(f"hkgen: note: {note}")
    for problem in result.warnings:
        out(problem.format())
    where = f"{result.remote}/{result.branch}"
    if result.nothing_to_do:
        err(f"{result.cluster_dir}: nothing to publish; {where} already has it as rendered")
        return 0
    verb = "would commit" if result.dry_run else "committed"
    for name in result.files:
        out(f"{verb:>12} {name}")
    for line in result.pushed:
        out(f"{'would push' if result.dry_run else 'pushed':>12} {line}")
    if result.dry_run:
        err(f"{result.cluster_dir}: dry run, nothing changed ({result.report.summary()}); "
            f"{len(result.pushed)} commit(s) would go to {where}")
    else:
        made = f"commit {result.commit[:12]}" if result.commit else "no new commit"
        err(f"{result.cluster_dir}: {made} ({result.report.summary()}); {len(result.pushed)} commit(s) "
            f"pushed to {where}")
    return 0
