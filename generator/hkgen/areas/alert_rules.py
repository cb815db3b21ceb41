"""hkgen's own alert rules, decided from what the cluster runs: a rule exists only for a component
that is rendered (Longhorn backups only with a backup target, the restore gate only for the
volumes it gates, one coordinator probe per Zigbee network served over TCP, ...).

Each rule names the metric the real exporter exposes (Longhorn manager, kube-state-metrics,
CloudNativePG and its barman-cloud plugin, Thanos, node-exporter, blackbox `probe_success`,
smartctl_exporter, cert-manager, Flux through kube-state-metrics' custom resource metrics), a
`for:` that rides out the cluster's own recovery (a replica rebuild, a pod moving off a dead Pi),
a runbook section of the cluster's RECOVERY.md, and the failure it reports (which `hkgen plan`
uses to say which alert fires when a node dies, and how soon someone hears of it).

Expressions accept both forms Longhorn has used for its state metrics: a `state` label with the
value 1 (1.10 and later) and a numeric code without the label (older releases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..config.model import Cluster

__all__ = [
    "ORIGIN_LABEL",
    "RUNBOOKS",
    "Rule",
    "cron_max_gap_seconds",
    "duration_seconds",
    "rule_groups",
    "rules",
    "runbook_anchor",
]

ORIGIN_LABEL = ("origin", "hkgen")  # every hkgen alert carries it: Alertmanager routes on it
BLACKBOX_JOB = "blackbox"  # the Probe objects' jobName (areas/alerts.py renders them)
DQLITE_UPLOAD_EVERY_HOURS = 1  # the upload CronJobs' schedule (templates/platform/dqlite-backup)

# Runbook sections appended to RECOVERY.md: anchor key -> (heading, steps). The heading's GitHub
# anchor is what alerts link to (`runbook_anchor`).
RUNBOOKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "node": ("Alert: a node is down", (
        "Check the Pi: power, network cable or Wi-Fi, `ssh` to it. Pods with volumes move to other nodes by "
        "themselves (see the recovery table above); a USB Zigbee stick cannot move with them.",
        "Alerts that are consequences of a dead node (degraded volumes, the coordinator on it, the control-plane "
        "count) are held back while the node alert is active: one message per incident.",
        "If it does not come back, follow \"A node died: replace it\".",
    )),
    "control-plane": ("Alert: fewer control planes than dqlite voters", (
        "One more control-plane loss stops the Kubernetes API: bring the missing control plane back first.",
        "If it is gone for good, follow \"A node died: replace it\"; if two are gone, \"Quorum lost\".",
    )),
    "volume": ("Alert: a Longhorn volume is degraded or faulted", (
        "`kubectl -n longhorn-system get volumes.longhorn.io` shows robustness per volume. Degraded: a replica is "
        "missing; Longhorn rebuilds it on another storage node (minutes per GiB on a Pi).",
        "A rebuild that does not finish within two hours: check free space on the storage nodes and the "
        "instance-manager logs; faulted: every replica is unusable, restore from backup (\"Restore one volume\").",
    )),
    "storage-full": ("Alert: Longhorn storage almost full", (
        "Longhorn stops scheduling replicas before a disk is full; add a disk or a storage node in cluster.yaml, "
        "or shrink volumes (`storageGiB` settings) and delete old snapshots.",
    )),
    "backups": ("Alert: backups are failing or old", (
        "`kubectl -n longhorn-system get backups.longhorn.io` and the BackupTarget's status show why; usually the S3 "
        "credentials (secrets file) or the network. Until it is fixed, a rebuild would restore old data.",
    )),
    "restore-gate": ("Alert: the restore gate holds an app", (
        "See \"Rebuild everything from Git and backups\", step 4: the status ConfigMap and the Job's log say which "
        "backup is missing or why the restore fails.",
    )),
    "datastore-backup": ("Alert: datastore backups are failing", (
        "`kubectl -n hkgen-backup get cronjobs,jobs` and the Job's log; on the control plane "
        "`journalctl -u hkgen-dqlite-backup`. See \"MicroK8s datastore backups\".",
    )),
    "zigbee": ("Alert: a Zigbee coordinator is unreachable", (
        "Satellite: is the Pi on (`ping`), does ser2net listen (`ss -ltn` on it), is the stick plugged in? USB "
        "stick on a node: is the node up and the stick seen (`ls /dev/serial/by-id`)?",
        "zigbee2mqtt stops when it loses its coordinator and restarts until it is back; "
        "`kubectl -n home-automation logs statefulset/zigbee2mqtt-<network>`.",
    )),
    "mqtt": ("Alert: Mosquitto is down", (
        "`kubectl -n home-automation get pods -l app.kubernetes.io/name=mosquitto` and its log; devices outside the "
        "cluster use the load-balancer address, so also check MetalLB (`kubectl -n metallb-system get pods`).",
    )),
    "postgres": ("Alert: a Postgres cluster is unhealthy", (
        "`kubectl get clusters.postgresql.cnpg.io -A` shows primary, replicas and the last backup; the operator "
        "promotes a replica by itself. WAL archiving or backups failing: check the S3 target and the barman-cloud "
        "plugin's log in cnpg-system.",
    )),
    "thanos": ("Alert: Thanos cannot store metrics", (
        "Compactor halted: its log names the overlapping or broken block; delete or mark it and restart the "
        "compactor. Uploads failing: check the S3 target and the `thanos-objstore` Secret.",
    )),
    "pi-health": ("Alert: a Pi is too hot or its SSD is wearing out", (
        "A Pi 4 throttles its CPU at 80 C: check the case fan, airflow and dust. An SSD with errors or little life "
        "left: replace it (Longhorn moves the replicas; see \"A node died: replace it\" for the disk).",
    )),
    "certificates": ("Alert: a certificate is about to expire", (
        "`kubectl get certificates -A` and `kubectl describe certificate <name>`; cert-manager renews 30 days "
        "before expiry, so an alert means renewal keeps failing (issuer, webhook, clock).",
    )),
    "gitops": ("Alert: GitOps cannot apply the cluster", (
        "Flux: `flux get kustomizations` and `flux get helmreleases -A`; Argo CD: `kubectl -n argocd get "
        "applications`. The message names what failed; the render of cluster.yaml that last changed it is in Git.",
    )),
}


@dataclass(frozen=True)
class Rule:
    """One alerting rule of hkgen's PrometheusRule."""

    group: str
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    runbook: str
    # What breaks (for `hkgen plan`): "node" for a dead Pi, else the component.
    failure: str
    labels: tuple[tuple[str, str], ...] = ()


