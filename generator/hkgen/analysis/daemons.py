"""The every-node pods of hkgen's own maintenance components in `hkgen plan`'s capacity figures.

kured (a DaemonSet from its chart, on every node: it tolerates the control planes' NoSchedule
taint) and the image pre-pull DaemonSet (on the schedulable nodes only) take a slice of every
Pi they run on. Their resources are decided here once: the maintenance area renders them (kured's
values, the pre-pull template), `model_every_node` states them for an analysis without a tree,
and `read_every_node` reads them back from a rendered tree, so the plan counts what the tree
really asks for. The catalogue apps' per-node workloads (node-exporter, smartctl-exporter) are
counted from the catalogue like every other app workload; MicroK8s' and Longhorn's from
`capacity.PLATFORM`.

A pod's request is the scheduler's: per resource, the larger of its containers' sum and its
largest init container (init containers run one at a time, before the others).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config.model import Cluster
from .failover import PREPULL_NAME, prepull_images

__all__ = [
    "CONTROL_PLANE_TAINT_KEY",
    "KURED_RESOURCES",
    "PREPULL_RESOURCES",
    "EveryNode",
    "kured_tolerations",
    "mib",
    "millis",
    "model_every_node",
    "pod_requests",
    "read_every_node",
]

CONTROL_PLANE_TAINT_KEY = "node-role.kubernetes.io/control-plane"
KURED_RESOURCES: dict[str, Any] = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
# Each pull is an init container that exits at once; the hold container idles.
PREPULL_RESOURCES: dict[str, dict[str, Any]] = {
    "pull": {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
    "hold": {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"memory": "16Mi"}},
}
# Charts hkgen installs whose pods run on every node, with where their values put the one
# container's resources and the pod's tolerations (the kured chart's DaemonSet template).
DAEMON_CHARTS = {"kured": ("resources", "tolerations")}
_BINARY = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
_DECIMAL = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


@dataclass(frozen=True)
class EveryNode:
    """A pod of one DaemonSet: its scheduler request and whether it runs on tainted control planes."""

    name: str
    cpu_millis: int
    memory_mib: int
    on_control_planes: bool


def millis(quantity: Any) -> int:
    """A CPU quantity ("10m", "0.5", 1) in millicores, rounded up."""
    text = str(quantity)
    if text.endswith("m"):
        return int(-(-float(text[:-1]) // 1))
    return int(-(-float(text) * 1000 // 1))


def mib(quantity: Any) -> int:
    """A memory quantity ("32Mi", "1Gi", "100M", bytes) in MiB, rounded up."""
    text = str(quantity)
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return int(-(-float(text[: -len(suffix)]) * factor // 1))
    for suffix, factor in _DECIMAL.items():
        if text.endswith(suffix):
            return int(-(-float(text[: -len(suffix)]) * factor // 1048576))
    return int(-(-float(text) // 1048576))


def _request(resources: Any, key: str) -> Any:
    return ((resources or {}).get("requests") or {}).get(key, 0)


def pod_requests(containers: Sequence[Any], init_containers: Sequence[Any] = ()) -> tuple[int, int]:
    """(millicores, MiB) the scheduler reserves for a pod with these containers' `resources`."""
    cpu = sum(millis(_request(r, "cpu")) for r in containers)
    mem = sum(mib(_request(r, "memory")) for r in containers)
    for r in init_containers:
        cpu = max(cpu, millis(_request(r, "cpu")))
        mem = max(mem, mib(_request(r, "memory")))
    return cpu, mem


def _tolerates_control_planes(tolerations: Any) -> bool:
    """Whether a pod with `tolerations` runs on a control plane tainted `CONTROL_PLANE_TAINT_KEY:NoSchedule`
    (the taint's value is empty).
    """
    for tol in tolerations or []:
        operator = tol.get("operator") or "Equal"
        matches = (tol.get("key") in (None, "") and operator == "Exists") or (
            tol.get("key") == CONTROL_PLANE_TAINT_KEY and (operator == "Exists" or not tol.get("value")))
        if matches and tol.get("effect") in (None, "", "NoSchedule"):
            return True
    return False


def kured_tolerations() -> list[dict[str, str]]:
    """Every node reboots through kured, the NoSchedule control planes included."""
    return [{"key": CONTROL_PLANE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]


def model_every_node(cluster: Cluster) -> list[EveryNode]:
    """The every-node pods the maintenance area renders for `cluster`, from the decisions above."""
    out: list[EveryNode] = []
    if cluster.upgrades_enabled:
        cpu, mem = pod_requests([KURED_RESOURCES])
        out.append(EveryNode("kured", cpu, mem, _tolerates_control_planes(kured_tolerations())))
    images = set(prepull_images(cluster).values())
    if images:
        cpu, mem = pod_requests([PREPULL_RESOURCES["hold"]], [PREPULL_RESOURCES["pull"]] * len(images))
        out.append(EveryNode(PREPULL_NAME, cpu, mem, False))
    return sorted(out, key=lambda e: e.name)


def _chart_name(doc: dict[str, Any]) -> str:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "HelmRelease":
        return str((((spec.get("chart") or {}).get("spec")) or {}).get("chart", ""))
    return str((spec.get("source") or {}).get("chart", ""))


def read_every_node(doc: dict[str, Any], found: list[EveryNode]) -> None:
    """Add the every-node pod `doc` (a rendered DaemonSet, or a release of a chart in DAEMON_CHARTS) makes."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "DaemonSet":
        pod = ((spec.get("template") or {}).get("spec")) or {}
        cpu, mem = pod_requests([c.get("resources") for c in pod.get("containers") or []],
                                [c.get("resources") for c in pod.get("initContainers") or []])
        name = str((doc.get("metadata") or {}).get("name"))
        found.append(EveryNode(name, cpu, mem, _tolerates_control_planes(pod.get("tolerations"))))
    elif kind in ("HelmRelease", "Application") and _chart_name(doc) in DAEMON_CHARTS:
        values = spec.get("values") or ((spec.get("source") or {}).get("helm") or {}).get("valuesObject") or {}
        resources_key, tolerations_key = DAEMON_CHARTS[_chart_name(doc)]
        cpu, mem = pod_requests([values.get(resources_key)])
        found.append(EveryNode(_chart_name(doc), cpu, mem, _tolerates_control_planes(values.get(tolerations_key))))
