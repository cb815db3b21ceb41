"""The `hkgen` command line: the only module that prints or exits.

Every `HkgenError` becomes its lines on stderr/stdout and its exit code; anything else is a
bug, reported in one line (the traceback only with HKGEN_DEBUG=1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

EXIT_CODES = """exit codes:
  0  success (valid, rendered, tree current)
  1  problems found: invalid cluster file, stale or refused tree, failed verification
  2  usage error: bad arguments, missing path
  3  an external tool (kustomize/kubectl, git, sops) is missing, failed or timed out
"""


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(line + "\n")


def _paths(values: Sequence[str]) -> list[Path]:
    from .pipeline import cluster_file_for

    seen: list[Path] = []
    for value in values:
        path = Path(value)
        if not path.exists():
            from .errors import UsageError

            raise UsageError(f"{value}: no such file or folder")
        file = cluster_file_for(path)
        if file.resolve() not in [p.resolve() for p in seen]:
            seen.append(file)
    return seen


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate cluster files: every problem, located, then a one-line verdict per file."""
    from .errors import ConfigError
    from .pipeline import validate_cluster

    status = 0
    for path in _paths(args.paths):
        try:
            doc, result = validate_cluster(path)
        except ConfigError as err:
            for line in err.lines():
                _out(line)
            _err(f"{path}: invalid")
            status = 1
            continue
        for problem in result.problems:
            if problem.severity == "error" or not args.quiet:
                _out(problem.format())
        if result.errors:
            _err(f"{doc.file}: invalid ({len(result.errors)} error(s), {len(result.warnings)} warning(s))")
            status = 1
        elif not args.quiet:
            _err(f"{doc.file}: valid ({len(result.warnings)} warning(s))")
    return status


def cmd_render(args: argparse.Namespace) -> int:
    """Render (or with --check, compare) the tree of each cluster."""
    from .pipeline import render_cluster
    from .write import check_tree, diff_text, write_tree

    status = 0
    for path in _paths(args.paths):
        rendering = render_cluster(path, verify=not args.no_verify)
        for problem in rendering.validation.warnings:
            if not args.quiet:
                _out(problem.format())
        label = str(path.parent)
        if args.check:
            report = check_tree(rendering.root, rendering.tree)
            if report.dirty:
                status = 1
                for action in ("created", "changed", "removed"):
                    for rel in report.paths(action):
                        word = {"created": "missing", "changed": "differs", "removed": "stale"}[action]
                        _out(f"{label}/{rel}: {word}")
                if args.diff:
                    sys.stdout.write(diff_text(report, label))
                _err(f"{label}: rendered tree is not current ({report.summary()}); run `hkgen render {label}`")
            elif not args.quiet:
                _err(f"{label}: rendered tree is current ({len(report.changes)} files)")
            continue
        report = write_tree(rendering.root, rendering.tree, force=args.force, modes=rendering.modes)
        if args.diff:
            sys.stdout.write(diff_text(report, label))
        if not args.quiet:
            for action in ("created", "changed", "removed"):
                for rel in report.paths(action):
                    _out(f"{action:>8} {label}/{rel}")
            _err(f"{label}: {report.summary()}")
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the composed cluster schema, or write it to schemas/cluster.schema.json."""
    from .resources import data_dir
    from .schema import composed_schema_text

    text = composed_schema_text()
    if args.write:
        target = data_dir("schemas") / "cluster.schema.json"
        target.write_text(text, "utf-8")
        _err(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hkgen",
        description="Render a home-automation Kubernetes cluster (Raspberry Pi, MicroK8s, Longhorn) "
                    "from one validated cluster.yaml into a Flux or Argo CD tree plus per-Pi cloud-init seeds.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hkgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check cluster files: schema and cluster rules, all problems at once",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="render the GitOps tree and Pi seeds next to cluster.yaml",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the committed tree is not current")
    p.add_argument("--diff", action="store_true", help="print a unified diff of what changes")
    p.add_argument("--force", action="store_true", help="overwrite or remove generated files edited by hand")
    p.add_argument("--no-verify", action="store_true", help="skip kustomize builds and schema checks (faster, unsafe)")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("schema", help="print the full cluster JSON schema (catalogue apps included)")
    p.add_argument("--write", action="store_true", help="write it to hkgen's schemas/cluster.schema.json")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hkgen` console script."""
    from .errors import HkgenError, ProblemsError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ProblemsError as err:
        for line in err.lines():
            _out(line)
        return err.exit_code
    except HkgenError as err:
        for line in err.lines():
            _err(f"hkgen: {line}")
        return err.exit_code
    except KeyboardInterrupt:
        _err("hkgen: interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as err:  # a bug in hkgen: one line for the user, details on request
        if os.environ.get("HKGEN_DEBUG"):
            raise
        _err(f"hkgen: internal error: {type(err).__name__}: {err} "
             "(this is a bug; rerun with HKGEN_DEBUG=1 for details and report it)")
        return 70


if __name__ == "__main__":
    sys.exit(main())
