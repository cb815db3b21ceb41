"""Resource arithmetic shared by `hkgen validate` and `hkgen plan`: what each Pi can give to pods
and what the platform and the enabled apps ask for.

Figures are requests, the scheduler's currency, sized from MicroK8s and Longhorn on a Pi 4.
System reservations cover Ubuntu, snapd, containerd, kubelite (and dqlite on control planes)
and Calico, none of which are pods the scheduler counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.catalogue import Container, Volume, Workload, app_workloads, load_catalogue
from ..config.model import Cluster, CustomApp, Node
from .daemons import model_every_node

__all__ = [
    "PLATFORM",
    "PlatformWorkload",
    "all_workloads",
    "allocatable_cpu_millis",
    "allocatable_mib",
    "custom_workload",
    "platform_memory_mib",
]

# MiB kept back from pods per node: OS + MicroK8s services (dqlite/kubelite are heavier on
# control planes) + the kubelet's hard eviction threshold (memory.available<100Mi).
SYSTEM_RESERVED_MIB = {"control-plane": 1024, "worker": 640}
SYSTEM_RESERVED_CPU = {"control-plane": 600, "worker": 300}
CORES = {"rpi4": 4, "rpi5": 4, "cm4": 4}


@dataclass(frozen=True)
class PlatformWorkload:
    """A platform component's footprint (not an app): where it runs and what it requests."""

    name: str
    cpu_millis: int
    memory_mib: int
    placement: str  # "every-node" | "storage-nodes" | "one"
    replicas: int = 1


PLATFORM: tuple[PlatformWorkload, ...] = (
    PlatformWorkload("coredns", 100, 70, "one"),
    PlatformWorkload("metrics-server", 50, 64, "one"),
    PlatformWorkload("metallb-controller", 20, 48, "one"),
    PlatformWorkload("metallb-speaker", 20, 48, "every-node"),
    PlatformWorkload("longhorn-manager", 50, 192, "every-node"),
    PlatformWorkload("longhorn-csi-plugin", 20, 48, "every-node"),
    # Longhorn guarantees each instance manager 12 % of the node's CPU (guaranteedInstanceManagerCPU).
    PlatformWorkload("longhorn-instance-manager", 480, 256, "storage-nodes"),
    PlatformWorkload("longhorn-csi-controllers", 40, 160, "one"),
    PlatformWorkload("longhorn-ui-driver", 20, 96, "one"),
    PlatformWorkload("gitops-controllers", 200, 384, "one"),
    PlatformWorkload("cloudnative-pg", 50, 128, "one"),
    PlatformWorkload("cert-manager", 30, 96, "one"),
    PlatformWorkload("barman-cloud-plugin", 50, 64, "one"),
)


def allocatable_mib(node: Node) -> int:
    """Memory the scheduler may hand to pods on `node`."""
    return node.memory_gib * 1024 - SYSTEM_RESERVED_MIB[node.role]


def allocatable_cpu_millis(node: Node) -> int:
    """CPU the scheduler may hand to pods on `node`."""
    return CORES[node.board] * 1000 - SYSTEM_RESERVED_CPU[node.role]


def platform_memory_mib(cluster: Cluster) -> int:
    """Total memory requested by platform components in `cluster`, hkgen's own DaemonSets included."""
    total = 0
    for comp in PLATFORM:
        count = {"every-node": len(cluster.nodes), "storage-nodes": len(cluster.storage_nodes),
                 "one": comp.replicas}[comp.placement]
        total += comp.memory_mib * count
    for daemon in model_every_node(cluster):  # kured everywhere, the pre-pull on schedulable nodes
        total += daemon.memory_mib * len(cluster.nodes if daemon.on_control_planes else cluster.schedulable_nodes)
    return total


def all_workloads(cluster: Cluster) -> list[Workload]:
    """Every app workload of the enabled catalogue and custom apps."""
    catalogue = load_catalogue()
    out: list[Workload] = []
    for app in cluster.apps:
        if app.enabled:
            out.extend(app_workloads(catalogue[app.name], app.settings, cluster))
    out.extend(custom_workload(custom) for custom in cluster.custom_apps)
    return out


def custom_workload(custom: CustomApp) -> Workload:
    """The one workload of a custom app: a StatefulSet when it has storage, else a Deployment."""
    volumes = (Volume("data", custom.storage_gib, custom.backup_class),) if custom.storage_gib else ()
    return Workload(app=custom.name, name=custom.name, kind="StatefulSet" if volumes else "Deployment",
                    replicas=1, cpu_millis=custom.cpu_millis, memory_mib=custom.memory_mib,
                    per_node=False, termination_grace_seconds=30, volumes=volumes,
                    containers=(Container(custom.name, custom.cpu_millis, custom.memory_mib),))
