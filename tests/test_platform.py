"""The platform layer (issue 5): Longhorn with the settings failover and storage depend on, its
backup target, recurring jobs and storage classes, priority classes, the CloudNativePG operator
and its backup plugin, the ingress address, node labels, and MicroK8s facts kept in one place."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import need_path, tools
from hkgen.areas import platform, restore
from hkgen.areas.parts import Component
from hkgen.config.load import load_text
from hkgen.config.model import Cluster
from hkgen.validation.validate import validate_document

# Upstream chart sources for offline checks (read-only reference data outside the repository).
SHARED_CHARTS = Path(os.environ.get("HKGEN_SHARED_CHARTS", Path(__file__).resolve().parents[2] / "shared" / "charts"))


def cluster_from(repo: Path, edit: dict[str, str] | None = None) -> Cluster:
    """The reference cluster, with plain-text replacements applied to cluster.yaml."""
    text = (repo / "clusters" / "home" / "cluster.yaml").read_text()
    for old, new in (edit or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    result = validate_document(load_text(text, "cluster.yaml"))
    assert result.cluster is not None, [p.format() for p in result.errors]
    return result.cluster


def by_name(components: list[Component]) -> dict[str, Component]:
    return {c.name: c for c in components}


def release(components: list[Component], name: str) -> Any:
    return next(r for c in components for r in c.releases if r.name == name)


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: dict(v) if hasattr(v, "items") else list(v)))


@pytest.fixture(scope="module")
def home() -> Cluster:
    return cluster_from(Path(__file__).resolve().parents[1])


def test_layers_hold_what_the_order_needs(home: Cluster) -> None:
    comps = by_name([*platform.components(home), *restore.components(home)])
    assert {n for n, c in comps.items() if c.layer == "crds"} == {"namespaces", "priority-classes", "node-labels",
                                                                  "prometheus-crds"}
    assert {n for n, c in comps.items() if c.layer == "controllers"} == {
        "cert-manager", "longhorn", "cloudnative-pg", "barman-cloud", "ingress-address", "dqlite-backup"}
    assert {n for n, c in comps.items() if c.layer == "configs"} == {"longhorn-config", "restore-gate"}
    # The backup plugin needs the operator and cert-manager first (Flux dependsOn, Argo CD waves).
    assert set(comps["barman-cloud"].depends_on) == {"cloudnative-pg", "cert-manager"}
    assert comps["barman-cloud"].releases[0].namespace == comps["cloudnative-pg"].releases[0].namespace


def test_longhorn_values_carry_the_promised_settings(home: Cluster) -> None:
    values = plain(release(platform.components(home), "longhorn").values)
    assert values["csi"]["kubeletRootDir"] == "/var/snap/microk8s/common/var/lib/kubelet"
    assert values["preUpgradeChecker"]["jobEnabled"] is False
    settings = values["defaultSettings"]
    assert settings["createDefaultDiskLabeledNodes"] is True
    assert settings["defaultDataPath"] == home.data_path
    assert settings["defaultReplicaCount"] == {"v1": "3", "v2": "3"}
    assert settings["nodeDownPodDeletionPolicy"] == "delete-both-statefulset-and-deployment-pod"
    assert settings["replicaAutoBalance"] == "best-effort"
    assert settings["storageOverProvisioningPercentage"] == home.over_provisioning_percent
    assert settings["storageReservedPercentageForDefaultDisk"] == home.reserved_percent
    assert settings["storageMinimalAvailablePercentage"] >= 10
    store = values["defaultBackupStore"]
    assert store["backupTarget"] == "s3://home-cluster-backups@eu-central-1/home/longhorn/"
    assert store["backupTargetCredentialSecret"] == platform.BACKUP_SECRET
    assert values["persistence"]["createStorageClass"] is False  # hkgen's three classes replace it


def _chart_keys(values: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    keys = set()
    if isinstance(values, dict):
        for k, v in values.items():
            keys.add((*prefix, k))
            keys |= _chart_keys(v, (*prefix, k))
    return keys


def _unknown_keys(ours: Any, chart: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    """Keys we set that the chart's values.yaml does not define (a map the chart leaves empty or
    null is free-form below)."""
    out = []
    for k, v in ours.items():
        if k not in chart:
            out.append(".".join((*prefix, k)))
        elif isinstance(v, dict) and isinstance(chart[k], dict) and chart[k]:
            out += _unknown_keys(v, chart[k], (*prefix, k))
    return out


@pytest.mark.parametrize("version", ["1.12.1", "1.10.2"])
def test_longhorn_values_exist_in_the_chart(home: Cluster, version: str) -> None:
    import yaml

    chart = SHARED_CHARTS / f"longhorn-{version}" / "values.yaml"
    need_path(chart, f"the Longhorn {version} chart")
    defined = yaml.safe_load(chart.read_text())
    charts = {**home.versions["charts"], "longhorn": version}
    pinned = dataclasses.replace(home, versions={**home.versions, "charts": charts})
    ours = plain(release(platform.components(pinned), "longhorn").values)
    assert _unknown_keys(ours, defined) == []
    # A misspelt key is caught by the same comparison (the check can fail).
    assert _unknown_keys({"csi": {"kubeletRootDirectory": "/x"}}, defined) == ["csi.kubeletRootDirectory"]


def test_cloudnative_pg_values_exist_in_the_chart(home: Cluster) -> None:
    import yaml

    chart = SHARED_CHARTS / "cloudnative-pg-0.29.0" / "values.yaml"
    need_path(chart, "the CloudNativePG chart")
    assert _unknown_keys(plain(release(platform.components(home), "cloudnative-pg").values),
                         yaml.safe_load(chart.read_text())) == []


def _file(comp: Component, name: str) -> Any:
    return next(f for f in comp.files if f.path.name == name)


def test_storage_classes_select_their_recurring_job_groups(home: Cluster) -> None:
    config = by_name(platform.components(home))["longhorn-config"]
    classes = {c["name"]: c for c in plain(_file(config, "storage-classes.yaml").context)["classes"]}
    assert set(classes) == {"longhorn-critical", "longhorn-local", "longhorn-none"}
    for backup_class in ("critical", "local", "none"):
        sc = classes[platform.storage_class(backup_class)]
        assert json.loads(sc["parameters"]["recurringJobSelector"]) == [{"name": backup_class, "isGroup": True}]
        assert sc["parameters"]["numberOfReplicas"] == "3"
    assert [n for n, c in classes.items() if c["default"]] == ["longhorn-local"]
    assert classes["longhorn-none"]["reclaimPolicy"] == "Delete"
    assert classes["longhorn-critical"]["reclaimPolicy"] == classes["longhorn-local"]["reclaimPolicy"] == "Retain"
    jobs = {j["name"]: j for j in plain(_file(config, "recurring-jobs.yaml").context)["jobs"]}
    assert jobs["snapshot"] | {} == {"name": "snapshot", "task": "snapshot", "cron": "0 * * * *", "retain": 24,
                                     "concurrency": 2, "groups": ["critical", "local"]}
    assert jobs["backup"]["cron"] == "30 2 * * *" and jobs["backup"]["retain"] == 14
    assert jobs["backup"]["groups"] == ["critical"]
    # No job may use Longhorn's implicit `default` group: longhorn-none volumes would get it.
    assert all("default" not in j["groups"] for j in jobs.values())


def test_without_backup_target_there_is_no_backup_anything(repo: Path) -> None:
    text = (repo / "clusters" / "home" / "cluster.yaml").read_text()
    start = text.index("  backup:\n    s3:")
    end = text.index("    restoreOnRebuild: true\n") + len("    restoreOnRebuild: true\n")
    cluster = cluster_from(repo, {text[start:end]: "", "    thanos: true": "    thanos: false"})
    comps = by_name(platform.components(cluster))
    assert "barman-cloud" not in comps
    assert comps["longhorn"].files == ()
    assert "defaultBackupStore" not in plain(comps["longhorn"].releases[0].values)
    jobs = plain(_file(comps["longhorn-config"], "recurring-jobs.yaml").context)["jobs"]
    assert [j["name"] for j in jobs] == ["snapshot"]  # snapshots stay local, with the schema's defaults
    assert jobs[0]["cron"] == "0 * * * *" and jobs[0]["retain"] == 24
    classes = plain(_file(comps["longhorn-config"], "storage-classes.yaml").context)["classes"]
    assert all("backupTargetName" not in c["parameters"] for c in classes)


def test_backup_credentials_are_placeholders_only(home: Cluster) -> None:
    longhorn = by_name(platform.components(home))["longhorn"]
    ctx = plain(_file(longhorn, "backup-credentials.yaml").context)
    assert ctx["access_key_id"] == "${S3_ACCESS_KEY_ID}"
    assert ctx["secret_access_key"] == "${S3_SECRET_ACCESS_KEY}"  # noqa: S105 - a placeholder
    assert ctx["name"] == platform.BACKUP_SECRET


def test_cert_manager_addon_replaces_our_release(repo: Path) -> None:
    cluster = cluster_from(repo, {"    - name: ingress ": "    - name: cert-manager\n    - name: ingress "})
    comps = by_name(platform.components(cluster))
    assert "cert-manager" not in comps
    assert comps["barman-cloud"].depends_on == ("cloudnative-pg",)


def test_without_monitoring_no_prometheus_crds_nor_service_monitors(repo: Path) -> None:
    text = (repo / "clusters" / "home" / "cluster.yaml").read_text()
    start = text.index("  monitoring:\n    enabled: true")
    cluster = cluster_from(repo, {text[start:start + len("  monitoring:\n    enabled: true")]:
                                  "  monitoring:\n    enabled: false",
                                  "  grafana:\n    enabled: true": "  grafana:\n    enabled: false"})
    comps = by_name(platform.components(cluster))
    assert "prometheus-crds" not in comps
    assert plain(comps["longhorn"].releases[0].values)["metrics"]["serviceMonitor"]["enabled"] is False
    assert all("prometheus-crds" not in c.depends_on for c in comps.values())


def test_priority_classes_put_home_automation_above_monitoring() -> None:
    classes = {c["name"]: c for c in platform.PRIORITY_CLASSES}
    assert classes["home-critical"]["value"] > classes["home"]["value"] > classes["monitoring"]["value"] > 0
    assert classes["monitoring"]["preemption"] == "Never"
    assert [n for n, c in classes.items() if c["globalDefault"]] == ["home"]
    # Longhorn's own class (created by its chart) must stay above the house: storage first.
    assert classes["home-critical"]["value"] < 1_000_000_000


def test_microk8s_facts_live_only_in_the_distro_table(repo: Path) -> None:
    # Kubernetes manifests only: node seeds and runbooks are MicroK8s-specific by nature.
    for folder in ("templates/gitops", "templates/platform", "apps"):
        for path in (repo / folder).rglob("*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                assert "/var/snap/microk8s" not in text, path
                assert "nginx-ingress-microk8s" not in text, path
    assert platform.DISTRO["kubeletRootDir"] == "/var/snap/microk8s/common/var/lib/kubelet"
    for module in ("areas/gitops.py", "areas/workloads.py", "verify/k8s.py"):
        assert "/var/snap/microk8s" not in (repo / "generator" / "hkgen" / module).read_text(), module


def test_ingress_address_follows_the_addon_of_the_channel(repo: Path, home: Cluster) -> None:
    nginx = platform.distro(home)["ingressController"]
    assert dict(nginx["selector"]) == {"name": "nginx-ingress-microk8s"}
    traefik = platform.distro(cluster_from(repo, {"channel: 1.34/stable": "channel: 1.35/stable"}))["ingressController"]
    assert traefik["selector"]["app.kubernetes.io/name"] == "traefik" and traefik["https"] == "websecure"
    svc = _file(by_name(platform.components(home))["ingress-address"], "ingress-service.yaml")
    assert svc.context["address"] == home.ingress_ip == "192.168.10.201"
    without = dataclasses.replace(home, addons=tuple(a for a in home.addons if a[0] != "ingress"))
    assert "ingress-address" not in by_name(platform.components(without))


def test_node_label_commands(home: Cluster) -> None:
    lines = platform._node_commands(home)
    workers = "label 'w1 w2 w3 w4 w5 w6' node-role.kubernetes.io/worker= node.longhorn.io/create-default-disk=true"
    assert workers in lines
    assert "label cp1 node-role.kubernetes.io/control-plane= node.longhorn.io/create-default-disk=true" in lines
    assert "label 'cp2 cp3' node-role.kubernetes.io/control-plane= node.longhorn.io/create-default-disk-" in lines
    assert "taint 'cp2 cp3' node-role.kubernetes.io/control-plane:NoSchedule" in lines
    # Both directions, workers included (issue 19: join copies a tainted peer's kubelet arguments).
    assert "untaint 'cp1 w1 w2 w3 w4 w5 w6' node-role.kubernetes.io/control-plane:NoSchedule-" in lines


def test_multi_disk_nodes_get_a_disk_config_and_user_labels(repo: Path) -> None:
    cluster = cluster_from(repo, {
        "      - {id: usb-SanDisk_Extreme_55AE_323233304A303032-0:0, sizeGB: 256}\n":
        "      - {id: usb-SanDisk_Extreme_55AE_323233304A303032-0:0, sizeGB: 256}\n"
        "      - {id: usb-SanDisk_Extreme_55AE_323233304A30303X-0:0, sizeGB: 100}\n"
        "    labels: {home.arpa/room: hall}\n",
    })
    lines = platform._node_commands(cluster)
    assert ("label w2 home.arpa/room=hall node-role.kubernetes.io/worker= node.longhorn.io/create-default-disk=config"
            in lines)
    annotate = next(line for line in lines if line.startswith("annotate w2 "))
    config = json.loads(annotate.split("node.longhorn.io/default-disks-config=", 1)[1].rstrip("'"))
    assert [d["path"] for d in config] == ["/var/lib/longhorn", "/var/lib/longhorn-2"]
    assert config[1]["storageReserved"] == 100 * 10**9 * 10 // 100


def _script(cluster: Cluster) -> str:
    from hkgen.render.jinja import render_file

    comp = by_name(platform.components(cluster))["node-labels"]
    text = render_file(_file(comp, "script.yaml"), {"cluster": cluster, "components": ()}, "test").decode()
    import yaml

    return str(yaml.safe_load(text)["data"]["label-nodes.sh"])


@tools("bash")
def test_node_label_script_labels_only_joined_nodes(home: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "label-nodes.sh"
    script.write_text(_script(home))
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    # A stand-in for the API server: `get nodes` lists cp1, cp2 and w1 (the rest have not joined
    # yet); every other call is recorded. What is tested is the script's own logic.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    stub = bin_dir / "kubectl"
    # The taint listing (`get nodes -o jsonpath=...taints...`): cp1 and w1 carry the control-plane
    # taint they must not have (registered through a tainted peer's kubelet arguments), cp2 its own.
    taints = "cp1 node-role.kubernetes.io/control-plane\ncp2 node-role.kubernetes.io/control-plane\n" \
             "w1 node.kubernetes.io/unreachable node-role.kubernetes.io/control-plane\n"
    stub.write_text(f'#!/bin/bash\nif [ "$1 $2" = "get nodes" ] && [[ $* == *taints* ]]; then '
                    f'printf "{taints}"; exit 0; fi\n'
                    f'if [ "$1 $2" = "get nodes" ]; then echo -n "cp1 cp2 w1"; exit 0; fi\n'
                    f'echo "$*" >> {log}\n')
    stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert ("label nodes -l kubernetes.io/hostname in (w1) --overwrite node-role.kubernetes.io/worker= "
            "node.longhorn.io/create-default-disk=true") in calls
    assert ("label nodes -l kubernetes.io/hostname in (cp2) --overwrite node-role.kubernetes.io/control-plane= "
            "node.longhorn.io/create-default-disk-") in calls
    assert ("taint nodes -l kubernetes.io/hostname in (cp2) --overwrite "
            "node-role.kubernetes.io/control-plane:NoSchedule") in calls
    assert "taint node cp1 node-role.kubernetes.io/control-plane:NoSchedule-" in calls
    assert "taint node w1 node-role.kubernetes.io/control-plane:NoSchedule-" in calls  # both directions
    assert not any(c.startswith("taint node cp2 ") for c in calls)  # its own taint stays
    assert not any("w2" in c or "cp3" in c for c in calls)  # not joined: left for the next run


def test_namespaces_cover_every_component_but_not_the_distributions(home: Cluster) -> None:
    from hkgen.areas.workloads import components as app_components
    from hkgen.render.jinja import render_file

    comps = [*platform.components(home), *app_components(home)]
    import yaml

    ns_file = _file(by_name(comps)["namespaces"], "namespaces.yaml")
    text = render_file(ns_file, {"cluster": home, "components": tuple(comps)}, "test").decode()
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(text) if d}
    wanted = {c.namespace for c in comps} | {r.namespace for c in comps for r in c.releases}
    assert names == wanted - set(platform.RESERVED_NAMESPACES)
    assert {"longhorn-system", "cnpg-system", "cert-manager", "monitoring", "home-automation"} <= names
    assert not names & {"kube-system", "ingress", "flux-system", "argocd"}
