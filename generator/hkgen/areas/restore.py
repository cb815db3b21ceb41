"""Backups and restore as part of converge-from-Git: the MicroK8s datastore uploader and the
restore gate, as platform `Component`s (only when `storage.backup` is configured).

- `dqlite-backup` (controllers layer): on every control plane the seed's systemd timer runs
  `microk8s dbctl backup` into `DQLITE_DIR` every `DQLITE_EVERY_HOURS` hours (the seed template
  `cloud-init/user-data.j2` uses the same figures); one CronJob per control plane, pinned there,
  copies new archives to `<bucket>/<prefix>/dqlite/<node>/` and keeps the newest ones.
- `restore-gate` (configs layer, with `restoreOnRebuild`): one Job per volume in backup class
  `critical` of a StatefulSet hkgen renders, and one per CloudNativePG database with off-site
  backups. The configs layer waits for them (Flux `wait`, Argo CD wave 30), so the apps layer
  starts only after every volume is present, new (marker written) or restored, and every such
  database's Cluster exists: the gate creates it itself, from the two variants rendered here
  (`database_manifests`: a new database, or a recovery from its backup folder), because which one
  applies depends on the bucket, not on Git; see templates/platform/restore/restore-gate.sh.

What a gate needs to know about a volume (namespace, PVC name, marker key) is derived here, in
one place (`gated_volumes`, `gated_databases`); tests check it against the rendered StatefulSets
and CloudNativePG Clusters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..config.model import Cluster
from ..config.secrets import placeholder
from ..core.errors import ConfigError, Problem
from .parts import RECREATE_ANNOTATIONS, Component, OutputFile, freeze

__all__ = [
    "BACKUP_NAMESPACE",
    "DQLITE_DIR",
    "DQLITE_EVERY_HOURS",
    "DQLITE_KEEP_LOCAL",
    "STATUS_CONFIGMAP",
    "GatedDatabase",
    "GatedVolume",
    "components",
    "database_manifests",
    "dqlite_folder",
    "gated_databases",
    "gated_volumes",
    "marker_key",
    "server_name",
]

# The node side (seed template) uses the same folder, count and interval.
DQLITE_DIR = "/var/lib/hkgen/dqlite-backups"
DQLITE_KEEP_LOCAL = 4
DQLITE_EVERY_HOURS = 6
BACKUP_NAMESPACE = "hkgen-backup"
STATUS_CONFIGMAP = "hkgen-restore-status"
GATE_ACCOUNT = "hkgen-restore-gate"
S3_SECRET = "hkgen-backup-s3"  # noqa: S105 - the Secret's name; its values are placeholders
LONGHORN_NS = "longhorn-system"
BACKUP_TARGET = "default"  # the BackupTarget Longhorn keeps in step with the chart's defaultBackupStore
CNPG_TEMPLATE = "apps/_common/templates/cnpg-cluster.yaml.j2"
# The field manager of the gate's `kubectl create`. Flux's apply takes over the fields of managers
# whose names start with "kubectl" (fluxcd/pkg ssa: prefix match, operation Update), so the default
# "kubectl-create" would hand `bootstrap` to Flux, whose next apply would drop it.
GATE_FIELD_MANAGER = "hkgen-restore-gate"
VARIANTS = ("initdb", "recovery")
# A restore of a few GiB from the Internet on a Pi takes minutes; one attempt waits this long, the
# next attempt (the Job retries) picks up the same Longhorn volume and keeps waiting.
RESTORE_TIMEOUT_SECONDS = 1800
# A finished gate Job is deleted after this long; the engine then re-creates it from Git, so the
# gate runs again (a volume deleted meanwhile is restored before its app gets it back).
GATE_TTL_SECONDS = 900
# Job backoff doubles from 10 s to at most 6 minutes: about 40 days of attempts, and after that
# the TTL and the engine start a new Job. No gate ever gives up and lets an app start empty.
GATE_BACKOFF_LIMIT = 10000


@dataclass(frozen=True)
class GatedVolume:
    """A critical volume of a StatefulSet replica that must exist, be new or be restored."""

    app: str
    namespace: str
    statefulset: str
    claim_template: str
    ordinal: int
    storage_class: str
    recurring_group: str

    @property
    def pvc(self) -> str:
        """The claim the StatefulSet controller creates: `<template>-<statefulset>-<ordinal>`."""
        return f"{self.claim_template}-{self.statefulset}-{self.ordinal}"

    @property
    def job(self) -> str:
        """Name of the gate Job (at most 63 characters, the `job-name` label limit)."""
        return _short(f"restore-{self.pvc}", 63)

    @property
    def volume_prefix(self) -> str:
        """Longhorn volume names of restores: this prefix and the backup's id (16 hex digits)."""
        return _short(self.pvc, 40)


