"""Docs say what is true: rendered Markdown has no paragraphs glued by Jinja's whitespace
control, counts agree in number ("1 worker"), and no install line names a package index that
does not have hkgen."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import HOME_CLUSTER
from hkgen.pipeline import render_cluster

# A sentence or a numbered step glued onto the previous one: "0xf41`).5. Longhorn", "json`.By hand".
GLUED = re.compile(r"[.)`]\d+\. [A-Z]|[a-z`)]\.[A-Z][a-z]+ ")


def _four_nodes(data: Any) -> None:
    data["nodes"] = data["nodes"][:4]  # 3 control planes, 1 worker
    data["storage"]["longhorn"]["replicas"] = 2
    # Every Pi must be able to take another's apps (validate's HA rule): all control planes run apps
    # and the monitoring stack is off.
    for node in data["nodes"][:3]:
        node["schedulable"] = True
    data["apps"]["grafana"]["enabled"] = False
    data["apps"]["monitoring"]["enabled"] = False
    data["zigbee"]["networks"] = [n for n in data["zigbee"]["networks"]
                                  if "satellite" in n["coordinator"] or n["coordinator"].get("node") in
                                  {m["hostname"] for m in data["nodes"]}]


def _render(tmp_path: Path, edit: Any = None) -> dict[str, str]:
    folder = tmp_path / "clusters" / "home"
    folder.mkdir(parents=True)
    shutil.copy2(HOME_CLUSTER / "secrets.sops.yaml", folder / "secrets.sops.yaml")
    rt = YAML()
    data = rt.load((HOME_CLUSTER / "cluster.yaml").read_text())
    if edit is not None:
        edit(data)
    with (folder / "cluster.yaml").open("w") as fh:
        rt.dump(data, fh)
    tree = render_cluster(folder / "cluster.yaml", verify=False).tree
    return {str(k): v.decode() for k, v in tree.items() if str(k) in ("README.md", "RECOVERY.md")}


@pytest.mark.parametrize("edit", [None, _four_nodes], ids=["reference", "four-nodes"])
def test_rendered_docs_have_no_glued_paragraphs(tmp_path: Path, edit: Any) -> None:
    for name, text in _render(tmp_path, edit).items():
        glued = [line for line in text.splitlines() if GLUED.search(line)]
        assert glued == [], name


def test_counts_agree_in_number(tmp_path: Path) -> None:
    readme = _render(tmp_path, _four_nodes)["README.md"]
    assert "| nodes | 4: 3 control planes, 1 worker" in readme
    assert not re.search(r"\b1 (workers|control planes|satellites)\b", readme)


def test_no_install_line_names_an_index_without_hkgen(repo: Path) -> None:
    docs = [repo / "README.md", *sorted((repo / "docs").glob("*.md")),
            *sorted((repo / "templates" / "scaffold").rglob("README.md"))]
    bad = [f"{p.relative_to(repo)}:{n}" for p in docs for n, line in enumerate(p.read_text().splitlines(), 1)
           if re.search(r"pip install (-U )?hkgen(\s|$|`)", line) or "pypi.org/project/hkgen" in line]
    assert bad == []
