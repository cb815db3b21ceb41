"""The platform layer as GitOps `Component`s: namespaces, priority classes, node roles and labels,
the Prometheus operator CRDs, cert-manager, Longhorn and its configuration (backup target,
recurring jobs, storage classes), the CloudNativePG operator with its barman-cloud backup plugin,
and the LAN address of the ingress controller.

Everything specific to MicroK8s lives in `DISTRO` (and `distro()`), so the objects below stay
distribution-neutral: another distribution would add its own table, not touch the components.
App components (the `apps` layer) come from `workloads`; they use the names exported here
(`STORAGE_CLASSES`, `PRIORITY_CLASSES`, `distro(cluster)["ingressClass"]`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from ..config.model import Cluster
from ..config.secrets import placeholder
from .parts import RECREATE_ANNOTATIONS, Chart, Component, OutputFile, Release, freeze

__all__ = [
    "DISTRO",
    "PRIORITY_CLASSES",
    "RESERVED_NAMESPACES",
    "STORAGE_CLASSES",
    "backup_url",
    "components",
    "distro",
    "storage_class",
]

# MicroK8s facts (domain notes §1.4, §1.6, §3.1). The kubelet runs with
# --root-dir=/var/snap/microk8s/common/var/lib/kubelet, so Longhorn's CSI driver must register
# there; the `ingress` addon runs the controller as a DaemonSet in namespace `ingress` with the
# IngressClass `public` (ingress-nginx up to 1.34, Traefik from 1.35 on); `dns`, `rbac` and
# `metallb` are enabled on the bootstrap node by the seeds, so they own those namespaces.
DISTRO: Mapping[str, Any] = freeze({
    "name": "microk8s",
    "kubeletRootDir": "/var/snap/microk8s/common/var/lib/kubelet",
    "ingressClass": "public",
    "ingressNamespace": "ingress",
    # Pods of the addon's controller and their named ports, by the first MicroK8s minor that has them.
    "ingressControllers": (
        {"since": (1, 27), "selector": {"name": "nginx-ingress-microk8s"}, "http": "http", "https": "https"},
        {"since": (1, 35),
         "selector": {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-ingress"},
         "http": "web", "https": "websecure"},
    ),
    # MetalLB (addon) reads the wanted address from this annotation (0.13 and later).
    "loadBalancerIPAnnotation": "metallb.universe.tf/loadBalancerIPs",
    # Namespaces the distribution or the GitOps engine own: hkgen never creates or prunes them.
    "ownedNamespaces": ("default", "kube-system", "kube-public", "kube-node-lease", "ingress",
                        "metallb-system", "flux-system", "argocd"),
})

RESERVED_NAMESPACES: tuple[str, ...] = tuple(DISTRO["ownedNamespaces"])

# Home automation must outrank monitoring when a Pi is short of memory, and never be preempted by
# it. Longhorn's own `longhorn-critical` (1e9, created by its chart) stays above all three: without
# storage nothing runs. `home` is the global default so that a pod nobody classified (an operator,
# a custom app) still outranks monitoring; monitoring never preempts anything.
PRIORITY_CLASSES: tuple[Mapping[str, Any], ...] = (
    freeze({"name": "home-critical", "value": 1_000_000, "globalDefault": False, "preemption": "PreemptLowerPriority",
            "description": "Home automation the house depends on (Home Assistant, MQTT, Zigbee)."}),
    freeze({"name": "home", "value": 100_000, "globalDefault": True, "preemption": "PreemptLowerPriority",
            "description": "Everything else that is not monitoring (the default for unclassified pods)."}),
    freeze({"name": "monitoring", "value": 10_000, "globalDefault": False, "preemption": "Never",
            "description": "Prometheus, Thanos, Grafana: first to go when capacity is short; never preempts."}),
)

# Volume backup class (cluster.yaml) -> StorageClass. Selection of the recurring jobs happens in the
# StorageClass (`recurringJobSelector` with job groups), so a volume's class is its whole policy.
STORAGE_CLASSES: Mapping[str, str] = freeze({
    "critical": "longhorn-critical",  # local snapshots + off-site backups
    "local": "longhorn-local",        # local snapshots only
    "none": "longhorn-none",          # nothing (caches, re-creatable data)
})
_DEFAULT_CLASS = "local"  # PVCs that name no class (chart defaults) still get snapshots

BACKUP_SECRET = "longhorn-backup-s3"  # noqa: S105 - the Secret's name; its values are placeholders
LONGHORN_NS = "longhorn-system"
CNPG_NS = "cnpg-system"

_CHART_REPOS = {
    "longhorn": "https://charts.longhorn.io",
    "cert-manager": "https://charts.jetstack.io",
    "cloudnative-pg": "https://cloudnative-pg.github.io/charts",
    "plugin-barman-cloud": "https://cloudnative-pg.github.io/charts",
    "prometheus-operator-crds": "https://prometheus-community.github.io/helm-charts",
}


def distro(cluster: Cluster) -> Mapping[str, Any]:
    """The distribution facts for `cluster`'s MicroK8s channel (ingress controller resolved)."""
    major, minor = (int(x) for x in cluster.kubernetes_minor.split("."))
    controller = [c for c in DISTRO["ingressControllers"] if tuple(c["since"]) <= (major, minor)][-1]
    facts: Mapping[str, Any] = freeze({**{k: v for k, v in DISTRO.items() if k != "ingressControllers"},
                                       "ingressController": controller})
    return facts


