"""Alerts that reach the household (issue 21): hkgen's rendered alert rules pass `promtool check
rules`, and every hkgen alert has a `promtool test rules` unit test written here (synthetic series
that make it fire, and healthy series that keep it quiet), generated in tmp from the rendered
rules. The rendered Alertmanager configuration passes `amtool check-config`, and a real
Alertmanager on 127.0.0.1 routes a posted alert to a local webhook as configured.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pytest
from ruamel.yaml import YAML

from conftest import tools
from hkgen.areas import alert_rules
from hkgen.pipeline import Rendering, render_cluster

REPO = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
ALL_RECEIVERS = """alerts:
  heartbeat: {enabled: true, interval: 1m}
  receivers:
    homeAssistant: {enabled: true, notifyService: notify.mobile_app_phone}
    ntfy: {server: "https://ntfy.example.org", accessToken: true}
    email: {smarthost: "smtp.example.org:587", from: cluster@example.org, to: [us@example.org]}
    webhook: {}
"""

# alertname -> scenarios. Each scenario: input series (series, values), the evaluation time, and
# the labels the alert carries beyond the rule's own (None: it must stay quiet). `rule` picks one
# of several rules with the same name by a static label.
BRIDGE = 'kube_statefulset_status_replicas_ready{namespace="home-automation",statefulset="zigbee2mqtt-attic"}'
GATE = 'kube_job_status_succeeded{namespace="home-automation",job_name="restore-config-home-assistant-0"}'
SCHEDULED = 'kube_cronjob_status_last_schedule_time{namespace="hkgen-backup",cronjob="hkgen-dqlite-upload-cp1"}'
SUCCEEDED = 'kube_cronjob_status_last_successful_time{namespace="hkgen-backup",cronjob="hkgen-dqlite-upload-cp1"}'
SUCCEEDED2 = 'kube_cronjob_status_last_successful_time{namespace="hkgen-backup",cronjob="hkgen-dqlite-upload-cp2"}'
CASES: dict[str, list[dict[str, Any]]] = {
    "HkgenNodeNotReady": [
        {"series": [('kube_node_status_condition{condition="Ready",status="true",node="w1"}', "0x10")],
         "at": "5m", "labels": {"condition": "Ready", "status": "true", "node": "w1"}},
        {"series": [('kube_node_status_condition{condition="Ready",status="true",node="w1"}', "1x10")], "at": "5m"},
    ],
    "HkgenControlPlaneDegraded": [
        {"series": [('kube_node_status_condition{condition="Ready",status="true",node="cp1"}', "1x10"),
                    ('kube_node_status_condition{condition="Ready",status="true",node="cp2"}', "1x10"),
                    ('kube_node_status_condition{condition="Ready",status="true",node="cp3"}', "0x10")],
         "at": "5m", "labels": {}},
        {"series": [(f'kube_node_status_condition{{condition="Ready",status="true",node="{n}"}}', "1x10")
                    for n in ("cp1", "cp2", "cp3")], "at": "5m"},
    ],
    "HkgenPiTooHot": [
        {"series": [('node_thermal_zone_temp{node="w1",zone="0",type="cpu-thermal"}', "77x30")], "at": "20m",
         "labels": {"node": "w1"}},
        {"series": [('node_thermal_zone_temp{node="w1",zone="0",type="cpu-thermal"}', "60x30")], "at": "20m"},
    ],
    "HkgenPiThrottling": [
        {"series": [('node_thermal_zone_temp{node="w2",zone="0",type="cpu-thermal"}', "82x20")], "at": "10m",
         "labels": {"node": "w2"}},
        {"series": [('node_thermal_zone_temp{node="w2",zone="0",type="cpu-thermal"}', "77x20")], "at": "10m"},
    ],
    "HkgenVolumeDegraded": [
        {"series": [('longhorn_volume_robustness{state="degraded",volume="pvc-1",pvc="config-home-assistant-0",'
                     'pvc_namespace="home-automation",node="w1"}', "1x20")], "at": "15m",
         "labels": {"state": "degraded", "volume": "pvc-1", "pvc": "config-home-assistant-0",
                    "pvc_namespace": "home-automation", "node": "w1"}},
        # Longhorn before 1.10: one series with the state as a number.
        {"series": [('longhorn_volume_robustness{volume="pvc-1",pvc="p",pvc_namespace="ns",node="w1"}', "2x20")],
         "at": "15m", "labels": {"volume": "pvc-1", "pvc": "p", "pvc_namespace": "ns", "node": "w1"}},
        {"series": [('longhorn_volume_robustness{state="degraded",volume="pvc-1",pvc="p",pvc_namespace="ns"}', "0x20"),
                    ('longhorn_volume_robustness{state="healthy",volume="pvc-1",pvc="p",pvc_namespace="ns"}', "1x20")],
         "at": "15m"},
    ],
    "HkgenVolumeFaulted": [
        {"series": [('longhorn_volume_robustness{state="faulted",volume="pvc-2",pvc="p",pvc_namespace="ns"}', "1x5")],
         "at": "3m", "labels": {"state": "faulted", "volume": "pvc-2", "pvc": "p", "pvc_namespace": "ns"}},
        {"series": [('longhorn_volume_robustness{volume="pvc-2",pvc="p",pvc_namespace="ns"}', "3x5")], "at": "3m",
         "labels": {"volume": "pvc-2", "pvc": "p", "pvc_namespace": "ns"}},
        {"series": [('longhorn_volume_robustness{volume="pvc-2",pvc="p",pvc_namespace="ns"}', "2x5")], "at": "3m"},
    ],
    "HkgenReplicaRebuildStuck": [
        {"series": [('longhorn_volume_robustness{state="degraded",volume="v",pvc="p",pvc_namespace="ns"}', "1x200")],
         "at": "150m", "labels": {"state": "degraded", "volume": "v", "pvc": "p", "pvc_namespace": "ns"}},
        # A rebuild that finishes after an hour: quiet.
        {"series": [('longhorn_volume_robustness{state="degraded",volume="v",pvc="p",pvc_namespace="ns"}',
                     "1x60 0x140")], "at": "150m"},
    ],
    "HkgenNodeStorageAlmostFull": [
        {"series": [('longhorn_node_storage_usage_bytes{node="w5"}', "90x30"),
                    ('longhorn_node_storage_capacity_bytes{node="w5"}', "100x30")], "at": "20m",
         "labels": {"node": "w5"}},
        {"series": [('longhorn_node_storage_usage_bytes{node="w5"}', "50x30"),
                    ('longhorn_node_storage_capacity_bytes{node="w5"}', "100x30")], "at": "20m"},
    ],
    "HkgenBackupFailed": [
        {"series": [('longhorn_backup_state{state="Error",backup="b1",volume="v1"}', "1x10")], "at": "8m",
         "labels": {"state": "Error", "backup": "b1", "volume": "v1"}},
        {"series": [('longhorn_backup_state{backup="b1",volume="v1"}', "4x10")], "at": "8m",
         "labels": {"backup": "b1", "volume": "v1"}},
        {"series": [('longhorn_backup_state{state="Completed",backup="b1",volume="v1"}', "1x10"),
                    ('longhorn_backup_state{state="Error",backup="b1",volume="v1"}', "0x10")], "at": "8m"},
    ],
    # Nightly backups at 02:30: allowed age 24 h + 3 h. A backup at t=1h is too old at t=30h.
    "HkgenBackupTooOld": [
        {"series": [('longhorn_volume_last_backup_at{volume="v",pvc="p",pvc_namespace="ns"}', "3600x1800")],
         "at": "30h", "labels": {"volume": "v", "pvc": "p", "pvc_namespace": "ns"}},
        {"series": [('longhorn_volume_last_backup_at{volume="v",pvc="p",pvc_namespace="ns"}',
                     "3600x1200 86400x600")], "at": "30h"},
    ],
    "HkgenBackupMissing": [
        {"series": [('longhorn_volume_last_backup_at{volume="v",pvc="config-home-assistant-0",'
                     'pvc_namespace="home-automation"}', "0x1700")], "at": "28h",
         "labels": {"volume": "v", "pvc": "config-home-assistant-0", "pvc_namespace": "home-automation"}},
        # A volume that is not critical (not in the rule's list) never alerts.
        {"series": [('longhorn_volume_last_backup_at{volume="v",pvc="prometheus-db-0",pvc_namespace="monitoring"}',
                     "0x1700")], "at": "28h"},
    ],
    "HkgenRestoreGateBlocked": [
        {"series": [(GATE, "0x40")], "at": "35m",
         "labels": {"namespace": "home-automation", "job_name": "restore-config-home-assistant-0"}},
        {"series": [(GATE, "0x10 1x30")], "at": "35m"},
    ],
    "HkgenDatastoreBackupFailed": [
        {"series": [(SCHEDULED, "7200x40"), (SUCCEEDED, "3700x40")], "at": "35m",
         "labels": {"namespace": "hkgen-backup", "cronjob": "hkgen-dqlite-upload-cp1"}},
        {"series": [(SCHEDULED, "7200x40"), (SUCCEEDED, "7230x40")], "at": "35m"},
    ],
    "HkgenDatastoreBackupStale": [
        {"series": [(SUCCEEDED2, "600x260")], "at": "250m",
         "labels": {"namespace": "hkgen-backup", "cronjob": "hkgen-dqlite-upload-cp2"}},
        {"series": [(SUCCEEDED2, "600x200 14000x60")], "at": "250m"},
    ],
    "HkgenZigbeeSatelliteUnreachable": [
        {"series": [('probe_success{job="blackbox",probe="zigbee-satellite",satellite="zsat-garden",'
                     'zigbee_network="garden",instance="192.168.10.31:22"}', "0x10")], "at": "5m",
         "labels": {"job": "blackbox", "probe": "zigbee-satellite", "satellite": "zsat-garden",
                    "zigbee_network": "garden", "instance": "192.168.10.31:22"}},
        {"series": [('probe_success{job="blackbox",probe="zigbee-satellite",satellite="zsat-garden"}', "1x10")],
         "at": "5m"},
    ],
    "HkgenZigbeeBridgeOffline": [
        {"series": [(BRIDGE, "0x10")], "at": "8m",
         "labels": {"namespace": "home-automation", "statefulset": "zigbee2mqtt-attic"}},
        {"series": [(BRIDGE, "1x10")], "at": "8m"},
    ],
    "HkgenMosquittoDown": [
        {"series": [('kube_statefulset_status_replicas_ready{namespace="home-automation",statefulset="mosquitto"}',
                     "0x10")], "at": "5m", "labels": {"namespace": "home-automation", "statefulset": "mosquitto"}},
        {"series": [('kube_statefulset_status_replicas_ready{namespace="home-automation",statefulset="mosquitto"}',
                     "1x10")], "at": "5m"},
    ],
    "HkgenMosquittoUnreachable": [
        {"series": [('probe_success{job="blackbox",probe="mosquitto",instance="192.168.10.200:1883"}', "0x10")],
         "at": "5m", "labels": {"job": "blackbox", "probe": "mosquitto", "instance": "192.168.10.200:1883"}},
        {"series": [('probe_success{job="blackbox",probe="mosquitto",instance="192.168.10.200:1883"}', "1x10")],
         "at": "5m"},
    ],
    "HkgenPostgresNoPrimary": [
        {"series": [('cnpg_pg_replication_in_recovery{namespace="monitoring",pod="grafana-db-1"}', "1x10"),
                    ('cnpg_pg_replication_in_recovery{namespace="monitoring",pod="grafana-db-2"}', "1x10")],
         "at": "5m", "labels": {}},
        {"series": [('cnpg_pg_replication_in_recovery{namespace="monitoring",pod="grafana-db-1"}', "0x10"),
                    ('cnpg_pg_replication_in_recovery{namespace="monitoring",pod="grafana-db-2"}', "1x10")],
         "at": "5m"},
    ],
    "HkgenPostgresReplicaLag": [
        {"series": [('cnpg_pg_replication_lag{namespace="monitoring",pod="grafana-db-2"}', "600x20")], "at": "15m",
         "labels": {"namespace": "monitoring", "pod": "grafana-db-2"}},
        {"series": [('cnpg_pg_replication_lag{namespace="monitoring",pod="grafana-db-2"}', "2x20")], "at": "15m"},
    ],
    "HkgenPostgresWalArchivingFailing": [
        {"series": [('cnpg_pg_stat_archiver_failed_count{namespace="monitoring",pod="grafana-db-1"}', "0+1x40"),
                    ('cnpg_pg_stat_archiver_archived_count{namespace="monitoring",pod="grafana-db-1"}', "5x40")],
         "at": "35m", "labels": {"namespace": "monitoring", "pod": "grafana-db-1"}},
        {"series": [('cnpg_pg_stat_archiver_failed_count{namespace="monitoring",pod="grafana-db-1"}', "0+1x40"),
                    ('cnpg_pg_stat_archiver_archived_count{namespace="monitoring",pod="grafana-db-1"}', "5+1x40")],
         "at": "35m"},
    ],
    "HkgenPostgresBackupTooOld": [
        {"series": [('barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{namespace="monitoring",'
                     'pod="grafana-db-1"}', "3600x1800")], "at": "30h", "labels": {}},
        {"series": [('barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{namespace="monitoring",'
                     'pod="grafana-db-1"}', "3600x1200 86400x600")], "at": "30h"},
    ],
    "HkgenThanosCompactorHalted": [
        {"series": [('thanos_compact_halted{namespace="monitoring",pod="thanos-compact-0"}', "1x10")], "at": "8m",
         "labels": {"namespace": "monitoring", "pod": "thanos-compact-0"}},
        {"series": [('thanos_compact_halted{namespace="monitoring",pod="thanos-compact-0"}', "0x10")], "at": "8m"},
    ],
    "HkgenThanosUploadsFailing": [
        {"series": [('thanos_shipper_upload_failures_total{pod="prometheus-0"}', "0x30 1+1x40")], "at": "60m",
         "labels": {"pod": "prometheus-0"}},
        {"series": [('thanos_shipper_upload_failures_total{pod="prometheus-0"}', "3x70")], "at": "60m"},
    ],
    "HkgenSsdFailing": [
        {"series": [('smartctl_device_smart_status{device="sda",node="w4"}', "0x10")], "at": "8m",
         "labels": {"device": "sda", "node": "w4"}},
        {"series": [('smartctl_device_smart_status{device="sda",node="w4"}', "1x10")], "at": "8m"},
    ],
    "HkgenSsdWornOut": [
        {"series": [('smartctl_device_attribute{attribute_name="Wear_Leveling_Count",attribute_value_type="value",'
                     'attribute_id="177",device="sda",node="w1"}', "5x80")], "at": "70m",
         "labels": {"attribute_name": "Wear_Leveling_Count", "attribute_value_type": "value", "attribute_id": "177",
                    "device": "sda", "node": "w1"}},
        {"series": [('smartctl_device_percentage_used{device="nvme0",node="w2"}', "95x80")], "at": "70m",
         "labels": {"device": "nvme0", "node": "w2"}},
        {"series": [('smartctl_device_attribute{attribute_name="Wear_Leveling_Count",attribute_value_type="value",'
                     'attribute_id="177",device="sda",node="w1"}', "80x80"),
                    ('smartctl_device_percentage_used{device="nvme0",node="w2"}', "20x80")], "at": "70m"},
    ],
    "HkgenSsdErrors": [
        {"series": [('smartctl_device_attribute{attribute_name="Reallocated_Sector_Ct",attribute_value_type="raw",'
                     'device="sda",node="w3"}', "3x20")], "at": "20m",
         "labels": {"attribute_name": "Reallocated_Sector_Ct", "attribute_value_type": "raw", "device": "sda",
                    "node": "w3"}},
        {"series": [('smartctl_device_attribute{attribute_name="Reallocated_Sector_Ct",attribute_value_type="raw",'
                     'device="sda",node="w3"}', "0x20")], "at": "20m"},
    ],
    "HkgenCertificateExpiring": [
        {"series": [('certmanager_certificate_expiration_timestamp_seconds{name="barman",namespace="cnpg-system"}',
                     "86400x150")], "at": "2h", "labels": {"name": "barman", "namespace": "cnpg-system"}},
        {"series": [('certmanager_certificate_expiration_timestamp_seconds{name="barman",namespace="cnpg-system"}',
                     "10000000x150")], "at": "2h"},
    ],
    "HkgenCertificateNotReady": [
        {"series": [('certmanager_certificate_ready_status{condition="False",name="c",namespace="n"}', "1x40")],
         "at": "35m", "labels": {"condition": "False", "name": "c", "namespace": "n"}},
        {"series": [('certmanager_certificate_ready_status{condition="False",name="c",namespace="n"}', "0x40")],
         "at": "35m"},
    ],
    "HkgenGitopsSyncFailing": [
        {"series": [('gotk_resource_info{customresource_kind="Kustomization",name="apps",ready="False",'
                     'exported_namespace="flux-system"}', "1x30")], "at": "25m", "rule": {"layer": "apps"},
         "labels": {"customresource_kind": "Kustomization", "name": "apps", "ready": "False",
                    "exported_namespace": "flux-system"}},
        # Failing for less than the layer's timeout (20 minutes): quiet.
        {"series": [('gotk_resource_info{customresource_kind="Kustomization",name="apps",ready="False",'
                     'exported_namespace="flux-system"}', "1x30")], "at": "15m"},
        {"series": [('gotk_resource_info{customresource_kind="Kustomization",name="apps",ready="True",'
                     'exported_namespace="flux-system"}', "1x30")], "at": "25m"},
    ],
    "HkgenHelmReleaseFailing": [
        {"series": [('gotk_resource_info{customresource_kind="HelmRelease",name="longhorn",ready="False",'
                     'exported_namespace="longhorn-system"}', "1x30")], "at": "25m",
         "labels": {"customresource_kind": "HelmRelease", "name": "longhorn", "ready": "False",
                    "exported_namespace": "longhorn-system"}},
        {"series": [('gotk_resource_info{customresource_kind="HelmRelease",name="longhorn",ready="True",'
                     'exported_namespace="longhorn-system"}', "1x30")], "at": "25m"},
    ],
}
ARGO_CASES: dict[str, list[dict[str, Any]]] = {
    "HkgenGitopsSyncFailing": [
        {"series": [('argocd_app_info{name="apps-grafana",health_status="Degraded",sync_status="Synced"}', "1x40")],
         "at": "35m", "labels": {"name": "apps-grafana", "health_status": "Degraded", "sync_status": "Synced"}},
        {"series": [('argocd_app_info{name="apps-grafana",health_status="Healthy",sync_status="Synced"}', "1x40")],
         "at": "35m"},
    ],
}


def _copy(tmp: Path, edit: str | None = None, secrets: Any = None) -> Path:
    dest = tmp / "clusters" / "home"
    dest.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(REPO / "clusters" / "home" / name, dest / name)
    if edit is not None:
        text = (dest / "cluster.yaml").read_text()
        start = text.index("\nalerts:\n") + 1
        end = text.index("\nsecrets:\n") + 1
        (dest / "cluster.yaml").write_text(text[:start] + edit + "\n" + text[end:])
        secrets(dest)
    return dest


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Rendering:
    """The reference cluster, rendered and verified."""
    return render_cluster(_copy(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Rendering:
    """The reference cluster with every receiver and the heartbeat on (fresh secrets file)."""
    from conftest import write_secrets

    return render_cluster(_copy(tmp_path_factory.mktemp("all"), ALL_RECEIVERS, write_secrets))


def _docs(rendering: Rendering, path: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(rendering.tree[PurePosixPath(path)].decode()) if d]


def _groups(rendering: Rendering) -> list[dict[str, Any]]:
    (rule,) = _docs(rendering, "apps/alerts/rules.yaml")
    assert rule["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def _dump(data: Any, path: Path) -> None:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w") as fh:
        yaml.dump(data, fh)


@tools("promtool", reason="Debian prometheus")
def test_every_rendered_rule_passes_promtool_check(home: Rendering, tmp_path: Path) -> None:
    """`promtool check rules` on the rules as rendered (annotations' templates included)."""
    assert PROMTOOL is not None
    _dump({"groups": _groups(home)}, tmp_path / "rules.yml")
    done = _run([PROMTOOL, "check", "rules", str(tmp_path / "rules.yml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 35 rules found" in done.stdout


def _unit_tests(groups: list[dict[str, Any]], cases: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A promtool test file: every scenario of every alert, against rules without annotations."""
    tests = []
    for alert, scenarios in cases.items():
        rules = [r for g in groups for r in g["rules"] if r["alert"] == alert]
        assert rules, f"no rendered rule {alert}"
        for scenario in scenarios:
            expected: list[dict[str, Any]] = []
            if "labels" in scenario:
                wanted = scenario.get("rule", {})
                (rule,) = [r for r in rules if all(r["labels"].get(k) == v for k, v in wanted.items())]
                expected = [{"exp_labels": {**scenario["labels"], **rule["labels"]}}]
            tests.append({
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in scenario["series"]],
                "alert_rule_test": [{"eval_time": scenario["at"], "alertname": alert, "exp_alerts": expected}],
            })
    return {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}


def _promtool_test(groups: list[dict[str, Any]], cases: dict[str, list[dict[str, Any]]], tmp: Path) -> None:
    assert PROMTOOL is not None
    # Annotations are checked by `promtool check rules`; here only when and with which labels.
    bare = [{"name": g["name"], "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups]
    _dump({"groups": bare}, tmp / "rules.yml")
    _dump(_unit_tests(groups, cases), tmp / "tests.yml")
    done = _run([PROMTOOL, "test", "rules", "tests.yml"], cwd=tmp)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


@tools("promtool", reason="Debian prometheus")
def test_every_hkgen_alert_fires_when_it_should_and_stays_quiet_when_healthy(home: Rendering, tmp_path: Path) -> None:
    groups = _groups(home)
    rendered = {r["alert"] for g in groups for r in g["rules"]}
    assert rendered - CASES.keys() == set(), "alerts without a unit test"
    assert all(any("labels" in s for s in v) and any("labels" not in s for s in v) for v in CASES.values())
    _promtool_test(groups, CASES, tmp_path)


@tools("promtool", reason="Debian prometheus")
def test_unit_tests_can_fail(home: Rendering, tmp_path: Path) -> None:
    """A scenario that expects the wrong thing fails: the unit tests are not vacuous."""
    assert PROMTOOL is not None
    wrong = {"HkgenNodeNotReady": [{**CASES["HkgenNodeNotReady"][0], "at": "1m"}]}  # before its `for: 2m`
    with pytest.raises(AssertionError):
        _promtool_test(_groups(home), wrong, tmp_path)


@tools("promtool", reason="Debian prometheus")
def test_argocd_sync_alert(tmp_path: Path) -> None:
    """With Argo CD the GitOps alert reads argocd_app_info (model-level: no full render needed)."""
    from conftest import write_secrets
    from hkgen.pipeline import validate_cluster

    dest = _copy(tmp_path, "alerts: {}\n", write_secrets)
    text = (dest / "cluster.yaml").read_text().replace("engine: flux", "engine: argocd")
    (dest / "cluster.yaml").write_text(text)
    _doc, result = validate_cluster(dest)
    assert result.cluster is not None, [p.format() for p in result.problems]
    groups = alert_rules.rule_groups(result.cluster)
    assert not any("gotk_" in r["expr"] for g in groups for r in g["rules"])
    _promtool_test(groups, ARGO_CASES, tmp_path)


def test_rules_exist_only_for_enabled_components(tmp_path: Path) -> None:
    from conftest import write_secrets
    from hkgen.pipeline import validate_cluster

    dest = _copy(tmp_path, "alerts: {}\n", write_secrets)
    text = (dest / "cluster.yaml").read_text()
    text = text.replace("  grafana:\n    enabled: true", "  grafana:\n    enabled: false")
    text = text.replace("    thanos: true", "    thanos: false")
    (dest / "cluster.yaml").write_text(text)
    _doc, result = validate_cluster(dest)
    assert result.cluster is not None, [p.format() for p in result.problems]
    names = {r.alert for r in alert_rules.rules(result.cluster)}
    assert not {n for n in names if n.startswith(("HkgenPostgres", "HkgenThanos"))}
    assert {"HkgenVolumeDegraded", "HkgenMosquittoDown"} <= names


def test_every_alert_links_to_a_runbook_section(home: Rendering) -> None:
    recovery = home.tree[PurePosixPath("RECOVERY.md")].decode()
    headings = {alert_rules.runbook_anchor(k): title for k, (title, _s) in alert_rules.RUNBOOKS.items()}
    for group in _groups(home):
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url.startswith("https://github.com/example/home-ops/blob/main/clusters/home/RECOVERY.md#")
            anchor = url.split("#", 1)[1]
            assert f"\n### {headings[anchor]}\n" in recovery, anchor


def _substituted(rendering: Rendering, values: dict[str, str]) -> str:
    (secret,) = _docs(rendering, "apps/alerts/alertmanager-config.yaml")
    text: str = secret["stringData"]["alertmanager.yaml"]
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text
    return text


TEST_VALUES = {"ALERTS_HOME_ASSISTANT_WEBHOOK_ID": "abcdefghijklmnopqrstuvwxyz012345",
               "ALERTS_NTFY_TOPIC": "house-alerts-1234", "ALERTS_NTFY_TOKEN": "tk_testtoken",
               "ALERTS_SMTP_PASSWORD": "smtp-password", "ALERTS_WEBHOOK_URL": "http://127.0.0.1:9/webhook",
               "ALERTS_HEARTBEAT_URL": "http://127.0.0.1:9/heartbeat"}


@tools("amtool", reason="Debian prometheus-alertmanager")
@pytest.mark.parametrize("which", ["home", "everything"])
def test_alertmanager_config_passes_amtool(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assert AMTOOL is not None
    rendering = request.getfixturevalue(which)
    (tmp_path / "am.yml").write_text(_substituted(rendering, TEST_VALUES))
    done = _run([AMTOOL, "check-config", str(tmp_path / "am.yml")])
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_receiver_and_the_heartbeat_are_configured(everything: Rendering) -> None:
    config = YAML(typ="safe", pure=True).load(_substituted(everything, TEST_VALUES))
    (household,) = [r for r in config["receivers"] if r["name"] == "household"]
    urls = [w["url"] for w in household["webhook_configs"]]
    assert urls == [
        "http://home-assistant.home-automation.svc.cluster.local:8123/api/webhook/abcdefghijklmnopqrstuvwxyz012345",
        "https://ntfy.example.org/house-alerts-1234?template=alertmanager",
        "http://127.0.0.1:9/webhook",
    ]
    assert household["email_configs"] == [{"to": "us@example.org", "send_resolved": True}]
    assert config["global"]["smtp_auth_password"] == TEST_VALUES["ALERTS_SMTP_PASSWORD"]
    watchdog = config["route"]["routes"][0]
    assert watchdog["receiver"] == "heartbeat" and watchdog["repeat_interval"] == "1m"
    # Home Assistant gets the webhook id from its own Secret and listens on it in hkgen's package.
    (cm,) = _docs(everything, "apps/home-assistant/configmap.yaml")
    package = cm["data"]["hkgen.yaml"]
    ha_yaml = YAML(typ="safe", pure=True)  # Home Assistant's own tag, read as text here
    ha_yaml.constructor.add_constructor("!env_var", lambda lo, node: "env:" + lo.construct_scalar(node))
    (automation,) = ha_yaml.load(package)["automation"]
    assert automation["triggers"] == [{"trigger": "webhook", "webhook_id": "env:ALERTS_WEBHOOK_ID",
                                       "allowed_methods": ["POST"], "local_only": True}]
    actions = automation["actions"]
    assert actions[0]["then"][0]["action"] == "persistent_notification.dismiss"
    assert actions[0]["else"][0]["action"] == "persistent_notification.create"
    assert actions[1]["action"] == "notify.mobile_app_phone"
    (secret,) = _docs(everything, "apps/home-assistant/alerts-secret.yaml")
    assert secret["stringData"]["webhook-id"] == "${ALERTS_HOME_ASSISTANT_WEBHOOK_ID}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@tools("prometheus-alertmanager", reason="Debian prometheus-alertmanager")
def test_real_alertmanager_routes_to_the_household(everything: Rendering, tmp_path: Path) -> None:
    """The rendered configuration in a real Alertmanager on 127.0.0.1: an hkgen alert reaches the
    household webhook, a warning from the chart's rules does not, and the Watchdog goes to the
    heartbeat. The receivers' URLs point at a local test webhook."""
    assert ALERTMANAGER is not None
    hook_port, am_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{hook_port}"
    values = {**TEST_VALUES, "ALERTS_WEBHOOK_URL": f"{base}/webhook", "ALERTS_HEARTBEAT_URL": f"{base}/heartbeat"}
    text = _substituted(everything, values)
    # Home Assistant and ntfy are outside this machine: send them to the local hook too.
    text = text.replace("http://home-assistant.home-automation.svc.cluster.local:8123", base)
    text = text.replace("https://ntfy.example.org", base)
    text = text.replace("group_wait: 30s", "group_wait: 1s")
    (tmp_path / "am.yml").write_text(text)
    _Hook.received = []
    server = http.server.HTTPServer(("127.0.0.1", hook_port), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        api = f"http://127.0.0.1:{am_port}/api/v2/alerts"
        deadline = time.monotonic() + 20
        alerts = [
            {"labels": {"alertname": "HkgenNodeNotReady", "node": "w1", "severity": "critical", "origin": "hkgen",
                        "failure": "node"}, "annotations": {"summary": "Node w1 is not ready"}},
            # A consequence of the dead node: held back (same incident).
            {"labels": {"alertname": "HkgenVolumeDegraded", "volume": "v1", "severity": "warning", "origin": "hkgen",
                        "failure": "node"}},
            # Two failed backups: one message with both.
            {"labels": {"alertname": "HkgenBackupFailed", "volume": "v1", "severity": "warning", "origin": "hkgen",
                        "failure": "backups"}},
            {"labels": {"alertname": "HkgenBackupFailed", "volume": "v2", "severity": "warning", "origin": "hkgen",
                        "failure": "backups"}},
            {"labels": {"alertname": "KubePodNotReady", "severity": "warning", "namespace": "x"}},
            # The chart's alert about the same node: held back too, though critical.
            {"labels": {"alertname": "KubeNodeUnreachable", "node": "w1", "severity": "critical"}},
            {"labels": {"alertname": "Watchdog", "severity": "none"}},
        ]
        while True:
            try:
                req = urllib.request.Request(api, data=json.dumps(alerts).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
                with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - 127.0.0.1
                    assert resp.status == 200
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
                assert time.monotonic() < deadline, "alertmanager did not start"
                time.sleep(0.2)
        while time.monotonic() < deadline:
            webhook = [b for p, b in _Hook.received if p == "/webhook"]
            if len(webhook) >= 2 and "/heartbeat" in {p for p, _ in _Hook.received}:
                time.sleep(2)  # anything else (a held-back alert) would have arrived by now
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        server.shutdown()
        server.server_close()
    messages: dict[str, list[list[str]]] = {}
    for path, body in _Hook.received:
        messages.setdefault(path, []).append(sorted(a["labels"].get("volume", a["labels"]["alertname"])
                                                    for a in body["alerts"]))
    # One message per incident: the node alert alone, both failed backups in one message.
    expected = sorted([["HkgenNodeNotReady"], ["v1", "v2"]])
    assert sorted(messages["/webhook"]) == expected, messages
    assert sorted(messages["/api/webhook/" + values["ALERTS_HOME_ASSISTANT_WEBHOOK_ID"]]) == expected
    assert sorted(messages["/" + values["ALERTS_NTFY_TOPIC"] + "?template=alertmanager"]) == expected
    assert messages["/heartbeat"][0] == ["Watchdog"]
    names = {a["labels"]["alertname"] for _p, body in _Hook.received for a in body["alerts"]}
    assert names == {"HkgenNodeNotReady", "HkgenBackupFailed", "Watchdog"}  # not the held-back or chart warning


@tools("promtool", reason="Debian prometheus")
def test_home_dashboard_is_the_home_page_and_its_queries_parse(home: Rendering, tmp_path: Path) -> None:
    """Grafana's home page is hkgen's "Is my house OK?" dashboard; every query is valid PromQL
    (checked by promtool as recording rules) and it shows alerts, nodes, storage, backups, Zigbee."""
    assert PROMTOOL is not None
    (cm,) = _docs(home, "apps/grafana/dashboards.yaml")
    board = json.loads(cm["data"]["home.json"])
    (deployment,) = _docs(home, "apps/grafana/deployment.yaml")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == "/etc/grafana/dashboards/home.json"
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    for needle in ("ALERTS{", "kube_node_status_condition", "longhorn_volume_robustness",
                   "longhorn_volume_last_backup_at", "zigbee2mqtt", "probe_success"):
        assert any(needle in e for e in exprs), needle
    rules = [{"record": f"hkgen:dashboard:{i}", "expr": e} for i, e in enumerate(exprs)]
    _dump({"groups": [{"name": "dashboard", "rules": rules}]}, tmp_path / "queries.yml")
    done = _run([PROMTOOL, "check", "rules", str(tmp_path / "queries.yml")])
    assert done.returncode == 0, done.stdout + done.stderr


def test_plan_lists_the_alert_for_every_single_node_failure(hkgen: Any) -> None:
    """`hkgen plan` (json) says, for every node and satellite of the reference cluster, which alert
    fires and after how long: node grace + scrape + evaluation + `for:` + group_wait."""
    done = hkgen("plan", "--format", "json", "clusters/home", cwd=REPO)
    assert done.returncode == 0, done.stderr
    section = json.loads(done.stdout)["alerting"]
    failures = {f["failure"]: f for f in section["failures"]}
    for node in ("cp1", "cp2", "cp3", "w1", "w2", "w3", "w4", "w5", "w6"):
        f = failures[f"node {node} down"]
        assert f["alert"] == "HkgenNodeNotReady"
        assert f["seconds_to_person"] == 30 + 60 + 60 + 120 + 30  # grace 30 s (w6 is on Wi-Fi), scrape, eval, for, wait
    assert failures["node w1 down"]["held_back"].count("HkgenZigbeeBridgeOffline") == 1  # its USB stick
    assert "HkgenZigbeeBridgeOffline" not in failures["node w2 down"]["held_back"]
    assert "HkgenControlPlaneDegraded" in failures["node cp2 down"]["held_back"]
    assert failures["satellite zsat-garden down"]["alert"] == "HkgenZigbeeSatelliteUnreachable"
    assert section["reaches_someone"] is True and section["receivers"] == ["Home Assistant"]
