#!/usr/bin/env python3
"""Schema checking before/after issue 18: the copied upstream schemas vs hkgen's own small ones.

"before" is verify's two schema checkers (k8s: every object; cloudinit: every seed) as they were at
commit 7489cbd (read with `git show`), loading the upstream files they used to ship from ../shared
(datree CRD schemas, cloud-init's cloud-config schema); "after" is the current code with
schemas/kinds/ and schemas/cloud-config.schema.json. Both check the same rendered and built tree.
Each run starts with the schema caches of both emptied (schemas load and compile again, the
per-value cloud-config error cache is cleared), so a run is what one `hkgen render` pays; runs
alternate before/after, the first pair is a warm-up, and the ratio of the medians is printed.

    .venv/bin/python bench/schemas.py              # reference cluster and 100 nodes, 7 pairs
    .venv/bin/python bench/schemas.py --pairs 3 --nodes 9
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BEFORE = "7489cbd"  # the last commit with the copied schemas
sys.path.insert(0, str(REPO / "generator"))
sys.path.insert(0, str(REPO / "bench"))

from hkgen.areas.blueprint import build_blueprint  # noqa: E402
from hkgen.config.load import load_file, load_generated  # noqa: E402
from hkgen.core.resources import data_dir  # noqa: E402
from hkgen.render.jinja import render_blueprint  # noqa: E402
from hkgen.validation.validate import validate_document  # noqa: E402
from hkgen.verify import cloudinit, k8s  # noqa: E402
from hkgen.verify.tree import build_roots  # noqa: E402


def _old_module(name: str) -> ModuleType:
    """verify/<name>.py as of BEFORE, loaded inside the hkgen.verify package."""
    source = subprocess.run(["git", "show", f"{BEFORE}:generator/hkgen/verify/{name}.py"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader(f"hkgen.verify._before_{name}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "hkgen.verify"
    sys.modules[spec.name] = module
    exec(compile(source, f"{BEFORE}:{name}.py", "exec"), module.__dict__)  # noqa: S102 - the project's own code
    return module


def _before() -> tuple[ModuleType, ModuleType]:
    old_k8s, old_ci = _old_module("k8s"), _old_module("cloudinit")

    def crd_schema_path(api_version: str, kind: str) -> Path:
        group, _, version = api_version.rpartition("/")
        return SHARED / "schemas" / "crds" / group / f"{kind.lower()}_{version}.json"

    def schema(name: str) -> dict[str, Any]:
        # The upstream cloud-config schema from ../shared; hkgen's own schemas (network-config,
        # launch configuration) from where they are now.
        ours = {"cloud-init/network-config-v2.hkgen.schema.json": cloudinit.NETWORK_CONFIG_SCHEMA}
        path = SHARED / "schemas" / name if name not in ours else data_dir("schemas") / ours[name]
        if not path.is_file():
            path = data_dir("schemas") / name
        loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return loaded

    old_k8s.crd_schema_path = crd_schema_path  # type: ignore[attr-defined]
    old_ci._schema = schema  # type: ignore[attr-defined]
    return old_k8s, old_ci


def _clear(k8s_module: ModuleType, ci_module: ModuleType) -> None:
    k8s_module._crd_validator.cache_clear()
    ci_module._cloud_config_validator.cache_clear()
    ci_module._split_validators.cache_clear()
    ci_module._ERRORS.clear()


def _tree(cluster_file: Path) -> tuple[Any, Any, Any]:
    result = validate_document(load_file(cluster_file))
    assert result.cluster is not None, result.problems
    blueprint = build_blueprint(result.cluster)
    tree = render_blueprint(blueprint)
    built, problems = build_roots(blueprint, tree)
    assert not problems, problems
    return blueprint, tree, built


def _run(modules: tuple[ModuleType, ModuleType], blueprint: Any, tree: Any, built: Any) -> float:
    k8s_module, ci_module = modules
    _clear(k8s_module, ci_module)
    start = time.perf_counter()
    problems = k8s_module.check(blueprint, tree, built) + ci_module.check(blueprint, tree, [])
    elapsed = time.perf_counter() - start
    assert problems == [], problems[:3]
    return elapsed


def _schemas_only(modules: tuple[ModuleType, ModuleType], custom: list[dict[str, Any]], seeds: list[Any]) -> float:
    """Only what changed: custom resources and user-data against their schemas (loading included)."""
    k8s_module, ci_module = modules
    _clear(k8s_module, ci_module)
    start = time.perf_counter()
    errors = [e for doc in custom for e in k8s_module.validate_object(doc, "1.34")[1]]
    errors += [e for data in seeds for e in ci_module._cloud_config_errors(data)]
    elapsed = time.perf_counter() - start
    assert errors == [], errors[:3]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7, help="measured before/after pairs (median of these)")
    parser.add_argument("--nodes", type=int, default=100, help="size of the synthetic cluster (besides the reference)")
    args = parser.parse_args()
    if not (SHARED / "schemas" / "crds").is_dir():
        print(f"needs the upstream schemas in {SHARED}/schemas (the 'before' side)")
        return 1
    before, after = _before(), (k8s, cloudinit)
    with tempfile.TemporaryDirectory(prefix="hkgen-bench-schemas-") as tmp:
        from bench import synthetic

        clusters = {"clusters/home (9 nodes)": REPO / "clusters" / "home" / "cluster.yaml",
                    f"synthetic ({args.nodes} nodes)": synthetic(args.nodes, 5, Path(tmp)) / "cluster.yaml"}
        print(f"{'cluster / what':<66}{'before s':>10}{'after s':>10}{'after/before':>14}")
        for label, file in clusters.items():
            blueprint, tree, built = _tree(file)
            custom = [d for b in built for d in b.documents if not k8s._is_core(d["apiVersion"].rpartition("/")[0])]
            seeds = [load_generated(tree[p].decode(), str(p)).data for p in sorted(tree) if p.name == "user-data"]
            measures = {"both schema checkers (k8s + cloudinit)": functools.partial(_run, blueprint=blueprint,
                                                                                   tree=tree, built=built),
                        f"{len(custom)} custom resources + {len(seeds)} user-data": functools.partial(
                            _schemas_only, custom=custom, seeds=seeds)}
            for what, measure in measures.items():
                times: dict[str, list[float]] = {"before": [], "after": []}
                for pair in range(args.pairs + 1):  # pair 0 warms both up (imports, built-in kinds)
                    order = [("before", before), ("after", after)]
                    for name, modules in order if pair % 2 else order[::-1]:
                        elapsed = measure(modules)
                        if pair:
                            times[name].append(elapsed)
                b, a = statistics.median(times["before"]), statistics.median(times["after"])
                print(f"{label + ': ' + what:<66}{b:>10.3f}{a:>10.3f}{a / b:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
