"""Maintenance without outages, as GitOps components:

* `kured`: coordinated reboots. unattended-upgrades only flags `/var/run/reboot-required`; kured
  (pinned chart) takes a cluster-wide lock (one node at a time), cordons and drains the node
  through the eviction API (PodDisruptionBudgets hold: Longhorn's instance-manager budgets keep a
  volume's last healthy replica, CloudNativePG's budgets make it switch its primary over first),
  reboots, and uncordons when the node is back; it releases the lock some minutes later, so
  Longhorn rebuilds replicas before the next node goes. Only inside the window of cluster.yaml,
  and only while no maintenance gate alert fires (`hkgen-maintenance-gate`: a node not Ready, a
  Longhorn volume degraded or faulted, dqlite voters missing as the control planes report them,
  `dqlite_metrics.py`); without monitoring the lock and the drain are the gates.
* `image-prepull`: the images of the home-critical apps kept on every node that may run them, so
  a pod that moves after a node failure or a drain starts at once instead of pulling a 1 GB image
  onto a Pi first.

Why a pre-pull DaemonSet and not a cluster-local mirror (spegel): a mirror makes the pull a LAN
copy, but the pod still waits for the copy and the unpack (tens of seconds for Home Assistant on
an SD-card worker) at the worst moment; a DaemonSet pulls ahead of time, needs no change to
MicroK8s' containerd configuration on the hosts, and is two kilobytes of YAML. It costs disk (every
schedulable node holds the images) and one idle container per node.

Which images are pre-pulled is decided in `analysis/failover.py` (`prepull_images`), which `hkgen plan`
also assumes when it has no rendered tree to read.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from ..analysis.daemons import KURED_RESOURCES, PREPULL_RESOURCES, kured_tolerations
from ..analysis.failover import PREPULL_NAME, prepull_images
from ..config.model import Cluster
from . import dqlite_metrics, reboots
from .parts import Chart, Component, OutputFile, Release, freeze

__all__ = ["GATE_ALERTS", "PREPULL_NAME", "PREPULL_NAMESPACE", "components", "kured_values", "prepull_images"]

KURED_REPO = "https://kubereboot.github.io/charts"
REBOOT_SENTINEL = "/var/run/reboot-required"  # written by Ubuntu's update-notifier hooks (unattended-upgrades)
# Alerts that stop kured from starting a reboot (kured asks Prometheus for active alerts and, with
# alertFilterMatchOnly, blocks only on names matching its filter). `for: 0m`: the gate closes at
# once, unlike KubeNodeNotReady's 15 minutes. Rules in templates/platform/maintenance/gate-rules.yaml.j2.
GATE_ALERTS = ("HkgenNodeNotReady", "HkgenNodeCordoned", "HkgenLonghornVolumeDegraded",
               # the control planes' dqlite membership (dqlite_metrics.py): voters complete
               "HkgenDqliteVotersMissing", "HkgenDqliteMembersMissing", "HkgenDqliteMembershipUnreported",
               "HkgenDqliteMembershipDiffers")
PROMETHEUS_URL = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"  # fullnameOverride in monitoring

PREPULL_NAMESPACE = "maintenance"


def _prepull(cluster: Cluster) -> Component | None:
    images = sorted(set(prepull_images(cluster).values()))
    if not images:
        return None
    context: dict[str, Any] = {"name": PREPULL_NAME, "namespace": PREPULL_NAMESPACE, "images": images,
                               "resources": PREPULL_RESOURCES}  # counted by `hkgen plan` (daemons.py)
    return Component(
        PREPULL_NAME, "configs", PREPULL_NAMESPACE,
        files=(OutputFile(PurePosixPath("daemonset.yaml"), "core/platform/maintenance/prepull.yaml.j2",
                          freeze(context)),),
        depends_on=("priority-classes",),
        description="Keeps the images of Home Assistant, Mosquitto and zigbee2mqtt on every node that may run them.",
    )


def _window(cluster: Cluster) -> tuple[str, str]:
    return reboots.window(cluster)  # the rules validate holds it to are in reboots.py


def kured_values(cluster: Cluster) -> dict[str, Any]:
    """Values of the kured chart for `cluster`."""
    start, end = _window(cluster)
    configuration: dict[str, Any] = {
        "rebootSentinel": REBOOT_SENTINEL,
        "period": f"{reboots.KURED_PERIOD_MINUTES}m",  # nine nodes fit in the default window (reboots.py)
        "startTime": start,
        "endTime": end,
        "timeZone": cluster.timezone,
        "concurrency": 1,
        # A drain that cannot finish (a budget that never allows it) gives up, uncordons and
        # tries again next period; never a forced reboot over a budget.
        "drainTimeout": "15m",
        "forceReboot": False,
        # Hold the lock 10 min after the node is back, so Longhorn rebuilds the replicas it lost
        # and CloudNativePG's standby catches up before the next node goes.
        "lockReleaseDelay": f"{reboots.KURED_LOCK_RELEASE_DELAY_MINUTES}m",
        "annotateNodes": True,
    }
    if cluster.app("monitoring") is not None:
        configuration.update({
            "prometheusUrl": PROMETHEUS_URL,
            "alertFilterRegexp": "^(" + "|".join(GATE_ALERTS) + ")$",
            "alertFilterMatchOnly": True,
            "alertFiringOnly": True,
        })
    return {
        "configuration": configuration,
        # Every node reboots through kured, the NoSchedule control planes included.
        "tolerations": kured_tolerations(),
        "priorityClassName": "home",
        "resources": KURED_RESOURCES,  # counted on every node by `hkgen plan` (daemons.py)
    }


def _kured(cluster: Cluster) -> Component:
    chart = Chart("kured", KURED_REPO, cluster.version("charts", "kured"))
    release = Release("kured", PREPULL_NAMESPACE, chart, freeze(kured_values(cluster)))
    files: tuple[OutputFile, ...] = ()
    needs: tuple[str, ...] = ("namespaces",)
    if cluster.app("monitoring") is not None:
        files = (OutputFile(PurePosixPath("gate-rules.yaml"), "core/platform/maintenance/gate-rules.yaml.j2",
                            freeze({"namespace": "monitoring", "alerts": GATE_ALERTS,
                                    **dqlite_metrics.expected(cluster)})),)
        needs = ("namespaces", "prometheus-crds")
    start, end = _window(cluster)
    return Component("kured", "controllers", PREPULL_NAMESPACE, files=files, releases=(release,), depends_on=needs,
                     description=f"Reboots nodes that need it one at a time, drained, between {start} and {end}.")


def components(cluster: Cluster) -> list[Component]:
    """Maintenance components of `cluster`."""
    out: list[Component] = []
    if cluster.upgrades_enabled:
        out.append(_kured(cluster))
    from . import upgrade

    out.append(upgrade.component(cluster))
    prepull = _prepull(cluster)
    if prepull is not None:
        out.append(prepull)
    return out