def storage_class(backup_class: str) -> str:
    """StorageClass name of a volume backup class ('critical', 'local' or 'none')."""
    return str(STORAGE_CLASSES[backup_class])


def backup_url(cluster: Cluster, what: str) -> str:
    """S3 folder of one backup consumer ('longhorn', 'thanos', 'postgres/<name>'): the bucket is
    shared, each consumer writes below `<prefix>/<what>/`.
    """
    assert cluster.backup is not None  # noqa: S101 - callers check; a bug otherwise
    return f"s3://{cluster.backup.bucket}/{cluster.backup.prefix}/{what}/"


def _file(path: str, template: str, **context: Any) -> OutputFile:
    return OutputFile(PurePosixPath(path), f"core/platform/{template}", freeze(context))


def _chart(cluster: Cluster, name: str) -> Chart:
    return Chart(name, _CHART_REPOS[name], cluster.version("charts", name))


def _version(text: str) -> tuple[int, ...]:
    """(major, minor, ...) of a version string such as 'v1.12.1'."""
    import re

    return tuple(int(x) for x in re.findall(r"\d+", text.split("-")[0])[:3])


def _monitoring(cluster: Cluster) -> bool:
    return cluster.app("monitoring") is not None


def _snapshot_schedule(cluster: Cluster) -> tuple[str, int]:
    """Snapshot cron and retention: from storage.backup, else the schema's defaults (snapshots are
    local and useful without an off-site target).
    """
    if cluster.backup is not None:
        return cluster.backup.snapshot_cron, cluster.backup.snapshot_retain
    from ..config.schema import cluster_schema

    props = cluster_schema()["properties"]["storage"]["properties"]["backup"]["properties"]["snapshots"]["properties"]
    return str(props["cron"]["default"]), int(props["retain"]["default"])


# --- crds layer -----------------------------------------------------------------------------------

def _namespaces() -> Component:
    # The template lists every namespace of every planned component and release (apps included),
    # minus the ones the distribution or the GitOps engine own.
    return Component(
        "namespaces", "crds", "kube-system",
        files=(_file("namespaces.yaml", "namespaces.yaml.j2", reserved=RESERVED_NAMESPACES),),
        description="Namespaces of every component, created before anything is installed into them.",
    )


def _priority_classes() -> Component:
    return Component(
        "priority-classes", "crds", "kube-system",
        files=(_file("priority-classes.yaml", "priority-classes.yaml.j2", classes=PRIORITY_CLASSES),),
        description="home-critical > home > monitoring: home automation outranks monitoring.",
    )


def _taint_spec(taint: Mapping[str, str]) -> str:
    value = taint.get("value") or ""
    return f"{taint['key']}{'=' + value if value else ''}:{taint['effect']}"


