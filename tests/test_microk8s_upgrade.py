"""MicroK8s channel upgrades from Git (templates/cloud-init/files/hkgen-microk8s-upgrade.sh).

No cluster and no snapd here: `kubectl`, `snap` and MicroK8s' `dqlite` shell are recording fakes
on a tmp PATH (tests/fixtures/upgrade/, their docstrings say what they model: the Node
authorizer's limits on a kubelet's credentials, NotFound/AlreadyExists, annotate without
--overwrite, a drain blocked by a PodDisruptionBudget, a snap refresh that fails, a node that does
not come back, go-dqlite's node store, leader search and output formats). The conductors check
the dqlite voters with the real hkgen-dqlite-membership script against the fake. Each test plays
the systemd timers: every control plane's conductor and every node's agent, round after round,
with the clock moving on.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "templates" / "cloud-init" / "files" / "hkgen-microk8s-upgrade.sh"
MEMBERSHIP = REPO / "templates" / "cloud-init" / "files" / "hkgen-dqlite-membership.sh"
FAKES = REPO / "tests" / "fixtures" / "upgrade"
ORDER = ["cp1", "cp2", "cp3", "w1", "w2"]
CONTROL_PLANES = ["cp1", "cp2", "cp3"]
ADDRESS = {"cp1": "10.0.0.11:19001", "cp2": "10.0.0.12:19001", "cp3": "10.0.0.13:19001"}


class Cluster:
    def __init__(self, tmp: Path, channel: str = "1.35/stable") -> None:
        self.tmp = tmp
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        shutil.copy(FAKES / "fake-kubectl", bin_dir / "kubectl")
        shutil.copy(FAKES / "fake-snap", bin_dir / "snap")
        shutil.copy(FAKES / "fake-dqlite", bin_dir / "dqlite")
        # k8s-dqlite's node store (backend/cluster.yaml) and the leader's membership: three voters
        backend = tmp / "backend"
        backend.mkdir()
        (backend / "cluster.yaml").write_text("".join(
            f"- Address: {a}\n  ID: {i + 1}\n  Role: 0\n" for i, a in enumerate(ADDRESS.values())))
        self.dqlite = tmp / "dqlite.json"
        self.dqlite.write_text(json.dumps({"members": [{"ID": i + 1, "Address": a, "Role": 0}
                                                       for i, a in enumerate(ADDRESS.values())], "down": []}))
        self.state_file = tmp / "state.json"
        self.log = tmp / "log"
        self.log.write_text("")
        self.now = 1_000_000
        nodes = {h: {"kubeletVersion": "v1.34.2", "tracking": "1.34/stable", "held": True, "ready": True,
                     "unschedulable": False, "annotations": {}} for h in ORDER}
        self.write({"nodes": nodes, "volumes": {"pvc-a": "healthy", "pvc-b": "unknown"}, "kured": {},
                    "configmaps": {"kube-system/hkgen-microk8s-upgrade": {
                        "channel": channel, "order": " ".join(ORDER), "controlPlanes": " ".join(CONTROL_PLANES),
                        "voters": "3", "members": "3"}}})
        for host in CONTROL_PLANES:
            (tmp / f"{host}-dqlite.conf").write_text(
                f"dqlite={bin_dir / 'dqlite'}\nbackend={backend}\ntextfile={tmp / host / 'hkgen_dqlite.prom'}\n")
            (bin_dir / f"membership-{host}").write_text(
                f'#!/bin/bash\nexec bash {MEMBERSHIP} -c {tmp / f"{host}-dqlite.conf"} "$@"\n')
            (bin_dir / f"membership-{host}").chmod(0o755)
        for host in ORDER:
            membership = bin_dir / f"membership-{host}" if host in CONTROL_PLANES else ""
            (tmp / f"{host}.conf").write_text("\n".join([f"membership={membership}",
                f"node={host}", f"kubectl={bin_dir / 'kubectl'}", f"snap={bin_dir / 'snap'}",
                f"admin_kubeconfig={tmp / 'client.config'}", f"node_kubeconfig={tmp / f'kubelet-{host}.config'}",
                "namespace=kube-system", "config_map=hkgen-microk8s-upgrade",
                "status_map=hkgen-microk8s-upgrade-status", "kured_namespace=maintenance",
                "kured_daemonset=kured", "lock_annotation=weave.works/kured-node-lock", "timeout=1800",
                "drain_timeout=900", ""]))

    def read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def write(self, data: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(data))

    def edit(self, **nodes: dict[str, Any]) -> None:
        data = self.read()
        for host, fields in nodes.items():
            data["nodes"][host].update(fields)
        self.write(data)

    def run(self, mode: str, host: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "FAKE_STATE": str(self.state_file), "FAKE_LOG": str(self.log),
               "FAKE_NODE": host, "HKGEN_NOW": str(self.now), "FAKE_DQLITE": str(self.dqlite)}
        return subprocess.run(["bash", str(SCRIPT), mode, str(self.tmp / f"{host}.conf")], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    def round(self, minutes: int = 2) -> list[subprocess.CompletedProcess[str]]:
        """One tick of every timer: the conductors (control planes) then the agents (all nodes)."""
        runs = [self.run("conduct", h) for h in CONTROL_PLANES] + [self.run("agent", h) for h in ORDER]
        self.now += minutes * 60
        return runs

    def dqlite_down(self, *hosts: str) -> None:
        world = json.loads(self.dqlite.read_text())
        world["down"] = [ADDRESS[h] for h in hosts]
        self.dqlite.write_text(json.dumps(world))

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def refreshed(self) -> list[str]:
        return [c.split()[0].split("@")[1] for c in self.calls() if " refresh microk8s --channel=" in c]

    def drained(self) -> list[str]:
        return [c.split()[3] for c in self.calls() if c.split()[2:3] == ["drain"]]

    def status(self) -> dict[str, str] | None:
        found: dict[str, str] | None = self.read()["configmaps"].get("kube-system/hkgen-microk8s-upgrade-status")
        return found


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def test_nodes_upgrade_one_at_a_time_control_planes_first(cluster: Cluster) -> None:
    for _ in range(7):  # a node per round, plus one to finish
        cluster.round()
        data = cluster.read()
        # never two nodes cordoned at once, never a node cordoned without the kured lock held
        cordoned = [h for h, n in data["nodes"].items() if n["unschedulable"]]
        assert len(cordoned) <= 1
        if cordoned:
            assert json.loads(data["kured"]["weave.works/kured-node-lock"])["nodeID"] == cordoned[0]
    assert cluster.refreshed() == ORDER
    assert cluster.drained() == ORDER
    data = cluster.read()
    assert all(n["tracking"] == "1.35/stable" and n["held"] and not n["unschedulable"] for n in data["nodes"].values())
    assert cluster.status() is None and data["kured"] == {}  # both locks released
    # each drain comes after the previous node was uncordoned (back and Ready)
    calls = cluster.calls()
    for before, after in itertools.pairwise(ORDER):
        back = max(i for i, c in enumerate(calls) if c.endswith(f"uncordon {before}"))
        assert back < calls.index(next(c for c in calls if c.split()[2:4] == ["drain", after]))
    assert cluster.run("conduct", "cp2").stdout.strip() == "hkgen-microk8s-upgrade: every node runs MicroK8s 1.35"


def test_cp1_does_not_come_back(cluster: Cluster) -> None:
    cluster.edit(cp1={"never_back": True})
    for _ in range(5):  # 50 minutes: past the 30-minute timeout
        cluster.round(minutes=10)
    assert cluster.refreshed() == ["cp1"]
    assert cluster.drained() == ["cp1"]  # cp2 is never drained, refreshed or rebooted
    status = cluster.status()
    assert status is not None and status["state"] == "failed"
    assert status["reason"].startswith("cp1 is not back Ready on 1.35/stable after 1800s")
    # kured stays locked too: no reboot while the cluster is short of a control plane
    assert json.loads(cluster.read()["kured"]["weave.works/kured-node-lock"])["nodeID"] == "cp1"
    run = cluster.run("conduct", "cp3")
    assert run.returncode == 1 and "stopped: cp1 is not back Ready" in run.stdout


def test_upgrade_fails_on_the_second_node(cluster: Cluster) -> None:
    cluster.edit(cp2={"refresh_fails": True})
    for _ in range(4):
        cluster.round()
    assert cluster.refreshed() == ["cp1", "cp2"]  # cp2 tried once: its agent does not retry
    assert cluster.drained() == ["cp1", "cp2"]
    data = cluster.read()
    assert data["nodes"]["cp1"]["tracking"] == "1.35/stable"
    assert all(data["nodes"][h]["tracking"] == "1.34/stable" for h in ("cp2", "cp3", "w1", "w2"))
    status = cluster.status()
    assert status is not None and status["state"] == "failed"
    assert status["reason"] == "cp2: snap refresh from 1.34/stable to 1.35/stable failed"
    agent = cluster.run("agent", "cp2")
    assert agent.returncode == 1 and "stopped: snap refresh from 1.34/stable to 1.35/stable failed" in agent.stdout


def test_the_health_gate_holds_the_next_node(cluster: Cluster) -> None:
    data = cluster.read()
    data["volumes"]["pvc-a"] = "degraded"
    cluster.write(data)
    run = cluster.run("conduct", "cp1")
    assert run.returncode == 0 and "cp1 waits: Longhorn volume pvc-a is degraded" in run.stdout
    data["volumes"]["pvc-a"] = "healthy"
    data["nodes"]["w2"]["ready"] = False
    cluster.write(data)
    assert "cp1 waits: node w2 is not Ready and schedulable" in cluster.run("conduct", "cp1").stdout
    data["nodes"]["w2"]["ready"] = True
    data["kured"] = {"weave.works/kured-node-lock": '{"nodeID":"w1"}'}  # kured is rebooting w1
    cluster.write(data)
    assert "cp1 waits: kured holds the node lock" in cluster.run("conduct", "cp1").stdout
    assert cluster.drained() == [] and cluster.status() is None


def test_a_drain_blocked_by_a_budget_stops_with_the_node_uncordoned(cluster: Cluster) -> None:
    cluster.edit(cp1={"drain_blocked": True})
    run = cluster.run("conduct", "cp1")
    assert run.returncode == 1 and "FAILED: draining cp1 failed" in run.stdout
    assert not cluster.read()["nodes"]["cp1"]["unschedulable"]
    assert cluster.refreshed() == []


def test_a_kubelet_cannot_conduct(cluster: Cluster) -> None:
    """The agent only reads and annotates its own Node; the fake refuses anything else, as the
    Node authorizer would, so the script must not need more."""
    cluster.edit(w1={"annotations": {"hkgen.io/microk8s-channel": "1.35/stable"}})
    assert cluster.run("agent", "w1").returncode == 0
    assert not [c for c in cluster.calls() if "kubelet-w1.config" in c and " node w1" not in c]


def test_shellcheck_clean() -> None:
    run = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout


def test_seeds_and_tree_carry_the_upgrade(tmp_path: Path) -> None:
    import yaml

    from hkgen.areas.blueprint import build_blueprint
    from hkgen.render.jinja import render_blueprint
    from test_plan import model, reference_data

    data = reference_data()
    data["microk8s"]["channel"] = "1.35/stable"  # the change an admin commits
    tree = {str(k): v for k, v in render_blueprint(build_blueprint(model(data))).items()}
    (cm,) = [d for d in yaml.safe_load_all(tree["platform/configs/microk8s-upgrade/configmap.yaml"]) if d]
    assert cm["data"] == {"channel": "1.35/stable", "order": "cp1 cp2 cp3 w1 w2 w3 w4 w5 w6",
                          "controlPlanes": "cp1 cp2 cp3", "voters": "3", "members": "3"}
    for host, conductor in (("cp1", True), ("w1", False)):
        ud = yaml.safe_load(tree[f"nodes/{host}/user-data"])
        files = {f["path"]: f["content"] for f in ud["write_files"]}
        assert files["/usr/local/sbin/hkgen-microk8s-upgrade"] == SCRIPT.read_text()
        assert f"node={host}" in files["/etc/hkgen/microk8s-upgrade.conf"]
        checker = "/usr/local/sbin/hkgen-dqlite-membership"
        assert (f"membership={checker}" in files["/etc/hkgen/microk8s-upgrade.conf"]) is conductor
        assert (files.get(checker) == MEMBERSHIP.read_text()) is conductor
        assert (["systemctl", "enable", "--now", "hkgen-dqlite-membership.timer"] in ud["runcmd"]) is conductor
        assert ("/etc/systemd/system/hkgen-microk8s-upgrade-conduct.timer" in files) is conductor
        enable = ["systemctl", "enable", "--now", "hkgen-microk8s-upgrade-agent.timer"]
        if conductor:
            enable.append("hkgen-microk8s-upgrade-conduct.timer")
        assert enable in ud["runcmd"]


def test_a_missing_dqlite_voter_holds_the_upgrade(cluster: Cluster) -> None:
    """Every node Ready, but cp3's dqlite server does not answer: nothing is drained or refreshed."""
    cluster.dqlite_down("cp3")
    for _ in range(3):
        runs = cluster.round()
        assert "cp1 waits: dqlite: 2 of 3 dqlite voters answer (not answering: 10.0.0.13:19001)" in runs[0].stdout
    cluster.dqlite_down("cp2", "cp3")  # no quorum: the leader itself cannot be found
    run = cluster.run("conduct", "cp1")
    assert "cp1 waits: dqlite: the dqlite leader does not answer" in run.stdout
    assert cluster.drained() == [] and cluster.refreshed() == [] and cluster.status() is None
    assert cluster.read()["kured"] == {}  # kured's lock was never taken
    cluster.dqlite_down()
    cluster.round()
    assert cluster.drained() == ["cp1"]


def test_a_control_plane_back_without_its_voter_stops_the_upgrade(cluster: Cluster) -> None:
    """cp1 comes back Ready on the new minor, but its dqlite server stays away: cp1 is not done,
    cp2 is never drained, and after the timeout the upgrade stops with the reason."""
    cluster.round()  # cp1 drained, its agent refreshes the snap
    assert cluster.drained() == ["cp1"] and cluster.refreshed() == ["cp1"]
    cluster.dqlite_down("cp1")
    runs = cluster.round()
    assert "waiting for cp1 (kubelet v1.35" in runs[0].stdout
    assert "dqlite: 2 of 3 dqlite voters answer (not answering: 10.0.0.11:19001)" in runs[0].stdout
    for _ in range(4):
        cluster.round(minutes=10)
    assert cluster.drained() == ["cp1"]
    status = cluster.status()
    assert status is not None and status["state"] == "failed"
    assert status["reason"].startswith("cp1 is back on v1.35")
    assert "the datastore is not complete after 1800s: 2 of 3 dqlite voters answer" in status["reason"]
    assert cluster.read()["nodes"]["cp1"]["unschedulable"]  # left cordoned for the admin
