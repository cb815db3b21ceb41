"""Warnings about the rendered tree, located at the cluster.yaml line that causes them.

transitions.py finds what the GitOps engine cannot apply by itself in the *generated* files (a
StatefulSet's volume templates, a StorageClass, a Pi's network seed). The user changed
cluster.yaml, not those files, so each warning is moved to the cluster.yaml entry that produced
the object (the app, the Zigbee network, the node, `storage.longhorn.replicas`); the generated
file and its position follow in the message as a note. An entry the change removed (a renamed
network or app) points at the list or mapping that held it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..config.load import Document, PathKey, json_path, load_file
from ..core.errors import HkgenError, Problem

__all__ = ["at_cluster_lines", "source_path"]

_STATEFULSET = re.compile(r"StatefulSet [a-z0-9-]+/([a-z0-9-]+)")


def _index(items: Any, key: str, value: str) -> int | None:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get(key) == value:
                return i
    return None


def _workload_path(data: dict[str, Any], name: str) -> PathKey:
    """Where the workload `name` (a StatefulSet) comes from in cluster.yaml."""
    if name.startswith("zigbee2mqtt-"):
        networks = (data.get("zigbee") or {}).get("networks")
        i = _index(networks, "name", name.removeprefix("zigbee2mqtt-"))
        return ("zigbee", "networks", i) if i is not None else ("zigbee", "networks")
    apps = data.get("apps") or {}
    for app in sorted(apps, key=len, reverse=True):  # the longest app name the workload starts with
        if name == app or name.startswith(app + "-"):
            return ("apps", app)
    i = _index(data.get("customApps"), "name", name)
    if i is not None:
        return ("customApps", i)
    if "prometheus" in name or "thanos" in name or "alertmanager" in name:
        return ("apps", "monitoring") if "monitoring" in apps else ("apps",)
    return ("apps",) if "apps" in data else ()


def source_path(data: Any, rel: PurePosixPath, problem: Problem) -> PathKey:
    """The cluster.yaml path behind `problem`, found in the generated file `rel`."""
    if not isinstance(data, dict):
        return ()
    if len(rel.parts) >= 2 and rel.parts[0] in ("nodes", "satellites"):
        i = _index(data.get(rel.parts[0]), "hostname", rel.parts[1])
        return (rel.parts[0], i) if i is not None else (rel.parts[0],)
    if problem.path.startswith("$.parameters.numberOfReplicas"):
        return ("storage", "longhorn", "replicas")
    found = _STATEFULSET.search(problem.message)
    if found:
        return _workload_path(data, found.group(1))
    return ()


def at_cluster_lines(problems: Iterable[Problem], cluster_file: Path, display: str, label: str) -> list[Problem]:
    """`problems` about generated files under `label`, moved to the lines of `cluster_file`."""
    problems = list(problems)
    if not problems:
        return []
    try:
        doc: Document = load_file(cluster_file, display)
    except HkgenError:  # cannot happen after a successful render; keep the generated locations then
        return problems
    moved = []
    for problem in problems:
        rel = PurePosixPath(problem.file.removeprefix(label + "/"))
        path = source_path(doc.data, rel, problem)
        line, col = doc.where(path, key=True)
        note = f" (generated: {problem.file}:{max(problem.line, 1)}:{max(problem.col, 1)} {problem.path})"
        moved.append(dataclasses.replace(problem, file=doc.file, line=line, col=col, path=json_path(path),
                                         message=problem.message + note))
    return moved