def _node_commands(cluster: Cluster) -> list[str]:
    """Shell lines that give every declared node what `seeds.node_metadata` says it must carry
    (roles, Longhorn disk labels and disk config, user labels, taints). Nodes are grouped by
    identical changes, so a 1,000-node cluster needs a handful of API calls per run.
    """
    from .seeds import CONTROL_PLANE_TAINT, LONGHORN_DISK_LABEL, node_metadata

    cp_taint = _taint_spec(CONTROL_PLANE_TAINT)
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    annotations: list[tuple[str, str]] = []
    taints: dict[str, list[str]] = {}
    untaint: dict[str, list[str]] = {}
    for host, meta in node_metadata(cluster).items():
        adds = tuple(sorted(f"{k}={v}" for k, v in meta.labels.items()))
        # Declarative for the label hkgen owns: a node without disks loses it.
        removes: tuple[str, ...] = () if LONGHORN_DISK_LABEL in meta.labels else (LONGHORN_DISK_LABEL,)
        groups.setdefault((adds, removes), []).append(host)
        annotations += [(host, f"{k}={v}") for k, v in sorted(meta.annotations.items())]
        specs = [_taint_spec(t) for t in meta.taints]
        for spec in specs:
            taints.setdefault(spec, []).append(host)
        if cp_taint not in specs:  # workers too: a join through a tainted control plane taints them
            untaint.setdefault(cp_taint, []).append(host)
    lines: list[str] = []
    for (adds, removes), names in sorted(groups.items()):
        changes = " ".join([*(shlex.quote(a) for a in adds), *(shlex.quote(r + "-") for r in removes)])
        lines.append(f"label {shlex.quote(' '.join(names))} {changes}")
    lines += [f"annotate {shlex.quote(host)} {shlex.quote(spec)}" for host, spec in annotations]
    lines += [f"taint {shlex.quote(' '.join(names))} {shlex.quote(spec)}" for spec, names in sorted(taints.items())]
    lines += [f"untaint {shlex.quote(' '.join(names))} {shlex.quote(spec + '-')}"
              for spec, names in sorted(untaint.items())]
    return lines


def _node_labels(cluster: Cluster) -> Component:
    # Kubelets cannot set node-role labels and `microk8s join --worker` overwrites kubelet node
    # labels, so what each node must carry (seeds.node_metadata) is applied from inside the cluster.
    files = (
        _file("rbac.yaml", "node-labels/rbac.yaml.j2"),
        _file("script.yaml", "node-labels/script.yaml.j2", commands=tuple(_node_commands(cluster))),
        _file("cronjob.yaml", "node-labels/cronjob.yaml.j2",
              image=f"registry.k8s.io/kubectl:{cluster.version('images', 'kubectl')}"),
    )
    return Component(
        "node-labels", "crds", "kube-system", files=files, depends_on=("priority-classes",),
        description="Node roles, Longhorn disk labels, user labels and control-plane taints, applied every 5 minutes.",
    )


def _prometheus_crds(cluster: Cluster) -> Component:
    # The CRDs come first and on their own: ServiceMonitors, PodMonitors and PrometheusRules in the
    # controllers and apps layers would otherwise fail the engine's dry run before
    # kube-prometheus-stack had a chance to create them (apps set `crds.enabled: false`).
    # Kept when the release goes (monitoring switched off, an uninstall): deleting a CRD deletes
    # every object of its kind in the cluster.
    values = {"crds": {"annotations": {"helm.sh/resource-policy": "keep"}}}
    release = Release("prometheus-operator-crds", "monitoring", _chart(cluster, "prometheus-operator-crds"),
                      freeze(values), timeout="5m")
    return Component("prometheus-crds", "crds", "monitoring", releases=(release,), depends_on=("namespaces",),
                     description="Prometheus operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule, ...).")


# --- controllers layer ----------------------------------------------------------------------------

def _cert_manager(cluster: Cluster) -> Component:
    values: dict[str, Any] = {
        "crds": {"enabled": True, "keep": True},
        "global": {"priorityClassName": "home"},
        "prometheus": {"enabled": _monitoring(cluster), "servicemonitor": {"enabled": _monitoring(cluster)}},
    }
    release = Release("cert-manager", "cert-manager", _chart(cluster, "cert-manager"), freeze(values))
    return Component("cert-manager", "controllers", "cert-manager", releases=(release,),
                     depends_on=("prometheus-crds",) if _monitoring(cluster) else (),
                     description="cert-manager: HTTPS for the web UIs, TLS for MQTT, the barman-cloud plugin's "
                                 "gRPC endpoint.")


