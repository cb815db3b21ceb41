"""Coordinated reboots (kured) and the pre-pull DaemonSet, as rendered for the reference cluster;
the maintenance gate rules checked and unit-tested with the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tools
from hkgen.areas import maintenance
from hkgen.areas.blueprint import build_blueprint
from hkgen.render.jinja import render_blueprint
from test_plan import model, reference_data


@pytest.fixture(scope="module")
def tree() -> dict[str, bytes]:
    return {str(k): v for k, v in render_blueprint(build_blueprint(model(reference_data()))).items()}


def _docs(tree: dict[str, bytes], suffix: str) -> list[dict[str, Any]]:
    (path,) = [p for p in tree if p.endswith(suffix)]
    return [d for d in yaml.safe_load_all(tree[path]) if d]


def test_kured_reboots_one_node_at_a_time_in_the_window_behind_the_gate(tree: dict[str, bytes]) -> None:
    (release,) = _docs(tree, "platform/controllers/kured/helmrelease-kured.yaml")
    cfg = release["spec"]["values"]["configuration"]
    # cluster.yaml: rebootTime 03:30, rebootWindowHours default 3 -> 03:30 to 06:30, Europe/Berlin
    assert (cfg["startTime"], cfg["endTime"], cfg["timeZone"]) == ("03:30", "06:30", "Europe/Berlin")
    assert cfg["concurrency"] == 1 and cfg["forceReboot"] is False
    assert cfg["rebootSentinel"] == "/var/run/reboot-required"
    assert cfg["alertFilterMatchOnly"] is True and cfg["alertFiringOnly"] is True
    assert cfg["alertFilterRegexp"] == ("^(HkgenNodeNotReady|HkgenNodeCordoned|HkgenLonghornVolumeDegraded"
                                        "|HkgenDqliteVotersMissing|HkgenDqliteMembersMissing"
                                        "|HkgenDqliteMembershipUnreported|HkgenDqliteMembershipDiffers)$")
    assert cfg["prometheusUrl"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    (rules,) = _docs(tree, "platform/controllers/kured/gate-rules.yaml")
    names = [r["alert"] for r in rules["spec"]["groups"][0]["rules"]]
    assert names == list(maintenance.GATE_ALERTS)


def test_without_monitoring_kured_has_no_alert_gate() -> None:
    data = reference_data()
    data["apps"]["monitoring"]["enabled"] = False
    data["apps"]["grafana"]["enabled"] = False
    values = maintenance.kured_values(model(data))
    assert "prometheusUrl" not in values["configuration"]


def test_no_node_reboots_on_a_clock(tree: dict[str, bytes]) -> None:
    for host in ("cp1", "w6"):
        ud = yaml.safe_load(tree[f"nodes/{host}/user-data"])
        (apt,) = [f["content"] for f in ud["write_files"] if f["path"] == "/etc/apt/apt.conf.d/52hkgen-upgrades"]
        assert 'Automatic-Reboot "false"' in apt and "Automatic-Reboot-Time" not in apt


def test_prepull_holds_the_images_of_the_apps_that_move(tree: dict[str, bytes]) -> None:
    (ds,) = _docs(tree, "platform/configs/image-prepull/daemonset.yaml")
    images = {c["image"] for c in ds["spec"]["template"]["spec"]["initContainers"]}
    expected = {d["spec"]["template"]["spec"]["containers"][0]["image"]
                for name in ("home-assistant/statefulset.yaml", "mosquitto/statefulset.yaml",
                             "zigbee2mqtt/statefulset-garden.yaml")
                for d in _docs(tree, "apps/" + name) if d.get("kind") == "StatefulSet"}
    assert images == expected
    assert "tolerations" not in ds["spec"]["template"]["spec"]  # not on the NoSchedule control planes


@tools("promtool", reason="Debian prometheus")
def test_gate_rules_fire_when_they_should(tree: dict[str, bytes], tmp_path: Path) -> None:
    (rules,) = _docs(tree, "platform/controllers/kured/gate-rules.yaml")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules["spec"]))
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yaml")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'kube_node_status_condition{condition="Ready",status="true",node="w1"}', "values": "1 0 1"},
                {"series": 'kube_node_status_condition{condition="Ready",status="true",node="w2"}', "values": "1 1 1"},
                # robustness 1 healthy, 2 degraded, 0 unknown (a detached volume)
                {"series": 'longhorn_volume_robustness{volume="pvc-a"}', "values": "1 2 1"},
                {"series": 'longhorn_volume_robustness{volume="pvc-b"}', "values": "0 0 0"},
                {"series": 'kube_node_spec_unschedulable{node="w3"}', "values": "1x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "0m", "alertname": "HkgenNodeNotReady", "exp_alerts": []},
                {"eval_time": "1m", "alertname": "HkgenNodeNotReady", "exp_alerts": [{
                    "exp_labels": {"severity": "info", "condition": "Ready", "status": "true", "node": "w1"},
                    "exp_annotations": {"summary": "Node w1 is not Ready: no node is rebooted or upgraded "
                                                   "until it is."}}]},
                {"eval_time": "2m", "alertname": "HkgenNodeNotReady", "exp_alerts": []},
                {"eval_time": "1m", "alertname": "HkgenLonghornVolumeDegraded", "exp_alerts": [{
                    "exp_labels": {"severity": "info", "volume": "pvc-a"},
                    "exp_annotations": {"summary": "Longhorn volume pvc-a is not healthy: no node is rebooted "
                                                   "until its replicas are rebuilt."}}]},
                {"eval_time": "2m", "alertname": "HkgenLonghornVolumeDegraded", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "HkgenNodeCordoned", "exp_alerts": []},
                {"eval_time": "35m", "alertname": "HkgenNodeCordoned", "exp_alerts": [{
                    "exp_labels": {"severity": "info", "node": "w3"},
                    "exp_annotations": {"summary": "Node w3 has been cordoned for 30 minutes: maintenance waits."}}]},
            ],
        }],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    run = subprocess.run(["promtool", "test", "rules", "test.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
