"""What makes a failover fast, decided once for the seeds, the platform and the plan: the node-failure
cadence the seeds render, so the grace period the plan assumes is the one the
kubelets and the controller manager really run with.

* kubelet (every node): `--node-lease-duration-seconds` equal to the grace period, so the kubelet
  renews its node Lease every quarter of it (the kubelet's fixed renew fraction, 0.25) and a node
  is marked NotReady only after missing about four renewals; `--node-status-update-frequency` at
  the same quarter, with `--node-status-report-frequency` kept at the Kubernetes default of 5 min
  (setting the update frequency alone would also make the kubelet post its full status that often).
* kube-controller-manager (control planes): `--node-monitor-grace-period` and an explicit
  `--node-monitor-period` (the Kubernetes default, written so the plan reads it from the tree).
* `prepull_images`: the images of the home-critical apps that can move, kept on every node by the
  maintenance area's pre-pull DaemonSet, so a moved pod starts without a pull.
"""

from __future__ import annotations

from ..config.catalogue import app_workloads, load_catalogue
from ..config.model import Cluster

__all__ = [
    "NODE_MONITOR_PERIOD",
    "PREPULL_NAME",
    "STATUS_REPORT_FREQUENCY",
    "controller_manager_args",
    "kubelet_args",
    "prepull_images",
]

NODE_MONITOR_PERIOD = 5  # seconds; kube-controller-manager default
STATUS_REPORT_FREQUENCY = "5m"  # kubelet default for nodeStatusReportFrequency
PREPULL_NAME = "image-prepull"  # the DaemonSet keeping the images of `prepull_images` on every node
_CRITICAL = "home-critical"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def kubelet_args(cluster: Cluster) -> dict[str, str]:
    """Lease and status cadence of every node's kubelet (a quarter of the grace period)."""
    grace = cluster.node_monitor_grace_seconds
    return {
        "--node-lease-duration-seconds": str(grace),
        "--node-status-update-frequency": _seconds(grace / 4),
        "--node-status-report-frequency": STATUS_REPORT_FREQUENCY,
    }


def controller_manager_args(cluster: Cluster) -> dict[str, str]:
    """How the node lifecycle controller watches the nodes."""
    return {
        "--node-monitor-grace-period": f"{cluster.node_monitor_grace_seconds}s",
        "--node-monitor-period": f"{NODE_MONITOR_PERIOD}s",
    }


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