def _longhorn(cluster: Cluster) -> Component:
    facts = distro(cluster)
    minimal_available = max(cluster.reserved_percent, 10)  # never let Longhorn fill a disk to the brim
    values: dict[str, Any] = {
        "csi": {"kubeletRootDir": facts["kubeletRootDir"]},
        # The pre-upgrade checker is a Helm hook Job that GitOps engines run at the wrong moment.
        "preUpgradeChecker": {"jobEnabled": False},
        # hkgen renders its own three StorageClasses (configs layer); the chart's `longhorn` class is
        # not the default (and not created at all from chart 1.12 on, which has the switch).
        "persistence": {"defaultClass": False, "defaultClassReplicaCount": cluster.replicas, "reclaimPolicy": "Retain"},
        "defaultSettings": {
            "createDefaultDiskLabeledNodes": True,
            "defaultDataPath": cluster.data_path,
            "defaultReplicaCount": {"v1": str(cluster.replicas), "v2": str(cluster.replicas)},
            "replicaSoftAntiAffinity": False,
            "replicaAutoBalance": "best-effort",
            "nodeDownPodDeletionPolicy": "delete-both-statefulset-and-deployment-pod",
            "storageOverProvisioningPercentage": cluster.over_provisioning_percent,
            "storageMinimalAvailablePercentage": minimal_available,
            "storageReservedPercentageForDefaultDisk": cluster.reserved_percent,
            "concurrentAutomaticEngineUpgradePerNodeLimit": 1,
            "orphanResourceAutoDeletion": "replica-data;instance",
        },
        "longhornUI": {"replicas": 1},
        "metrics": {"serviceMonitor": {"enabled": _monitoring(cluster)}},
    }
    if _version(cluster.version("charts", "longhorn")) >= (1, 12):
        values["persistence"]["createStorageClass"] = False
    files: tuple[OutputFile, ...] = ()
    if cluster.backup is not None:
        # Longhorn keeps the `default` BackupTarget in step with these values (since 1.8); a second
        # BackupTarget object in Git would make two writers of one object.
        values["defaultBackupStore"] = {
            "backupTarget": f"s3://{cluster.backup.bucket}@{cluster.backup.region}/{cluster.backup.prefix}/longhorn/",
            "backupTargetCredentialSecret": BACKUP_SECRET,
            "pollInterval": 300,
        }
        files = (_file("backup-credentials.yaml", "longhorn/backup-credentials.yaml.j2", name=BACKUP_SECRET,
                       namespace=LONGHORN_NS, endpoint=cluster.backup.endpoint,
                       access_key_id=placeholder("S3_ACCESS_KEY_ID"),
                       secret_access_key=placeholder("S3_SECRET_ACCESS_KEY")),)
    release = Release("longhorn", LONGHORN_NS, _chart(cluster, "longhorn"), freeze(values), timeout="15m")
    return Component("longhorn", "controllers", LONGHORN_NS, files=files, releases=(release,),
                     depends_on=("prometheus-crds",) if _monitoring(cluster) else (),
                     description="Longhorn block storage on the storage nodes' USB SSDs.")


def _cloudnative_pg(cluster: Cluster) -> Component:
    values = {
        "crds": {"create": True},
        "config": {"clusterWide": True},
        "priorityClassName": "home",
        "monitoring": {"podMonitorEnabled": _monitoring(cluster)},
    }
    release = Release("cloudnative-pg", CNPG_NS, _chart(cluster, "cloudnative-pg"), freeze(values))
    return Component("cloudnative-pg", "controllers", CNPG_NS, releases=(release,),
                     depends_on=("prometheus-crds",) if _monitoring(cluster) else (),
                     description="CloudNativePG operator: highly available Postgres for Grafana and others.")


def _barman_cloud(cluster: Cluster, own_cert_manager: bool) -> Component:
    # The plugin must live in the operator's namespace and gets its TLS certificates from cert-manager.
    values = {"priorityClassName": "home"}
    release = Release("barman-cloud", CNPG_NS, _chart(cluster, "plugin-barman-cloud"), freeze(values))
    needs = ("cloudnative-pg", "cert-manager") if own_cert_manager else ("cloudnative-pg",)
    return Component("barman-cloud", "controllers", CNPG_NS, releases=(release,), depends_on=needs,
                     description="Barman Cloud plugin (barman-cloud.cloudnative-pg.io): Postgres backups to S3.")