def runbook_anchor(key: str) -> str:
    """GitHub's anchor of a RUNBOOKS heading (lower case, punctuation dropped, spaces to '-')."""
    heading = RUNBOOKS[key][0].lower()
    return re.sub(r"[^a-z0-9 _-]", "", heading).replace(" ", "-")


def duration_seconds(text: str) -> int:
    """Seconds of a Prometheus duration such as '90s', '5m', '2h', '1d'."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(text[:-1]) * units[text[-1]]


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(x) for x in body.split("-"))
        else:
            start = end = int(body)
            if step_text:
                end = high
        values.update(range(start, end + 1, step))
    return values


def cron_max_gap_seconds(cron: str) -> int:
    """The longest time between two runs of a 5-field cron schedule, over one week (minute steps).

    Day-of-month and month fields are read as '*' (hkgen's schedules are daily or more often; a
    monthly one would make a backup-age alert pointless anyway).
    """
    minute, hour, _dom, _month, dow = cron.split()
    minutes = _cron_field(minute, 0, 59)
    hours = _cron_field(hour, 0, 23)
    days = {d % 7 for d in _cron_field(dow.replace("*", "0-6"), 0, 7)}
    runs = sorted(d * 1440 + h * 60 + m for d in days for h in hours for m in minutes)
    if not runs:
        return 7 * 86400
    gaps = [b - a for a, b in pairwise(runs)] + [runs[0] + 7 * 1440 - runs[-1]]
    return max(gaps) * 60


def _re(names: list[str]) -> str:
    """A PromQL regex alternation of Kubernetes names (DNS labels: nothing to escape)."""
    for n in names:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", n):
            raise ValueError(f"not a Kubernetes name: {n!r}")  # a bug in hkgen: names are validated
    return "|".join(n.replace(".", "\\\\.") for n in names)


def _state(metric: str, state: str, code: int, extra: str = "") -> str:
    """Both Longhorn forms of a state metric: `{state="x"} == 1` and the numeric code."""
    sep = "," if extra else ""
    return f'({metric}{{state="{state}"{sep}{extra}}} == 1) or ({metric}{{state=""{sep}{extra}}} == {code})'


def _critical_pvcs(cluster: Cluster) -> list[tuple[str, str]]:
    """(namespace, pvc) of every critical volume of a StatefulSet hkgen renders itself."""
    from ..analysis.capacity import all_workloads
    from ..config.catalogue import CUSTOM_NAMESPACE, load_catalogue

    catalogue = load_catalogue()
    out = []
    for w in all_workloads(cluster):
        spec = catalogue.get(w.app)
        if w.kind != "StatefulSet" or (spec is not None and spec.releases):
            continue
        namespace = spec.namespace if spec is not None else CUSTOM_NAMESPACE
        out += [(namespace, f"{v.name}-{w.name}-{i}") for v in w.volumes if v.backup_class == "critical"
                for i in range(w.replicas)]
    return sorted(set(out))


def _postgres_clusters(cluster: Cluster) -> list[tuple[str, str, bool]]:
    """(namespace, CloudNativePG cluster, backed up off-site) of every database hkgen renders."""
    from .restore import postgres_clusters

    return [(db.namespace, db.cluster, cluster.backup is not None and db.critical) for db in postgres_clusters(cluster)]


def _node_rules(cluster: Cluster) -> list[Rule]:
    rules = [Rule(
        "hkgen-nodes", "HkgenNodeNotReady",
        'kube_node_status_condition{condition="Ready",status="true"} == 0', "2m", "critical",
        "Node {{ $labels.node }} is not ready",
        "Kubernetes has not heard from {{ $labels.node }} (or it reports not ready) for 2 minutes; its pods are "
        "moving to other nodes.", "node", "node")]
    voters = [n.hostname for n in cluster.voters]
    if len(voters) > 1:
        rules.append(Rule(
            "hkgen-nodes", "HkgenControlPlaneDegraded",
            f'(count(kube_node_status_condition{{condition="Ready",status="true",node=~"{_re(voters)}"}} == 1) '
            f"or vector(0)) < {len(voters)}", "2m", "critical",
            "Only {{ $value }} of " + str(len(voters)) + " control planes are ready",
            "The dqlite voters (" + ", ".join(voters) + ") keep the cluster's datastore; losing "
            "one more of them stops the Kubernetes API.", "control-plane", "node"))
    # Pi 4 firmware throttles the CPU at 80 C (and harder at 85 C).
    rules += [
        Rule("hkgen-nodes", "HkgenPiTooHot", "max by (node) (node_thermal_zone_temp) > 75", "15m", "warning",
             "{{ $labels.node }} runs at {{ $value }} C",
             "The Pi has been above 75 C for 15 minutes; at 80 C it throttles its CPU.", "pi-health", "temperature"),
        Rule("hkgen-nodes", "HkgenPiThrottling", "max by (node) (node_thermal_zone_temp) >= 80", "5m", "critical",
             "{{ $labels.node }} is throttling at {{ $value }} C",
             "The Pi has been at or above 80 C for 5 minutes: its CPU runs slower and pods miss deadlines.",
             "pi-health", "temperature"),
    ]
    return rules


def _storage_rules(cluster: Cluster) -> list[Rule]:
    robust = "longhorn_volume_robustness"
    rules = [
        Rule("hkgen-storage", "HkgenVolumeDegraded", _state(robust, "degraded", 2), "10m", "warning",
             "Volume {{ $labels.pvc_namespace }}/{{ $labels.pvc }} has lost a replica",
             "Longhorn volume {{ $labels.volume }} has been degraded for 10 minutes; it rebuilds the replica on "
             "another storage node.", "volume", "node"),
        Rule("hkgen-storage", "HkgenVolumeFaulted", _state(robust, "faulted", 3), "1m", "critical",
             "Volume {{ $labels.pvc_namespace }}/{{ $labels.pvc }} is faulted",
             "Longhorn volume {{ $labels.volume }} has no usable replica: its app cannot run.", "volume", "storage"),
        Rule("hkgen-storage", "HkgenReplicaRebuildStuck", _state(robust, "degraded", 2), "2h", "critical",
             "Volume {{ $labels.pvc_namespace }}/{{ $labels.pvc }} has been degraded for 2 hours",
             "A replica rebuild of {{ $labels.volume }} has not finished in 2 hours; another disk failure would "
             "lose the volume.", "volume", "storage"),
        Rule("hkgen-storage", "HkgenNodeStorageAlmostFull",
             "longhorn_node_storage_usage_bytes / longhorn_node_storage_capacity_bytes > 0.8", "15m", "warning",
             "Longhorn storage on {{ $labels.node }} is {{ $value | humanizePercentage }} full",
             "Longhorn stops placing replicas on a full disk; rebuilds after a node loss need the room.",
             "storage-full", "storage"),
    ]
    if cluster.backup is not None:
        gap = cron_max_gap_seconds(cluster.backup.backup_cron)
        # A nightly backup of a few GiB from a Pi takes up to a few hours: allow that on top of the gap.
        allowed = gap + 3 * 3600
        rules += [
            Rule("hkgen-backups", "HkgenBackupFailed", _state("longhorn_backup_state", "Error", 4), "5m", "warning",
                 "Backup {{ $labels.backup }} of volume {{ $labels.volume }} failed",
                 "A Longhorn backup to the S3 target ended in an error.", "backups", "backups"),
            Rule("hkgen-backups", "HkgenBackupTooOld",
                 f"(time() - longhorn_volume_last_backup_at > {allowed}) and (longhorn_volume_last_backup_at > 0)",
                 "15m", "critical",
                 "The last backup of {{ $labels.pvc_namespace }}/{{ $labels.pvc }} is older than "
                 + _duration(allowed),
                 f"Backups run on `{cluster.backup.backup_cron}`; the newest backup of {{{{ $labels.volume }}}} is "
                 "older than that allows.", "backups", "backups"),
        ]
        pvcs = [pvc for _ns, pvc in _critical_pvcs(cluster)]
        if pvcs:
            rules.append(Rule(
                "hkgen-backups", "HkgenBackupMissing",
                f'longhorn_volume_last_backup_at{{pvc=~"{_re(pvcs)}"}} == 0', _duration(allowed), "critical",
                "Volume {{ $labels.pvc_namespace }}/{{ $labels.pvc }} has never been backed up",
                "A critical volume has no backup at all: a rebuild would start its app empty.", "backups", "backups"))
    return rules


def _restore_rules(cluster: Cluster) -> list[Rule]:
    from . import restore

    rules: list[Rule] = []
    if cluster.backup is None:
        return rules
    jobs = [v.job for v in restore.gated_volumes(cluster)] + [d.job for d in restore.gated_databases(cluster)]
    if jobs:
        rules.append(Rule(
            "hkgen-backups", "HkgenRestoreGateBlocked",
            f'kube_job_status_succeeded{{job_name=~"{_re(jobs)}"}} == 0', "30m", "critical",
            "The restore gate {{ $labels.namespace }}/{{ $labels.job_name }} holds its app",
            "The gate Job has not succeeded for 30 minutes: the app waits for its volume or database to be "
            "restored (or marked new).", "restore-gate", "restore"))
    # Every CronJob in the backup namespace is a control plane's datastore upload.
    selector = f'namespace="{restore.BACKUP_NAMESPACE}"'
    stale = 3 * 3600  # three hourly uploads missed
    rules += [
        Rule("hkgen-backups", "HkgenDatastoreBackupFailed",
             f"(kube_cronjob_status_last_schedule_time{{{selector}}} "
             f"- kube_cronjob_status_last_successful_time{{{selector}}}) > 0",
             "30m", "warning", "Datastore backup upload {{ $labels.cronjob }} is failing",
             "The last run of the CronJob has not succeeded for 30 minutes.", "datastore-backup", "datastore"),
        Rule("hkgen-backups", "HkgenDatastoreBackupStale",
             f"time() - kube_cronjob_status_last_successful_time{{{selector}}} > {stale}", "15m", "warning",
             "No datastore backup upload from {{ $labels.cronjob }} for 3 hours",
             "The control plane's datastore archives have not reached the S3 target for 3 hours.",
             "datastore-backup", "datastore"),
    ]
    return rules


def _home_rules(cluster: Cluster) -> list[Rule]:
    rules: list[Rule] = []
    if cluster.app("zigbee2mqtt"):
        # ser2net runs with kickolduser: a probe of its port would throw zigbee2mqtt off the stick, so
        # the satellite is probed on its SSH port, and the coordinator itself through the bridge below.
        if any(net.satellite is not None for net in cluster.zigbee):
            rules.append(Rule(
                "hkgen-home", "HkgenZigbeeSatelliteUnreachable",
                f'probe_success{{job="{BLACKBOX_JOB}",probe="zigbee-satellite"}} == 0', "2m", "critical",
                "Zigbee satellite {{ $labels.satellite }} is unreachable",
                "Nothing answers on {{ $labels.instance }}: the coordinator of network {{ $labels.zigbee_network }} "
                "is cut off.", "zigbee", "zigbee"))
        names = [f"zigbee2mqtt-{net.name}" for net in cluster.zigbee]
        if names:
            rules.append(Rule(
                "hkgen-home", "HkgenZigbeeBridgeOffline",
                f'kube_statefulset_status_replicas_ready{{namespace="home-automation",statefulset=~"{_re(names)}"}} '
                "< 1", "5m", "critical", "zigbee2mqtt {{ $labels.statefulset }} is offline",
                "The bridge has not been ready for 5 minutes (it stops when it loses its coordinator or MQTT).",
                "zigbee", "node"))
    if cluster.app("mosquitto"):
        rules += [
            Rule("hkgen-home", "HkgenMosquittoDown",
                 'kube_statefulset_status_replicas_ready{namespace="home-automation",statefulset="mosquitto"} < 1',
                 "3m", "critical", "Mosquitto is down",
                 "The MQTT broker has not been ready for 3 minutes: zigbee2mqtt and Home Assistant cannot talk.",
                 "mqtt", "node"),
            Rule("hkgen-home", "HkgenMosquittoUnreachable",
                 f'probe_success{{job="{BLACKBOX_JOB}",probe="mosquitto"}} == 0', "3m", "critical",
                 "Mosquitto is unreachable on {{ $labels.instance }}",
                 "Devices on the LAN cannot reach the broker's load-balancer address.", "mqtt", "mqtt"),
        ]
    return rules


def _postgres_rules(cluster: Cluster) -> list[Rule]:
    rules: list[Rule] = []
    gap = cron_max_gap_seconds(cluster.backup.backup_cron) + 3 * 3600 if cluster.backup else 0
    for namespace, name, backed_up in _postgres_clusters(cluster):
        pods = f'namespace="{namespace}",pod=~"{_re([name])}-[0-9]+"'
        labels = (("cnpg_cluster", name), ("namespace", namespace))
        rules += [
            Rule("hkgen-postgres", "HkgenPostgresNoPrimary", f"absent(cnpg_pg_replication_in_recovery{{{pods}}} == 0)",
                 "2m", "critical", f"Postgres {name} has no primary",
                 f"No instance of {namespace}/{name} runs as primary: its app cannot write.", "postgres", "node",
                 labels),
            Rule("hkgen-postgres", "HkgenPostgresReplicaLag", f"cnpg_pg_replication_lag{{{pods}}} > 300", "10m",
                 "warning", f"Postgres {name} replica {{{{ $labels.pod }}}} lags {{{{ $value }}}} s",
                 "A replica is more than 5 minutes behind its primary.", "postgres", "postgres", labels),
        ]
        if backed_up:
            rules += [
                Rule("hkgen-postgres", "HkgenPostgresWalArchivingFailing",
                     f"rate(cnpg_pg_stat_archiver_failed_count{{{pods}}}[10m]) > 0 "
                     f"and rate(cnpg_pg_stat_archiver_archived_count{{{pods}}}[10m]) == 0",
                     "15m", "critical", f"Postgres {name} cannot archive WAL",
                     "WAL files are not reaching the S3 target: point-in-time recovery falls behind and the "
                     "primary's disk fills.", "postgres", "postgres", labels),
                Rule("hkgen-postgres", "HkgenPostgresBackupTooOld",
                     f"time() - max(barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{pods}}}) > {gap}",
                     "15m", "critical", f"The last base backup of Postgres {name} is older than {_duration(gap)}",
                     f"Scheduled backups of {namespace}/{name} are not completing.", "postgres", "backups", labels),
            ]
    return rules


def _thanos_rules(cluster: Cluster) -> list[Rule]:
    mon = cluster.app("monitoring")
    if mon is None or not mon.settings.get("thanos") or cluster.backup is None:
        return []
    return [
        Rule("hkgen-monitoring", "HkgenThanosCompactorHalted", "thanos_compact_halted == 1", "5m", "warning",
             "The Thanos compactor has halted",
             "Old metrics are no longer compacted or deleted in the S3 target.", "thanos", "thanos"),
        Rule("hkgen-monitoring", "HkgenThanosUploadsFailing", "increase(thanos_shipper_upload_failures_total[1h]) > 0",
             "15m", "warning", "The Thanos sidecar cannot upload blocks",
             "Metrics older than Prometheus' local retention will be lost.", "thanos", "thanos"),
    ]


def _disk_rules(cluster: Cluster) -> list[Rule]:
    if not cluster.storage_nodes:
        return []
    wear = "Wear_Leveling_Count|Percent_Lifetime_Remain|SSD_Life_Left|Media_Wearout_Indicator"
    errors = "Reallocated_Sector_Ct|Reported_Uncorrect|Offline_Uncorrectable|Current_Pending_Sector"
    return [
        Rule("hkgen-disks", "HkgenSsdFailing", "smartctl_device_smart_status != 1", "5m", "critical",
             "SSD {{ $labels.device }} on {{ $labels.node }} fails its SMART check",
             "The drive says it is failing: replace it before Longhorn loses replicas on it.", "pi-health", "disk"),
        Rule("hkgen-disks", "HkgenSsdWornOut",
             f'(smartctl_device_attribute{{attribute_name=~"{wear}",attribute_value_type="value"}} <= 10) '
             "or (smartctl_device_percentage_used >= 90)", "1h", "warning",
             "SSD {{ $labels.device }} on {{ $labels.node }} is nearly worn out",
             "The drive has 10 % or less of its rated writes left.", "pi-health", "disk"),
        Rule("hkgen-disks", "HkgenSsdErrors",
             f'(smartctl_device_attribute{{attribute_name=~"{errors}",attribute_value_type="raw"}} > 0) '
             "or (smartctl_device_media_errors > 0)", "15m", "warning",
             "SSD {{ $labels.device }} on {{ $labels.node }} reports errors",
             "Reallocated, pending or uncorrectable sectors (or media errors): the drive is wearing out.",
             "pi-health", "disk"),
    ]


def _certificate_rules(cluster: Cluster) -> list[Rule]:
    return [
        Rule("hkgen-platform", "HkgenCertificateExpiring",
             "certmanager_certificate_expiration_timestamp_seconds - time() < 7 * 86400", "1h", "warning",
             "Certificate {{ $labels.namespace }}/{{ $labels.name }} expires within 7 days",
             "cert-manager has not renewed it; services using it will fail when it expires.", "certificates",
             "certificates"),
        Rule("hkgen-platform", "HkgenCertificateNotReady",
             'certmanager_certificate_ready_status{condition="False"} == 1', "30m", "warning",
             "Certificate {{ $labels.namespace }}/{{ $labels.name }} is not ready",
             "cert-manager cannot issue or renew it.", "certificates", "certificates"),
    ]


def _gitops_rules(cluster: Cluster) -> list[Rule]:
    from .gitops import FLUX_TIMING

    if cluster.engine != "flux":
        return [Rule(
            "hkgen-gitops", "HkgenGitopsSyncFailing",
            'argocd_app_info{health_status=~"Degraded|Missing"} == 1', "30m", "warning",
            "Argo CD application {{ $labels.name }} is {{ $labels.health_status }}",
            "The application has not been healthy for longer than the slowest layer may take.", "gitops", "gitops")]
    rules = []
    for layer, timing in FLUX_TIMING.items():
        rules.append(Rule(
            "hkgen-gitops", "HkgenGitopsSyncFailing",
            f'gotk_resource_info{{customresource_kind="Kustomization",name="{layer}",ready="False"}} == 1',
            timing.timeout, "warning", f"Flux cannot apply the {layer} layer",
            f"Kustomization flux-system/{layer} has not been ready for longer than its timeout ({timing.timeout}).",
            "gitops", "gitops", (("layer", layer),)))
    rules.append(Rule(
        "hkgen-gitops", "HkgenHelmReleaseFailing",
        'gotk_resource_info{customresource_kind="HelmRelease",ready="False"} == 1', "20m", "warning",
        "Helm release {{ $labels.exported_namespace }}/{{ $labels.name }} is failing",
        "The release has not been ready for longer than the longest release timeout (15 minutes).", "gitops",
        "gitops"))
    return rules


def rules(cluster: Cluster) -> list[Rule]:
    """Every hkgen alert rule for `cluster` (none without alerting)."""
    if not cluster.alerting:
        return []
    return [*_node_rules(cluster), *_storage_rules(cluster), *_restore_rules(cluster), *_home_rules(cluster),
            *_postgres_rules(cluster), *_thanos_rules(cluster), *_disk_rules(cluster),
            *_certificate_rules(cluster), *_gitops_rules(cluster)]


def runbook_url(cluster: Cluster, key: str) -> str:
    """Browser link to a runbook section of the cluster's RECOVERY.md."""
    base = cluster.alerts.runbook_url if cluster.alerts is not None else None
    if base is None:
        base = _browsable(cluster.repo_url, cluster.repo_branch, f"clusters/{cluster.name}/RECOVERY.md")
    return f"{base}#{runbook_anchor(key)}"


def _browsable(url: str, branch: str, path: str) -> str:
    """https://<host>/<owner>/<repo>/blob/<branch>/<path> for the usual Git hosts' clone URLs."""
    match = re.match(r"^(?:https://|ssh://)(?:[^@/]+@)?([^/:]+)(?::\d+)?/(.+?)(?:\.git)?/?$", url)
    if match is None:
        return path
    host, repo = match.groups()
    return f"https://{host}/{repo}/blob/{branch}/{path}"


def rule_groups(cluster: Cluster) -> list[dict[str, Any]]:
    """The `spec.groups` of hkgen's PrometheusRule: plain data, in a stable order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rules(cluster):
        labels = {"severity": r.severity, ORIGIN_LABEL[0]: ORIGIN_LABEL[1], "failure": r.failure, **dict(r.labels)}
        groups.setdefault(r.group, []).append({
            "alert": r.alert, "expr": r.expr, "for": r.for_, "labels": labels,
            "annotations": {"summary": r.summary, "description": r.description,
                            "runbook_url": runbook_url(cluster, r.runbook)},
        })
    return [{"name": name, "rules": items} for name, items in groups.items()]
