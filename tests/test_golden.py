"""Golden trees: the committed render of the reference cluster (clusters/home, Flux) and its Argo CD
variant (tests/golden/home-argocd) must equal a fresh render: first the set of paths, then each file.

Regenerate after an intended change with `HKGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py`
(the only time a test writes into the repository), then review the diff in Git.
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path, PurePosixPath

import pytest

from hkgen.output.write import MANIFEST, write_tree
from hkgen.pipeline import render_cluster

REPO = Path(__file__).resolve().parents[1]
USER_FILES = {"cluster.yaml", "secrets.sops.yaml"}


def _inputs(tmp: Path, engine: str) -> Path:
    dest = tmp / "clusters" / "home"
    dest.mkdir(parents=True)
    for name in USER_FILES:
        shutil.copy2(REPO / "clusters" / "home" / name, dest / name)
    if engine == "argocd":
        text = (dest / "cluster.yaml").read_text()
        assert "  engine: flux\n" in text
        (dest / "cluster.yaml").write_text(text.replace("  engine: flux\n", "  engine: argocd\n"))
    return dest


def _committed(folder: Path) -> dict[PurePosixPath, bytes]:
    return {
        PurePosixPath(p.relative_to(folder).as_posix()): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
        and p.name not in USER_FILES
    }


GOLDEN = {"flux": REPO / "clusters" / "home", "argocd": REPO / "tests" / "golden" / "home-argocd"}


@pytest.fixture(scope="module", params=sorted(GOLDEN))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    engine: str = request.param
    rendering = render_cluster(_inputs(tmp_path_factory.mktemp(engine), engine))
    tree = dict(rendering.tree)
    from hkgen.output.write import manifest_bytes

    tree[PurePosixPath(MANIFEST)] = manifest_bytes(rendering.tree)
    if os.environ.get("HKGEN_UPDATE_GOLDEN") == "1":
        target = GOLDEN[engine]
        target.mkdir(parents=True, exist_ok=True)
        write_tree(target, rendering.tree, force=True)
    return engine, tree


def test_golden_path_set(rendered: tuple[str, dict]) -> None:
    engine, tree = rendered
    committed = _committed(GOLDEN[engine])
    missing = sorted(str(p) for p in set(tree) - set(committed))
    extra = sorted(str(p) for p in set(committed) - set(tree))
    assert (missing, extra) == ([], []), f"{engine}: missing from the golden tree {missing}, stale in it {extra}"


def test_golden_contents(rendered: tuple[str, dict]) -> None:
    engine, tree = rendered
    committed = _committed(GOLDEN[engine])
    diffs = []
    for path in sorted(set(tree) & set(committed)):
        if tree[path] != committed[path]:
            diffs.extend(
                difflib.unified_diff(
                    committed[path].decode().splitlines(True),
                    tree[path].decode().splitlines(True),
                    f"golden/{path}",
                    f"rendered/{path}",
                    n=1,
                )
            )
    assert not diffs, f"{engine}: golden tree differs from a fresh render:\n" + "".join(diffs[:200])