@dataclass(frozen=True)
class GatedDatabase:
    """A CloudNativePG cluster with off-site backups, whose Cluster object the gate creates."""

    app: str
    namespace: str
    cluster: str
    database: str  # the application database (and owner) its bootstrap names
    params: tuple[tuple[str, Any], ...]  # the app file's template parameters

    @property
    def job(self) -> str:
        """Name of the gate Job."""
        return _short(f"restore-db-{self.cluster}", 63)

    @property
    def configmap(self) -> str:
        """The ConfigMap holding the Cluster's two variants, mounted by the gate Job."""
        return _short(f"hkgen-restore-db-{self.cluster}", 63)


def _short(name: str, limit: int) -> str:
    """`name` if it fits, else a prefix and a hash of the whole (stable, still unique)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:limit - 9].rstrip('-.')}-{digest}"


def server_name(database: str) -> str:
    """Folder of a CloudNativePG cluster's backups under `<prefix>/postgres/` (barman serverName).

    Always the Cluster's own name (barman's default): every incarnation archives there. One
    recovered from it continues on a new timeline, higher than any in the archive, so its WAL
    never overwrites an earlier incarnation's (RECOVERY.md).
    """
    return database


def marker_key(cluster: Cluster, namespace: str, pvc: str) -> str:
    """S3 key of the marker that says the volume existed (and is backed up)."""
    assert cluster.backup is not None  # noqa: S101 - callers check; a bug otherwise
    return f"{cluster.backup.prefix}/hkgen/volumes/{namespace}/{pvc}"


def dqlite_folder(cluster: Cluster, hostname: str) -> str:
    """S3 key prefix of one control plane's datastore archives."""
    assert cluster.backup is not None  # noqa: S101 - callers check; a bug otherwise
    return f"{cluster.backup.prefix}/dqlite/{hostname}/"


def _restoring(cluster: Cluster) -> bool:
    return cluster.backup is not None and cluster.backup.restore_on_rebuild


def gated_volumes(cluster: Cluster) -> list[GatedVolume]:
    """Every critical volume the restore gate covers, in a stable order.

    Raises ConfigError for a critical volume hkgen cannot name: a StatefulSet made by a Helm chart
    (its claim names are the chart's business), which would otherwise start empty after a rebuild.
    """
    if not _restoring(cluster):
        return []
    from ..analysis.capacity import all_workloads
    from ..config.catalogue import CUSTOM_NAMESPACE, load_catalogue

    catalogue = load_catalogue()
    out: list[GatedVolume] = []
    problems: list[Problem] = []
    for w in all_workloads(cluster):
        if w.kind != "StatefulSet":
            continue  # CloudNativePG clusters: gated_databases; Deployments keep no volumes
        spec = catalogue.get(w.app)
        for vol in w.volumes:
            if vol.backup_class != "critical":
                continue
            if spec is not None and spec.releases:
                problems.append(Problem(
                    cluster.source, 0, 0, f"$.apps.{w.app}.backupClass",
                    f"restoreOnRebuild cannot restore volume {vol.name} of {w.name}: a Helm chart of {w.app} "
                    "makes that StatefulSet, so hkgen does not know its claim names",
                    f"use backupClass local for {w.app}, or set storage.backup.restoreOnRebuild to false"))
                continue
            namespace = spec.namespace if spec is not None else CUSTOM_NAMESPACE
            out += [GatedVolume(w.app, namespace, w.name, vol.name, i, vol.storage_class, vol.backup_class)
                    for i in range(w.replicas)]
    if problems:
        raise ConfigError(problems)
    return sorted(out, key=lambda v: (v.namespace, v.pvc))


