"""The control planes' dqlite membership as metrics, and the gate that stops reboots on it
(areas/dqlite_metrics.py, templates/cloud-init/files/hkgen-dqlite-membership.sh).

No dqlite cluster runs here, so MicroK8s' dqlite shell is the recording fake
tests/fixtures/upgrade/fake-dqlite, modelled on go-dqlite's cmd/dqlite and shell (its docstring
says what: the YAML node store backend/cluster.yaml, the leader search that fails without
quorum, `.cluster`'s `ID|ADDRESS|ROLE` lines, `.describe` dialling one server). The metrics file
is checked with the real `promtool check metrics`, the gate rules with `promtool test rules`,
node-exporter's mount with the real kube-prometheus-stack chart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import need_path, tools
from hkgen.areas import dqlite_metrics, maintenance
from hkgen.areas.blueprint import build_blueprint
from hkgen.render.jinja import render_blueprint
from test_plan import model, reference_data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "templates" / "cloud-init" / "files" / "hkgen-dqlite-membership.sh"
FAKE = REPO / "tests" / "fixtures" / "upgrade" / "fake-dqlite"
SHARED_CHARTS = REPO.parent / "shared" / "charts"
VOTERS = ["10.0.0.11:19001", "10.0.0.12:19001", "10.0.0.13:19001"]


class Node:
    """One control plane's files: the node store k8s-dqlite keeps, the script's configuration."""

    def __init__(self, tmp: Path, members: list[dict[str, Any]], store: list[str] | None = None) -> None:
        self.tmp = tmp
        (tmp / "bin").mkdir()
        shutil.copy(FAKE, tmp / "bin" / "dqlite")
        self.backend = tmp / "backend"
        self.backend.mkdir()
        # backend/cluster.yaml as go-dqlite's YamlNodeStore writes it (yaml.v2 of []NodeInfo)
        (self.backend / "cluster.yaml").write_text("".join(
            f"- Address: {m['Address']}\n  ID: {m['ID']}\n  Role: {m['Role']}\n" for m in members
            if store is None or m["Address"] in store))
        self.world = tmp / "world.json"
        self.set(members)
        self.textfile = tmp / "textfile" / "hkgen_dqlite.prom"
        self.conf = tmp / "membership.conf"
        self.conf.write_text(f"dqlite={tmp / 'bin' / 'dqlite'}\nbackend={self.backend}\ntextfile={self.textfile}\n"
                             "timeout=10\n")
        self.log = tmp / "log"

    def set(self, members: list[dict[str, Any]], down: tuple[str, ...] = ()) -> None:
        self.world.write_text(json.dumps({"members": members, "down": list(down)}))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "FAKE_DQLITE": str(self.world), "FAKE_LOG": str(self.log),
               "HKGEN_NOW": "1700000000"}
        return subprocess.run(["bash", str(SCRIPT), "-c", str(self.conf), *args], env=env, capture_output=True,
                              text=True, timeout=60, check=False)


def members(roles: list[int], ids: list[int] | None = None) -> list[dict[str, Any]]:
    addresses = [*VOTERS, "10.0.0.14:19001"]
    return [{"ID": (ids or [3297041220608546238, 13, 14, 15])[i], "Address": addresses[i], "Role": role}
            for i, role in enumerate(roles)]


HEADER_UP = """\
# HELP hkgen_dqlite_membership_up Whether the dqlite leader answered this control plane's membership query.
# TYPE hkgen_dqlite_membership_up gauge
hkgen_dqlite_membership_up {up}
# HELP hkgen_dqlite_membership_timestamp_seconds When this control plane last read the dqlite membership.
# TYPE hkgen_dqlite_membership_timestamp_seconds gauge
hkgen_dqlite_membership_timestamp_seconds 1700000000
# HELP hkgen_dqlite_member A dqlite member as the leader lists it, with its role.
# TYPE hkgen_dqlite_member gauge
"""


def test_metrics_of_a_complete_membership(tmp_path: Path) -> None:
    node = Node(tmp_path, members([0, 0, 0, 1]))
    run = node.run("metrics")
    assert run.returncode == 0, run.stdout + run.stderr
    assert node.textfile.read_text() == HEADER_UP.format(up=1) + """\
