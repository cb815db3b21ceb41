"""Alerts that reach the household, as one GitOps `Component` (layer `apps`, namespace
`monitoring`, after the monitoring app): Alertmanager's configuration Secret, hkgen's own
PrometheusRule (`alert_rules`), blackbox Probes, and the exporters the rules need as pinned
Helm releases: prometheus-blackbox-exporter (TCP probes) and prometheus-smartctl-exporter (a
DaemonSet on the storage nodes, SMART health and wear of the USB SSDs).

Alertmanager itself runs from kube-prometheus-stack (the monitoring app's values read
`cluster.alerting`); its requests, like the exporters', are the monitoring app's workloads in
app.yaml, so validate's RAM check and `hkgen plan` count them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from ..config.model import Cluster
from ..core.yamlio import dump
from . import alert_rules, alertmanager
from .parts import Chart, Component, OutputFile, Release, freeze

__all__ = ["ALERTMANAGER_SECRET", "BLACKBOX_SERVICE", "components", "probes"]

NAMESPACE = "monitoring"
ALERTMANAGER_SECRET = "hkgen-alertmanager"  # noqa: S105 - the Secret's name; its values are placeholders
BLACKBOX_NAME = "blackbox-exporter"
BLACKBOX_CONFIG = "blackbox-exporter-config"
BLACKBOX_MODULES = {"modules": {"tcp_connect": {"prober": "tcp", "timeout": "5s",
                                                "tcp": {"preferred_ip_protocol": "ip4"}}}}
BLACKBOX_PORT = 9115
BLACKBOX_SERVICE = f"{BLACKBOX_NAME}.{NAMESPACE}.svc:{BLACKBOX_PORT}"
SMARTCTL_NAME = "smartctl-exporter"
PROM_REPO = "https://prometheus-community.github.io/helm-charts"
SSH_PORT = 22
MQTT_PORT = 1883


def _file(path: str, template: str, **context: Any) -> OutputFile:
    return OutputFile(PurePosixPath(path), f"core/alerts/{template}", freeze(context))


def probes(cluster: Cluster) -> list[dict[str, Any]]:
    """The blackbox probes: Mosquitto's LAN address, and every satellite serving a Zigbee network."""
    out: list[dict[str, Any]] = []
    mosq = cluster.app("mosquitto")
    if mosq is not None:
        out.append({"name": "mosquitto", "target": f"{mosq.settings['loadBalancerIP']}:{MQTT_PORT}",
                    "labels": {"probe": "mosquitto"}})
    if cluster.app("zigbee2mqtt"):
        for sat in cluster.satellites:
            nets = [n.name for n in cluster.zigbee if n.satellite == sat.hostname]
            if nets:
                out.append({"name": f"zigbee-satellite-{sat.hostname}", "target": f"{sat.ip}:{SSH_PORT}",
                            "labels": {"probe": "zigbee-satellite", "satellite": sat.hostname,
                                       "zigbee_network": ",".join(nets)}})
    return out


def _workloads(cluster: Cluster) -> Mapping[str, Any]:
    from ..config.catalogue import app_workloads, load_catalogue

    mon = cluster.app("monitoring")
    assert mon is not None  # noqa: S101 - alerting implies monitoring
    return {w.name: w for w in app_workloads(load_catalogue()["monitoring"], mon.settings, cluster)}


def _resources(workload: Any) -> dict[str, Any]:
    cpu, mem = workload.cpu_millis, workload.memory_mib
    return {"requests": {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}, "limits": {"memory": f"{2 * mem}Mi"}}


def _blackbox(cluster: Cluster, workloads: Mapping[str, Any]) -> Release:
    values = {
        "fullnameOverride": BLACKBOX_NAME,
        "priorityClassName": "monitoring",
        "resources": _resources(workloads[BLACKBOX_NAME]),
        # The modules are a Secret of the alerts component: module names are ours, not the chart's keys.
        "configExistingSecretName": BLACKBOX_CONFIG,
    }
    chart = Chart("prometheus-blackbox-exporter", PROM_REPO, cluster.version("charts", "prometheus-blackbox-exporter"))
    return Release("blackbox-exporter", NAMESPACE, chart, freeze(values))


def _smartctl(cluster: Cluster, workloads: Mapping[str, Any]) -> Release:
    from .seeds import LONGHORN_DISK_LABEL

    values = {
        "fullnameOverride": SMARTCTL_NAME,
        "priorityClassName": "monitoring",
        "resources": _resources(workloads[SMARTCTL_NAME]),
        # Only where Longhorn has disks: the nodes hkgen labels for it.
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": LONGHORN_DISK_LABEL, "operator": "In", "values": ["true", "config"]}]}]}}},
        "serviceMonitor": {
            "enabled": True,
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
        },
    }
    chart = Chart("prometheus-smartctl-exporter", PROM_REPO, cluster.version("charts", "prometheus-smartctl-exporter"))
    return Release("smartctl-exporter", NAMESPACE, chart, freeze(values))


def components(cluster: Cluster) -> list[Component]:
    """The alerts component of `cluster` (none without alerting)."""
    if not cluster.alerting:
        return []
    mon = cluster.app("monitoring")
    assert mon is not None  # noqa: S101 - alerting implies monitoring
    workloads = _workloads(cluster)
    files = [
        _file("alertmanager-config.yaml", "alertmanager-config.yaml.j2", name=ALERTMANAGER_SECRET,
              namespace=NAMESPACE, config_text=dump(alertmanager.config(cluster))),
        _file("rules.yaml", "rules.yaml.j2", namespace=NAMESPACE, groups=alert_rules.rule_groups(cluster)),
    ]
    found = probes(cluster)
    if found:
        files.append(_file("probes.yaml", "probes.yaml.j2", namespace=NAMESPACE, probes=found,
                           job=alert_rules.BLACKBOX_JOB, interval=mon.settings["scrapeInterval"],
                           prober=BLACKBOX_SERVICE))
        files.append(_file("blackbox-config.yaml", "blackbox-config.yaml.j2", name=BLACKBOX_CONFIG,
                           namespace=NAMESPACE, config_text=dump(BLACKBOX_MODULES)))
    resources = sorted(str(f.path) for f in files)
    files.append(OutputFile(PurePosixPath("kustomization.yaml"), "apps/_common/templates/kustomization.yaml.j2",
                            freeze({"namespace": NAMESPACE, "resources": resources})))
    releases = [_blackbox(cluster, workloads)] if found else []
    if cluster.storage_nodes:
        releases.append(_smartctl(cluster, workloads))
    return [Component("alerts", "apps", NAMESPACE, files=tuple(files), releases=tuple(releases),
                      depends_on=("monitoring",),
                      description="Alertmanager configuration, hkgen's alert rules, probes and exporters.")]
