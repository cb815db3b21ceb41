"""The node-failure cadence the seeds render, so the grace period the plan assumes is the one the
kubelets and the controller manager really run with.

* kubelet (every node): `--node-lease-duration-seconds` equal to the grace period, so the kubelet
  renews its node Lease every quarter of it (the kubelet's fixed renew fraction, 0.25) and a node
  is marked NotReady only after missing about four renewals; `--node-status-update-frequency` at
  the same quarter, with `--node-status-report-frequency` kept at the Kubernetes default of 5 min
  (setting the update frequency alone would also make the kubelet post its full status that often).
* kube-controller-manager (control planes): `--node-monitor-grace-period` and an explicit
  `--node-monitor-period` (the Kubernetes default, written so the plan reads it from the tree).
"""

from __future__ import annotations

from ..config.model import Cluster

__all__ = ["NODE_MONITOR_PERIOD", "STATUS_REPORT_FREQUENCY", "controller_manager_args", "kubelet_args"]

NODE_MONITOR_PERIOD = 5  # seconds; kube-controller-manager default
STATUS_REPORT_FREQUENCY = "5m"  # kubelet default for nodeStatusReportFrequency


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
