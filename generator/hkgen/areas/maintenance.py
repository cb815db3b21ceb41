"""Maintenance without outages, as GitOps components: the images of the home-critical apps kept on
every node that may run them (the `image-prepull` DaemonSet), so a pod that moves after a node
failure or a drain starts at once instead of pulling a 1 GB image onto a Pi first.

Why a pre-pull DaemonSet and not a cluster-local mirror (spegel): a mirror makes the pull a LAN
copy, but the pod still waits for the copy and the unpack (tens of seconds for Home Assistant on
an SD-card worker) at the worst moment; a DaemonSet pulls ahead of time, needs no change to
MicroK8s' containerd configuration on the hosts, and is two kilobytes of YAML. It costs disk (every
schedulable node holds the images) and one idle container per node.

`prepull_images` is also what `hkgen plan` assumes when it has no rendered tree to read.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from ..config.catalogue import app_workloads, load_catalogue
from ..config.model import Cluster
from .parts import Component, OutputFile, freeze

__all__ = ["PREPULL_NAME", "PREPULL_NAMESPACE", "components", "prepull_images"]

PREPULL_NAME = "image-prepull"
PREPULL_NAMESPACE = "maintenance"
_CRITICAL = "home-critical"


def prepull_images(cluster: Cluster) -> dict[str, str]:
    """Image of every home-critical, single-instance workload that can move, by workload name.

    Pinned workloads (a USB stick on one node) are left out: they only ever run where they are.
    """
    catalogue = load_catalogue()
    out: dict[str, str] = {}
    for app in cluster.apps:
        spec = catalogue.get(app.name)
        if not app.enabled or spec is None or spec.priority_class != _CRITICAL:
            continue
        images = dict(spec.images)
        if app.name not in images:
            continue
        image = f"{images[app.name]}:{cluster.version('images', app.name)}"
        for w in app_workloads(spec, app.settings, cluster):
            if w.pinned_to is None and w.kind in ("StatefulSet", "Deployment") and w.app == app.name:
                out[w.name] = image
    return out


def _prepull(cluster: Cluster) -> Component | None:
    images = sorted(set(prepull_images(cluster).values()))
    if not images:
        return None
    context: dict[str, Any] = {"name": PREPULL_NAME, "namespace": PREPULL_NAMESPACE, "images": images}
    return Component(
        PREPULL_NAME, "apps", PREPULL_NAMESPACE,
        files=(OutputFile(PurePosixPath("daemonset.yaml"), "core/platform/maintenance/prepull.yaml.j2",
                          freeze(context)),),
        depends_on=("priority-classes",),
        description="Keeps the images of Home Assistant, Mosquitto and zigbee2mqtt on every node that may run them.",
    )


def components(cluster: Cluster) -> list[Component]:
    """Maintenance components of `cluster`."""
    out: list[Component] = []
    prepull = _prepull(cluster)
    if prepull is not None:
        out.append(prepull)
    return out
