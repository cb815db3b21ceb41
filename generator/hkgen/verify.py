"""Stage 6, verify: prove the rendered tree is what it claims before it reaches the disk.

1. Every YAML file reparses, and a YAML 1.1 reader (PyYAML, as in cloud-init; go-yaml v2 in
   kubectl behaves alike) reads exactly what a YAML 1.2 reader reads.
2. Every kustomization root builds with kustomize (in a scratch copy of the tree).
3. Every document is checked against its schema by the checkers registered in `CHECKERS`
   (Kubernetes and CRD schemas, the cloud-config schema, the MicroK8s launch-config schema).
Problems name the output file and the template it came from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import Problem, VerifyError
from .plan import Plan
from .render import Rendered

__all__ = ["CHECKERS", "Built", "Checker", "kustomize_roots", "verify"]


@dataclass(frozen=True)
class Built:
    """Documents a kustomization root builds to."""

    root: PurePosixPath
    documents: tuple[dict[str, Any], ...]


Checker = Callable[[Plan, Rendered, list[Built]], list[Problem]]
# Modules with a `check(plan, tree, built) -> list[Problem]` function, run in this order.
CHECKERS: tuple[str, ...] = ("cloudinit_check", "k8s_check")


def _label(plan: Plan, path: PurePosixPath) -> str:
    return f"clusters/{plan.cluster.name}/{path}"


def _template_of(plan: Plan, path: PurePosixPath) -> str:
    for f in plan.files:
        if f.path == path:
            return f.template
    return "?"


def reparse(plan: Plan, tree: Rendered) -> list[Problem]:
    """YAML 1.2 and YAML 1.1 readers must both parse each YAML file, to the same data."""
    import io

    import yaml as pyyaml
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    problems: list[Problem] = []
    formats = {f.path: f.format for f in plan.files}
    reader = YAML(typ="safe", pure=True)
    for path in sorted(tree):
        if formats.get(path) not in ("yaml", "cloud-config"):
            continue
        text = tree[path].decode("utf-8")
        label = _label(plan, path)
        try:
            docs12 = list(reader.load_all(io.StringIO(text)))
        except YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problems.append(Problem(label, (mark.line + 1) if mark else 0, (mark.column + 1) if mark else 0, "$",
                                    f"rendered YAML does not parse (template {_template_of(plan, path)}): "
                                    f"{getattr(err, 'problem', err)}"))
            continue
        try:
            docs11 = list(pyyaml.safe_load_all(text))
        except pyyaml.YAMLError as err:
            problems.append(Problem(label, 0, 0, "$", f"a YAML 1.1 reader cannot parse it "
                                    f"(template {_template_of(plan, path)}): {err}"))
            continue
        if _normalise(docs12) != _normalise(docs11):
            problems.append(Problem(label, 0, 0, "$", "YAML 1.1 and 1.2 readers read different values "
                                    f"(template {_template_of(plan, path)}); quote the value with the yaml filter"))
    return problems


def _normalise(value: Any) -> Any:
    import datetime

    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def kustomize_roots(tree: Rendered) -> list[PurePosixPath]:
    """Folders of the tree that hold a kustomization.yaml, sorted."""
    return sorted(p.parent for p in tree if p.name == "kustomization.yaml")


def build_roots(plan: Plan, tree: Rendered) -> tuple[list[Built], list[Problem]]:
    """Build every kustomization root of `tree` in a scratch copy; parse the output."""
    from ruamel.yaml import YAML

    from .kustomize import build_all

    roots = kustomize_roots(tree)
    if not roots:
        return [], []
    problems: list[Problem] = []
    built: list[Built] = []
    reader = YAML(typ="safe", pure=True)
    with tempfile.TemporaryDirectory(prefix="hkgen-verify-") as tmp:
        base = Path(tmp)
        for rel, data in tree.items():
            dest = base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        results = build_all([base / r for r in roots])
        for rel, result in zip(roots, results, strict=True):
            label = _label(plan, rel / "kustomization.yaml")
            if not result.ok:
                message = result.error.replace(str(base) + "/", "").strip().splitlines()
                problems.append(Problem(label, 0, 0, "$", "kustomize build failed: " + " | ".join(message[-3:])))
                continue
            docs = tuple(d for d in reader.load_all(result.output) if isinstance(d, dict))
            built.append(Built(rel, docs))
    return built, problems


def verify(plan: Plan, tree: Rendered) -> list[Built]:
    """Run every check; raise `VerifyError` with all problems, else return the built roots."""
    problems = reparse(plan, tree)
    built, build_problems = build_roots(plan, tree)
    problems.extend(build_problems)
    import importlib

    for name in CHECKERS:
        checker: Checker = importlib.import_module(f"{__package__}.{name}").check
        problems.extend(checker(plan, tree, built))
    if problems:
        raise VerifyError(problems)
    return built