def _ingress(cluster: Cluster) -> Component:
    facts = distro(cluster)
    controller = facts["ingressController"]
    return Component(
        "ingress-address", "controllers", str(facts["ingressNamespace"]),
        files=(_file("ingress-service.yaml", "ingress-service.yaml.j2", namespace=facts["ingressNamespace"],
                     annotation=facts["loadBalancerIPAnnotation"], address=cluster.ingress_ip,
                     selector=controller["selector"], http=controller["http"], https=controller["https"]),),
        description="The ingress controller (MicroK8s addon) on its fixed LAN address.",
    )


# --- configs layer --------------------------------------------------------------------------------

def _longhorn_config(cluster: Cluster) -> Component:
    snapshot_cron, snapshot_retain = _snapshot_schedule(cluster)
    jobs: list[dict[str, Any]] = [
        {"name": "snapshot", "task": "snapshot", "cron": snapshot_cron, "retain": snapshot_retain,
         "concurrency": 2, "groups": ["critical", "local"]},
    ]
    if cluster.backup is not None:
        jobs.append({"name": "backup", "task": "backup", "cron": cluster.backup.backup_cron,
                     "retain": cluster.backup.backup_retain, "concurrency": 1, "groups": ["critical"]})
    classes = []
    for backup_class, name in STORAGE_CLASSES.items():
        # A volume without job labels is put in Longhorn's `default` group; no hkgen job uses that
        # group, so `none` volumes get nothing while the others get exactly their group's jobs.
        selector = json.dumps([{"name": backup_class, "isGroup": True}], separators=(",", ":"))
        params = {"numberOfReplicas": str(cluster.replicas), "staleReplicaTimeout": "2880", "fsType": "ext4",
                  "dataLocality": "disabled", "recurringJobSelector": selector}
        if backup_class == "critical" and cluster.backup is not None:
            params["backupTargetName"] = "default"
            if cluster.backup.encrypt_volumes:
                params |= _encryption_params()
        classes.append({"name": name, "default": backup_class == _DEFAULT_CLASS,
                        "reclaimPolicy": "Delete" if backup_class == "none" else "Retain", "parameters": params})
    crypto: tuple[OutputFile, ...] = ()
    if cluster.backup is not None and cluster.backup.encrypt_volumes:
        crypto = (_file("volume-encryption.yaml", "longhorn/volume-encryption.yaml.j2", name=CRYPTO_SECRET,
                        namespace=LONGHORN_NS, passphrase=placeholder("LONGHORN_ENCRYPTION_PASSWORD")),)
    return Component(
        "longhorn-config", "configs", LONGHORN_NS,
        files=(_file("recurring-jobs.yaml", "longhorn/recurring-jobs.yaml.j2", namespace=LONGHORN_NS, jobs=jobs),
               _file("storage-classes.yaml", "longhorn/storage-classes.yaml.j2", classes=classes,
                     recreate=RECREATE_ANNOTATIONS), *crypto),
        depends_on=("longhorn",),
        description="Recurring snapshots and backups and the three StorageClasses of the backup classes.",
    )


CRYPTO_SECRET = "longhorn-crypto"  # noqa: S105 - the Secret's name; its value is a placeholder


def _encryption_params() -> dict[str, str]:
    """StorageClass parameters of Longhorn volume encryption: the CSI driver reads the passphrase
    from one Secret when it creates, stages and publishes a volume.
    """
    params = {"encrypted": "true"}
    for step in ("provisioner", "node-publish", "node-stage"):
        params[f"csi.storage.k8s.io/{step}-secret-name"] = CRYPTO_SECRET
        params[f"csi.storage.k8s.io/{step}-secret-namespace"] = LONGHORN_NS
    return params


def components(cluster: Cluster) -> list[Component]:
    """Platform components of `cluster`, in layer order."""
    addons = {name for name, _args in cluster.addons}
    # The MicroK8s cert-manager addon, when enabled, already runs cert-manager: installing a second
    # one would fight over the same CRDs and webhooks.
    own_cert_manager = "cert-manager" not in addons
    out = [_namespaces(), _priority_classes(), _node_labels(cluster)]
    if _monitoring(cluster):
        out.append(_prometheus_crds(cluster))
    if own_cert_manager:
        out.append(_cert_manager(cluster))
    out += [_longhorn(cluster), _cloudnative_pg(cluster)]
    if cluster.backup is not None:
        out.append(_barman_cloud(cluster, own_cert_manager))
    if "ingress" in addons:
        out.append(_ingress(cluster))
    out.append(_longhorn_config(cluster))
    return out