hkgen_dqlite_member{address="10.0.0.11:19001",role="voter"} 1
hkgen_dqlite_member{address="10.0.0.12:19001",role="voter"} 1
hkgen_dqlite_member{address="10.0.0.13:19001",role="voter"} 1
hkgen_dqlite_member{address="10.0.0.14:19001",role="stand-by"} 1
# HELP hkgen_dqlite_member_reachable Whether this control plane reached the member's dqlite server.
# TYPE hkgen_dqlite_member_reachable gauge
hkgen_dqlite_member_reachable{address="10.0.0.11:19001",role="voter"} 1
hkgen_dqlite_member_reachable{address="10.0.0.12:19001",role="voter"} 1
hkgen_dqlite_member_reachable{address="10.0.0.13:19001",role="voter"} 1
hkgen_dqlite_member_reachable{address="10.0.0.14:19001",role="stand-by"} 1
"""
    assert not list(node.textfile.parent.glob("*.tmp"))
    assert oct(node.textfile.stat().st_mode & 0o777) == "0o644"  # node-exporter runs as nobody
    calls = node.log.read_text().splitlines()
    # the same query `microk8s status` runs (common/utils.py get_dqlite_info), tabular output
    assert calls[0] == (f"?: dqlite -s file://{node.backend}/cluster.yaml -c {node.backend}/cluster.crt "
                        f"-k {node.backend}/cluster.key k8s .cluster")
    assert [c.split(" k8s ")[1] for c in calls[1:]] == [f".describe {a}" for a in [*VOTERS, "10.0.0.14:19001"]]
    assert node.run("check", "3", "4").returncode == 0


def test_a_voter_that_does_not_answer_is_not_reachable(tmp_path: Path) -> None:
    node = Node(tmp_path, members([0, 0, 0]))
    node.set(members([0, 0, 0]), down=(VOTERS[2],))
    assert node.run("metrics").returncode == 0
    text = node.textfile.read_text()
    assert 'hkgen_dqlite_member{address="10.0.0.13:19001",role="voter"} 1' in text  # still listed
    assert 'hkgen_dqlite_member_reachable{address="10.0.0.13:19001",role="voter"} 0' in text
    check = node.run("check", "3", "3")
    assert check.returncode == 1
    assert check.stdout == "hkgen-dqlite-membership: 2 of 3 dqlite voters answer (not answering: 10.0.0.13:19001)\n"


def test_a_control_plane_missing_from_the_membership(tmp_path: Path) -> None:
    """Three voters, but the fourth control plane is neither voter nor stand-by (a spare, or gone)."""
    node = Node(tmp_path, members([0, 0, 0, 2]))
    assert node.run("metrics").returncode == 0
    assert 'hkgen_dqlite_member{address="10.0.0.14:19001",role="spare"} 1' in node.textfile.read_text()
    check = node.run("check", "3", "4")
    assert check.returncode == 1
    assert check.stdout == "hkgen-dqlite-membership: 3 of 4 control planes are dqlite voters or stand-bys\n"


@pytest.mark.parametrize("case", ["no quorum", "not joined"])
def test_no_answer_is_reported_as_down(tmp_path: Path, case: str) -> None:
    node = Node(tmp_path, members([0, 0, 0]))
    if case == "no quorum":
        node.set(members([0, 0, 0]), down=(VOTERS[1], VOTERS[2]))
    else:  # a control plane that has not joined yet has no node store
        (node.backend / "cluster.yaml").unlink()
    node.textfile.parent.mkdir()
    node.textfile.write_text("stale\n")  # an older run's file is replaced, not kept
    assert node.run("metrics").returncode == 0
    assert node.textfile.read_text() == HEADER_UP.format(up=0) + (
        "# HELP hkgen_dqlite_member_reachable Whether this control plane reached the member's dqlite server.\n"
        "# TYPE hkgen_dqlite_member_reachable gauge\n")
    check = node.run("check", "3", "3")
    assert (check.returncode, check.stdout) == (
        1, "hkgen-dqlite-membership: the dqlite leader does not answer (no quorum, or dqlite is down here)\n")


@tools("promtool", reason="Debian prometheus")
def test_the_metrics_file_is_valid_exposition_format(tmp_path: Path) -> None:
    node = Node(tmp_path, members([0, 0, 0, 1]))
    node.set(members([0, 0, 0, 1]), down=(VOTERS[0],))
    assert node.run("metrics").returncode == 0
    lint = subprocess.run(["promtool", "check", "metrics"], input=node.textfile.read_text(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_shellcheck_clean() -> None:
    run = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout


@pytest.fixture(scope="module")
def tree() -> dict[str, bytes]:
    return {str(k): v for k, v in render_blueprint(build_blueprint(model(reference_data()))).items()}


def test_control_planes_publish_and_workers_do_not(tree: dict[str, bytes]) -> None:
    for host, publishes in (("cp1", True), ("cp3", True), ("w1", False)):
        ud = yaml.safe_load(tree[f"nodes/{host}/user-data"])
        files = {f["path"]: f for f in ud["write_files"]}
        assert (dqlite_metrics.SCRIPT in files) is publishes
        assert (["systemctl", "enable", "--now", "hkgen-dqlite-membership.timer"] in ud["runcmd"]) is publishes
        if publishes:
            assert files[dqlite_metrics.SCRIPT]["content"] == SCRIPT.read_text()
            assert files[dqlite_metrics.SCRIPT]["permissions"] == "0755"
            conf = files["/etc/hkgen/dqlite-membership.conf"]["content"]
            assert "dqlite=/snap/microk8s/current/bin/dqlite" in conf
            assert "backend=/var/snap/microk8s/current/var/kubernetes/backend" in conf
            assert f"textfile={dqlite_metrics.TEXTFILE_DIR}/hkgen_dqlite.prom" in conf


def _gate_rules(tree: dict[str, bytes]) -> dict[str, Any]:
    (rules,) = [d for d in yaml.safe_load_all(tree["platform/controllers/kured/gate-rules.yaml"]) if d]
    spec: dict[str, Any] = rules["spec"]
    return spec


def test_kured_and_the_rules_know_the_dqlite_alerts(tree: dict[str, bytes]) -> None:
    (release,) = [d for d in yaml.safe_load_all(tree["platform/controllers/kured/helmrelease-kured.yaml"]) if d]
    regexp = release["spec"]["values"]["configuration"]["alertFilterRegexp"]
    for name in ("HkgenDqliteVotersMissing", "HkgenDqliteMembersMissing", "HkgenDqliteMembershipUnreported",
                 "HkgenDqliteMembershipDiffers"):
        assert f"|{name}" in regexp and name in maintenance.GATE_ALERTS
    by_name = {r["alert"]: r["expr"] for r in _gate_rules(tree)["groups"][0]["rules"]}
    # the reference: three control planes, three voters
    assert by_name["HkgenDqliteVotersMissing"].endswith("< 3")
    assert by_name["HkgenDqliteMembershipUnreported"].endswith("< 3")


def _series(node: str, up: int, listed: dict[str, tuple[str, int]], values: str) -> list[dict[str, str]]:
    out = [{"series": f'hkgen_dqlite_membership_up{{node="{node}"}}', "values": values.format(up)},
           {"series": f'hkgen_dqlite_membership_timestamp_seconds{{node="{node}"}}', "values": "0+60x10"}]
    for address, (role, reachable) in listed.items():
        labels = f'node="{node}",address="{address}",role="{role}"'
        out += [{"series": f"hkgen_dqlite_member{{{labels}}}", "values": values.format(1)},
                {"series": f"hkgen_dqlite_member_reachable{{{labels}}}", "values": values.format(reachable)}]
    return out


@tools("promtool", reason="Debian prometheus")
def test_gate_rules_fire_when_voters_are_missing(tree: dict[str, bytes], tmp_path: Path) -> None:
    """Known answers for a 3-control-plane cluster, evaluated by the real promtool."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_gate_rules(tree)))
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yaml")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    full = dict.fromkeys(VOTERS, ("voter", 1))
    cp3_down = {**full, VOTERS[2]: ("voter", 0)}
    tests = [
        {   # healthy: every control plane reports three reachable voters; nothing fires
            "interval": "1m",
            "input_series": [s for n in ("cp1", "cp2", "cp3") for s in _series(n, 1, full, "{0}x10")],
            "alert_rule_test": [{"eval_time": "5m", "alertname": a, "exp_alerts": []}
                                for a in maintenance.GATE_ALERTS[3:]],
        },
        {   # cp3's dqlite server stops: cp1 and cp2 still list it but cannot reach it, cp3 reports nothing
            "interval": "1m",
            "input_series": [s for n in ("cp1", "cp2") for s in _series(n, 1, cp3_down, "{0}x10")],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "HkgenDqliteVotersMissing", "exp_alerts": [
                    {"exp_labels": {"severity": "info", "node": n},
                     "exp_annotations": {"summary": f"Control plane {n} reaches 2 of 3 dqlite voters: no node is "
                                                    "rebooted or upgraded until all answer."}}
                    for n in ("cp1", "cp2")]},
                {"eval_time": "5m", "alertname": "HkgenDqliteMembershipUnreported", "exp_alerts": [
                    {"exp_labels": {"severity": "info"},
                     "exp_annotations": {"summary": "Only 2 of 3 control planes report the dqlite membership: no "
                                                    "node is rebooted or upgraded until all do."}}]},
                {"eval_time": "5m", "alertname": "HkgenDqliteMembersMissing", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "HkgenDqliteMembershipDiffers", "exp_alerts": []},
            ],
        },
        {   # no series at all (the textfile is not read): unknown is not complete
            "interval": "1m",
            "input_series": [{"series": 'up{job="node-exporter"}', "values": "1x10"}],
            "alert_rule_test": [{"eval_time": "5m", "alertname": "HkgenDqliteMembershipUnreported", "exp_alerts": [
                {"exp_labels": {"severity": "info"},
                 "exp_annotations": {"summary": "Only 0 of 3 control planes report the dqlite membership: no node "
                                                "is rebooted or upgraded until all do."}}]}],
        },
        {   # cp3 was removed from the datastore; cp1 and cp2 agree, cp3 (not a member) has no leader
            "interval": "1m",
            "input_series": [s for n in ("cp1", "cp2") for s in _series(n, 1, dict(list(full.items())[:2]), "{0}x10")]
            + _series("cp3", 0, {}, "{0}x10"),
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "HkgenDqliteMembersMissing", "exp_alerts": [
                    {"exp_labels": {"severity": "info", "node": n},
                     "exp_annotations": {"summary": f"Control plane {n} lists 2 of 3 control planes as dqlite "
                                                    "voters or stand-bys: maintenance waits."}}
                    for n in ("cp1", "cp2")]},
                {"eval_time": "5m", "alertname": "HkgenDqliteMembershipUnreported", "exp_alerts": [
                    {"exp_labels": {"severity": "info"},
                     "exp_annotations": {"summary": "Only 2 of 3 control planes report the dqlite membership: no "
                                                    "node is rebooted or upgraded until all do."}}]},
            ],
        },
        {   # cp2 still sees cp3 as a voter, cp1 already sees it as a stand-by; cp3's file is stale
            "interval": "1m",
            "input_series": _series("cp1", 1, {**full, VOTERS[2]: ("stand-by", 1)}, "{0}x10")
            + _series("cp2", 1, full, "{0}x10")
            + [{"series": 'hkgen_dqlite_membership_up{node="cp3"}', "values": "1x10"},
               {"series": 'hkgen_dqlite_membership_timestamp_seconds{node="cp3"}', "values": "0x10"}],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "HkgenDqliteMembershipUnreported", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "HkgenDqliteMembershipUnreported", "exp_alerts": [
                    {"exp_labels": {"severity": "info"},
                     "exp_annotations": {"summary": "Only 2 of 3 control planes report the dqlite membership: no "
                                                    "node is rebooted or upgraded until all do."}}]},
                {"eval_time": "3m", "alertname": "HkgenDqliteMembershipDiffers", "exp_alerts": [
                    {"exp_labels": {"severity": "info", "address": VOTERS[2], "role": role},
                     "exp_annotations": {"summary": f"Not every control plane sees dqlite member {VOTERS[2]} as "
                                                    f"{role}: maintenance waits until they agree."}}
                    for role in ("stand-by", "voter")]},
            ],
        },
    ]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                        "tests": tests}))
    run = subprocess.run(["promtool", "test", "rules", "test.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.charts
def test_node_exporter_reads_the_textfile_directory(tree: dict[str, bytes]) -> None:
    """The real kube-prometheus-stack chart, with hkgen's values, mounts the folder the script
    writes and points the textfile collector at it; the parent chart's own arguments stay."""
    need_path(SHARED_CHARTS, "vendored Helm charts")
    from pathlib import PurePosixPath

    from hkgen.verify.charts import check_tree

    report = check_tree({PurePosixPath(k): v for k, v in tree.items()}, [SHARED_CHARTS], kube_version="1.34",
                        label="clusters/home")
    assert not [p for p in report.problems if p.severity == "error"]
    (kps,) = [r for r in report.results if r.release.chart == "kube-prometheus-stack"]
    (ds,) = [m.data for m in kps.manifests if m.data.get("kind") == "DaemonSet"
             and "node-exporter" in m.data["metadata"]["name"]]
    pod = ds["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "hkgen-textfile"]
    assert volume["hostPath"] == {"path": dqlite_metrics.TEXTFILE_DIR, "type": "DirectoryOrCreate"}
    (container,) = [c for c in pod["containers"] if c["name"] == "node-exporter"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "hkgen-textfile"]
    assert mount["readOnly"] is True
    assert f"--collector.textfile.directory={mount['mountPath']}" in container["args"]
    parent = yaml.safe_load((SHARED_CHARTS / "kube-prometheus-stack-88.5.3" / "values.yaml").read_text())
    assert set(parent["prometheus-node-exporter"]["extraArgs"]) <= set(container["args"])
    # control planes run it too (the chart's default toleration of NoSchedule taints)
    assert {"effect": "NoSchedule", "operator": "Exists"} in pod["tolerations"]
