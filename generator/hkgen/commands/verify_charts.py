"""`hkgen verify-charts PATH --charts DIR...`: render every Helm release of a tree with real charts.

PATH is either a folder holding a rendered tree (e.g. `clusters/home`: what is on disk, i.e.
what the GitOps engine deploys, is checked as it is) or a cluster file (`clusters/home/cluster.yaml`:
hkgen renders it in memory first, without its kustomize/schema verification, and checks that).
The Kubernetes version comes from the cluster file's MicroK8s channel (a folder's own
cluster.yaml), else from `--kube-version`. Needs the optional Helm SDK (`pip install 'hkgen[charts]'`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import err, out

if TYPE_CHECKING:
    from ..verify.charts import Report

NAME = "verify-charts"
HELP = "render every Helm release with its real chart: unknown values keys, chart schema, manifest schemas"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen verify-charts`."""
    parser.add_argument("path", metavar="PATH",
                        help="a rendered cluster folder (checked as it is on disk) or a cluster.yaml (rendered in "
                             "memory first)")
    parser.add_argument("--charts", action="append", required=True, metavar="DIR", type=Path,
                        help="folder with chart directories or .tgz archives (Chart.yaml names the chart and "
                             "version); repeatable")
    parser.add_argument("--crd-schemas", action="append", default=[], metavar="DIR", type=Path,
                        help="CRD JSON schemas beyond the tree's own CRDs and hkgen's bundled ones, laid out as "
                             "<group>/<kind>_<version>.json; repeatable")
    parser.add_argument("--kube-version", metavar="X.Y",
                        help="Kubernetes version of the cluster (default: from the cluster file's MicroK8s channel)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="a release whose chart is not in the --charts folders is a warning, not an error")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (json is stable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only (no warnings, table or summary)")


def run(args: argparse.Namespace) -> int:
    """Check the tree; exit 1 on any error-level problem or when there is nothing to check."""
    from ..core.errors import UsageError
    from ..verify.charts import check_tree, helm_sdk

    helm_sdk()  # fail first, with the install hint, if the extra is missing
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{args.path}: no such file or folder")
    for folder in args.charts:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such chart folder")
    tree, label, repo_prefix, kube = _tree(path)
    kube = args.kube_version or kube
    if not kube:
        raise UsageError(f"{args.path}: no cluster.yaml says which Kubernetes version runs; pass --kube-version")
    report = check_tree(tree, args.charts, kube_version=kube, label=label, repo_prefix=repo_prefix,
                        crd_folders=args.crd_schemas, allow_missing=args.allow_missing)
    if args.format == "json":
        out(json.dumps(_json(report, kube), indent=2, sort_keys=True))
    else:
        for problem in report.problems:
            if problem.severity == "error" or not args.quiet:
                out(problem.format())
        if not args.quiet and report.results:
            if report.problems:
                out()
            for line in _table(report):
                out(line)
    errors = len(report.errors)
    if not report.results:
        err(f"{label}: no HelmRelease or Helm-sourced Application found; nothing to check")
        return 1
    checked = sum(1 for r in report.results if r.checked)
    if not args.quiet:
        err(f"{label}: {checked} of {len(report.results)} release(s) checked against their charts "
            f"(Kubernetes {kube}); {errors} error(s), {len(report.problems) - errors} warning(s)")
    return 1 if errors else 0


def _tree(path: Path) -> tuple[dict[Any, bytes], str, str, str]:
    """(tree, label for messages, path of the tree in its Git repository, Kubernetes minor)."""
    from ..pipeline import display_name
    from ..verify.charts import read_tree

    if path.is_file():
        from ..pipeline import render_cluster

        rendering = render_cluster(path, verify=False)
        cluster = rendering.blueprint.cluster
        label = f"clusters/{cluster.name}"
        return dict(rendering.tree), label, label, cluster.kubernetes_minor
    return read_tree(path), display_name(path), _repo_path(path), _channel_minor(path / "cluster.yaml")


def _repo_path(folder: Path) -> str:
    """The folder's path inside its Git work tree, which Argo CD `$ref/...` value files use;
    outside a work tree, where hkgen puts a cluster's tree: `clusters/<folder name>`.
    """
    folder = folder.resolve()
    for parent in (folder, *folder.parents):
        if (parent / ".git").exists():
            return folder.relative_to(parent).as_posix()
    return f"clusters/{folder.name}"


def _channel_minor(cluster_file: Path) -> str:
    """Kubernetes minor of a cluster file's MicroK8s channel ('1.34/stable' -> '1.34'); '' if unknown."""
    import yaml

    if not cluster_file.is_file():
        return ""
    try:
        data = yaml.safe_load(cluster_file.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return ""
    channel = ((data or {}).get("microk8s") or {}).get("channel") if isinstance(data, dict) else None
    return str(channel).split("/", 1)[0] if isinstance(channel, str) else ""


def _table(report: Report) -> list[str]:
    header = ["chart", "version", "release", "values keys (free-form)", "documents", "schema", "result"]
    rows = []
    for r in report.results:
        rel = r.release
        errors = sum(1 for p in r.problems if p.severity == "error")
        if not r.checked:
            rows.append([rel.chart, rel.version, rel.object, "-", "-", "-", f"NOT CHECKED: {r.reason}"])
            continue
        keys = f"{r.keys_checked + r.keys_freeform} ({r.keys_freeform} free-form)"
        rows.append([rel.chart, rel.version, rel.object, keys, str(r.documents_validated),
                     "yes" if r.has_schema else "no", f"{errors} error(s)" if errors else "ok"])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = [header, ["-" * w for w in widths], *rows]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in line]


def _json(report: Report, kube: str) -> dict[str, Any]:
    return {
        "kubernetes": kube,
        "releases": [{
            "engine": r.release.engine, "object": r.release.object, "file": r.release.at.file,
            "line": max(r.release.at.line, 1), "chart": r.release.chart, "version": r.release.version,
            "repository": r.release.repository, "release": r.release.release_name, "namespace": r.release.namespace,
            "checked": r.checked, "reason": r.reason, "chart_path": str(r.chart_path) if r.chart_path else None,
            "values_keys": {"checked": r.keys_checked, "free_form": r.keys_freeform},
            "documents_validated": r.documents_validated, "values_schema": r.has_schema,
            "errors": sum(1 for p in r.problems if p.severity == "error"),
        } for r in report.results],
        # 1-based like every printed position (a whole-file problem points at 1:1).
        "problems": [{"file": p.file, "line": max(p.line, 1), "col": max(p.col, 1), "path": p.path,
                      "message": p.message, "hint": p.hint, "severity": p.severity} for p in report.problems],
    }