def gated_databases(cluster: Cluster) -> list[GatedDatabase]:
    """CloudNativePG clusters with off-site backups (the apps layer's copy has no `bootstrap`)."""
    if not _restoring(cluster):
        return []
    out = [GatedDatabase(db.app, db.namespace, db.cluster, str(dict(db.params)["database"]), db.params)
           for db in postgres_clusters(cluster) if db.critical]
    return sorted(out, key=lambda d: (d.namespace, d.cluster))


def database_manifests(cluster: Cluster, db: GatedDatabase) -> dict[str, str]:
    """The gated database's Cluster in the gate's two variants, by name (`initdb`, `recovery`):
    the app's own template with `variant` set, so both equal the apps layer's copy plus the start.
    """
    from .workloads import app_template_text

    return {v: app_template_text(cluster, db.app, CNPG_TEMPLATE, {**dict(db.params), "variant": v})
            for v in VARIANTS}


@dataclass(frozen=True)
class PostgresCluster:
    """A CloudNativePG cluster an enabled app renders (its `cnpg-cluster.yaml.j2` file)."""

    app: str
    namespace: str
    cluster: str
    critical: bool  # its volume's backup class is critical (backed up off-site when there is a target)
    params: tuple[tuple[str, Any], ...] = ()  # the app file's template parameters (name, workload, database)


def postgres_clusters(cluster: Cluster) -> list[PostgresCluster]:
    """Every CloudNativePG cluster hkgen renders for `cluster` (the restore gate and the alert rules)."""
    from ..config.catalogue import app_workloads, holds, load_catalogue, resolve

    catalogue = load_catalogue()
    out: list[PostgresCluster] = []
    for app in cluster.apps:
        if not app.enabled:
            continue
        spec = catalogue[app.name]
        kinds = {w.name: w for w in app_workloads(spec, app.settings, cluster)}
        for f in spec.files:
            params = {k: resolve(v, app.settings) for k, v in f.params}
            w = kinds.get(str(params.get("workload")))
            if f.template != CNPG_TEMPLATE or w is None or not holds(f.when, app.settings, cluster):
                continue
            out.append(PostgresCluster(app.name, spec.namespace, str(params["name"]),
                                       any(v.backup_class == "critical" for v in w.volumes),
                                       tuple(sorted(params.items()))))
    return sorted(out, key=lambda d: (d.namespace, d.cluster))


def _file(path: str, template: str, **context: Any) -> OutputFile:
    return OutputFile(PurePosixPath(path), f"core/platform/{template}", freeze(context))


def _s3_env(cluster: Cluster) -> Mapping[str, str]:
    assert cluster.backup is not None  # noqa: S101 - callers check; a bug otherwise
    return {"AWS_DEFAULT_REGION": cluster.backup.region, "AWS_ENDPOINT_URL": cluster.backup.endpoint,
            "BUCKET": cluster.backup.bucket}


def _credentials(namespaces: list[str]) -> OutputFile:
    return _file("credentials.yaml", "restore/credentials.yaml.j2", name=S3_SECRET, namespaces=namespaces,
                 access_key_id=placeholder("S3_ACCESS_KEY_ID"), secret_access_key=placeholder("S3_SECRET_ACCESS_KEY"))


def _dqlite(cluster: Cluster) -> Component:
    from .seeds import CONTROL_PLANE_TAINT

    assert cluster.backup is not None  # noqa: S101 - only planned with a backup target
    runs_per_day = 24 // DQLITE_EVERY_HOURS
    uploads = [{"node": n.hostname, "name": _short(f"hkgen-dqlite-upload-{n.hostname}", 52),
                "dest": dqlite_folder(cluster, n.hostname)} for n in cluster.control_planes]
    files = (
        _credentials([BACKUP_NAMESPACE]),
        _file("script.yaml", "dqlite-backup/script.yaml.j2", namespace=BACKUP_NAMESPACE),
        _file("cronjobs.yaml", "dqlite-backup/cronjobs.yaml.j2", namespace=BACKUP_NAMESPACE, uploads=uploads,
              source=DQLITE_DIR, keep=cluster.backup.backup_retain * runs_per_day, env=_s3_env(cluster),
              secret=S3_SECRET, taint=CONTROL_PLANE_TAINT, image=_image(cluster, "aws-cli")),
    )
    return Component(
        "dqlite-backup", "controllers", BACKUP_NAMESPACE, files=files,
        description=(f"MicroK8s datastore archives of every control plane (every {DQLITE_EVERY_HOURS} h) "
                     "copied to the S3 target."),
    )


