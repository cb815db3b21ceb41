"""Several kustomization roots built in one kustomize run (verify.kustomize.build_together) give each
root exactly the objects, in the same order, that building it alone gives; where one run cannot
stand for the separate builds (a failing root, one object in two roots) it answers None and the
roots are built one by one. Real kustomize (or kubectl kustomize) on the committed trees."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from conftest import REPO
from hkgen.verify.kustomize import ORIGIN, build, build_together, parse_output
from hkgen.verify.tree import kustomize_roots, top_roots

TREES = {"flux": REPO / "clusters" / "home", "argocd": REPO / "tests" / "golden" / "home-argocd"}


def _materialise(source: Path, dest: Path) -> list[PurePosixPath]:
    """Copy the kustomization roots' files of a committed tree to `dest`; its top roots."""
    tree = {PurePosixPath(p.relative_to(source).as_posix()): p.read_bytes()
            for p in source.rglob("*") if p.is_file()}
    inside = set(kustomize_roots(tree))
    for rel, data in tree.items():
        if inside.intersection(rel.parents):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(data)
    return top_roots(tree)


def _alone(base: Path, roots: list[PurePosixPath]) -> dict[PurePosixPath, list[object]]:
    out = {}
    for root in roots:
        result = build(base / root)
        assert result.ok, result.error
        out[root] = [d for d in parse_output(str(root), result.output) if isinstance(d, dict)]
    return out


@pytest.mark.parametrize("engine", sorted(TREES))
def test_one_run_gives_each_root_what_building_it_alone_gives(engine: str, tmp_path: Path) -> None:
    roots = _materialise(TREES[engine], tmp_path)
    assert len(roots) >= 4, roots
    together = build_together(tmp_path, roots)
    assert together is not None
    alone = _alone(tmp_path, roots)
    for root in roots:
        assert together[root] == alone[root], root  # same objects, same order
        assert all(ORIGIN not in (d["metadata"].get("annotations") or {}) for d in together[root])
    assert sum(len(v) for v in together.values()) > 50


def _root(base: Path, name: str, kustomization: str, files: dict[str, str]) -> PurePosixPath:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(kustomization)
    for file, text in files.items():
        (folder / file).write_text(text)
    return PurePosixPath(name)


CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{annotations}data:\n  a: b\n"


def test_generators_transformers_and_own_annotations_go_back_to_their_root(tmp_path: Path) -> None:
    a = _root(tmp_path, "a", "resources: [cm.yaml]\nnamespace: one\n"
              "configMapGenerator:\n  - name: made\n    literals: [x=1]\n",
              {"cm.yaml": CONFIGMAP.format(name="plain", annotations="")})
    b = _root(tmp_path, "b", "resources: [cm.yaml]\ncommonLabels:\n  team: b\n",
              {"cm.yaml": CONFIGMAP.format(name="annotated", annotations="  annotations:\n    keep: me\n")})
    together = build_together(tmp_path, [a, b])
    assert together is not None
    assert together == _alone(tmp_path, [a, b])
    assert [d["metadata"]["name"] for d in together[a]] == sorted(d["metadata"]["name"] for d in together[a])
    assert {d["metadata"]["annotations"]["keep"] for d in together[b]} == {"me"}


def test_one_object_in_two_roots_or_a_broken_root_falls_back(tmp_path: Path) -> None:
    same = CONFIGMAP.format(name="twice", annotations="")
    a = _root(tmp_path / "dup", "a", "resources: [cm.yaml]\n", {"cm.yaml": same})
    b = _root(tmp_path / "dup", "b", "resources: [cm.yaml]\n", {"cm.yaml": same})
    assert build_together(tmp_path / "dup", [a, b]) is None  # kustomize refuses the id twice
    ok = _root(tmp_path / "broken", "ok", "resources: [cm.yaml]\n", {"cm.yaml": same})
    bad = _root(tmp_path / "broken", "bad", "resources: [missing.yaml]\n", {})
    assert build_together(tmp_path / "broken", [ok, bad]) is None
    assert build_together(tmp_path / "broken", [ok]) is None  # one root: nothing to share