def _image(cluster: Cluster, key: str) -> str:
    repos = {"aws-cli": "docker.io/amazon/aws-cli", "kubectl": "registry.k8s.io/kubectl"}
    return f"{repos[key]}:{cluster.version('images', key)}"


def _by_namespace(databases: list[GatedDatabase]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in databases:
        out.setdefault(d.namespace, []).append(d.cluster)
    return out


def _gate(cluster: Cluster) -> Component | None:
    volumes = gated_volumes(cluster)
    databases = gated_databases(cluster)
    if not volumes and not databases:
        return None
    assert cluster.backup is not None  # noqa: S101 - gated_* are empty without one
    prefix = cluster.backup.prefix
    jobs: list[dict[str, Any]] = []
    for v in volumes:
        jobs.append({"name": v.job, "namespace": v.namespace, "app": v.app, "env": {
            "GATE_KIND": "volume", "PVC": v.pvc, "POD": f"{v.statefulset}-{v.ordinal}",
            "MARKER": marker_key(cluster, v.namespace, v.pvc),
            "STORAGE_CLASS": v.storage_class, "RECURRING_GROUP": v.recurring_group,
            "VOLUME_PREFIX": v.volume_prefix, "REPLICAS": str(cluster.replicas),
            "LONGHORN_NAMESPACE": LONGHORN_NS, "BACKUP_TARGET": BACKUP_TARGET,
            "RESTORE_TIMEOUT": str(RESTORE_TIMEOUT_SECONDS), "POLL_SECONDS": "10",
        }})
    manifests: list[dict[str, Any]] = []
    for d in databases:
        jobs.append({"name": d.job, "namespace": d.namespace, "app": d.app, "manifests": d.configmap, "env": {
            "GATE_KIND": "database", "DB_CLUSTER": d.cluster, "DB_NAME": d.database,
            "ARCHIVE": f"{prefix}/postgres/{server_name(d.cluster)}/", "MANIFESTS": "/manifests",
            "FIELD_MANAGER": GATE_FIELD_MANAGER,
        }})
        manifests.append({"name": d.configmap, "namespace": d.namespace, "app": d.app,
                          "variants": database_manifests(cluster, d)})
    namespaces = sorted({j["namespace"] for j in jobs})
    common = {"account": GATE_ACCOUNT, "status": STATUS_CONFIGMAP, "secret": S3_SECRET}
    files = (
        _file("rbac.yaml", "restore/rbac.yaml.j2", namespaces=namespaces, longhorn=LONGHORN_NS,
              volumes=bool(volumes), databases=_by_namespace(databases), **common),
        _credentials(namespaces),
        _file("script.yaml", "restore/script.yaml.j2", namespaces=namespaces),
        *([_file("databases.yaml", "restore/databases.yaml.j2", manifests=manifests)] if manifests else []),
        _file("jobs.yaml", "restore/jobs.yaml.j2", jobs=jobs, s3=_s3_env(cluster), ttl=GATE_TTL_SECONDS,
              backoff=GATE_BACKOFF_LIMIT, kubectl=_image(cluster, "kubectl"), aws=_image(cluster, "aws-cli"),
              recreate=RECREATE_ANNOTATIONS, **common),
    )
    return Component(
        "restore-gate", "configs", LONGHORN_NS, files=files, depends_on=("longhorn-config",),
        description="Holds the apps until every critical volume exists, is new, or is restored from its backup.",
    )


def components(cluster: Cluster) -> list[Component]:
    """Backup and restore components of `cluster` (none without `storage.backup`)."""
    if cluster.backup is None:
        return []
    out = [_dqlite(cluster)]
    gate = _gate(cluster)
    if gate is not None:
        out.append(gate)
    return out
