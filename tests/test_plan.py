"""`hkgen plan`: known answers for quorum, capacity, recovery times, power-cut order and JSON."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hkgen.analysis.resilience import DEFAULT_POLICY, DEFAULTS, analyse
from hkgen.config.catalogue import load_catalogue
from hkgen.config.load import load_file
from hkgen.config.model import Cluster, build_model
from hkgen.config.schema import apply_defaults, default_versions

REFERENCE = Path(__file__).resolve().parents[1] / "clusters" / "home" / "cluster.yaml"


def reference_data() -> dict[str, Any]:
    data: dict[str, Any] = load_file(REFERENCE).data
    return copy.deepcopy(data)


def model(data: dict[str, Any]) -> Cluster:
    """Build a model directly (bypassing validation, to study clusters validate rejects)."""
    return build_model(apply_defaults(data), "test.yaml", default_versions(), list(load_catalogue()))


def test_reference_survives_every_single_node_failure() -> None:
    a = analyse(model(reference_data()))
    assert [f.node for f in a.failures] == ["cp1", "cp2", "cp3", "w1", "w2", "w3", "w4", "w5", "w6",
                                           "zsat-garden", "zsat-attic"]
    assert all(f.quorum_kept for f in a.failures)
    assert not any(f.stranded for f in a.failures)
    assert not any(f.volumes_at_risk for f in a.failures)
    assert not a.unplaced
    assert a.failures_tolerated == 1


def test_two_control_planes_lose_quorum_on_either_failure() -> None:
    data = reference_data()
    data["nodes"][2]["role"] = "worker"  # cp3 becomes a worker: 2 control planes left
    a = analyse(model(data))
    by_node = {f.node: f for f in a.failures}
    assert not by_node["cp1"].quorum_kept
    assert not by_node["cp2"].quorum_kept
    assert by_node["w1"].quorum_kept
    assert a.failures_tolerated == 0


def test_four_control_planes_give_three_voters_and_a_standby() -> None:
    data = reference_data()
    data["nodes"][3]["role"] = "control-plane"  # w1 becomes the fourth control plane
    c = model(data)
    assert [n.hostname for n in c.voters] == ["cp1", "cp2", "cp3"]
    assert [n.hostname for n in c.standbys] == ["w1"]
    assert analyse(c).failures_tolerated == 2


def test_usb_coordinator_is_a_single_point_of_failure() -> None:
    a = analyse(model(reference_data()))
    by_node = {f.node: f for f in a.failures}
    assert by_node["w1"].pinned_down == ("zigbee2mqtt-house",)
    assert all(not f.pinned_down for f in a.failures if f.node != "w1")
    # a pinned workload has no recovery prediction: it cannot move
    assert "zigbee2mqtt-house" not in {r.workload for r in a.recoveries}


def test_replica_one_risks_data_on_any_storage_node() -> None:
    data = reference_data()
    data["storage"]["longhorn"]["replicas"] = 1
    a = analyse(model(data))
    assert all(f.volumes_at_risk for f in a.failures if f.node in {"cp1", "w1", "w2"})
    assert not any(f.volumes_at_risk for f in a.failures if f.node in {"cp2", "cp3"})


def test_tuned_recovery_is_the_sum_worked_out_by_hand() -> None:
    rec = {r.workload: r for r in analyse(model(reference_data())).recoveries}
    ha = rec["home-assistant"]
    # cluster.yaml: grace 30, eviction 10; Kubernetes monitor period 5; HA termination grace 30;
    # Pi estimates: Longhorn reaction 10, attach 30; image pre-pulled: 0.
    # 30 + 5 + 10 + 30 + 10 + 30 + 0 = 115 s running; + 45 s Home Assistant start = 160 s usable.
    assert [s for _, s in ha.steps] == [35, 10, 30, 10, 30, 0]
    assert (ha.seconds, ha.usable) == (115, 160)
    assert ha.default_seconds is None  # StatefulSet with default settings: never moves
    # Mosquitto: the same 115 s, + 3 s start = 118 s.
    assert (rec["mosquitto"].seconds, rec["mosquitto"].usable) == (115, 118)


def test_recovery_with_kubernetes_defaults() -> None:
    c = model(reference_data())
    defaults = analyse(c, {"node_monitor_grace": DEFAULTS["node_monitor_grace"], "eviction": DEFAULTS["eviction"],
                           "policy": DEFAULT_POLICY, "source": "defaults", "workloads": {}})
    slow = {r.workload: r for r in defaults.recoveries}["mosquitto"]
    # 50 grace + 5 period + 300 eviction + 30 termination + 360 force detach + 30 attach + 0 pull
    assert slow.seconds == 775


def test_a_deployment_with_defaults_takes_about_twelve_minutes() -> None:
    from hkgen.analysis.resilience import recoveries
    from hkgen.config.catalogue import Volume, Workload

    c = model(reference_data())
    notes = Workload(app="notes", name="notes", kind="Deployment", replicas=1, cpu_millis=100, memory_mib=128,
                     per_node=False, termination_grace_seconds=30, volumes=(Volume("data", 1, "local"),))
    settings = {"node_monitor_grace": 30, "eviction": 10, "policy": "delete-both-statefulset-and-deployment-pod"}
    (rec,) = recoveries(c, [notes], settings)
    # defaults: 50 grace + 5 period, 300 s eviction, force detach after 360 s, attach 30 = 745 s
    assert rec.default_seconds == 745
    # tuned, image not pre-pulled (100 MB default at 8 MB/s = 13 s):
    # 30 + 5 + 10 + 30 + 10 + 30 + 13 = 128 s
    assert rec.seconds == 128


def test_image_pull_is_counted_when_not_pre_pulled() -> None:
    c = model(reference_data())
    a = analyse(c, {"prepulled": []})
    ha = {r.workload: r for r in a.recoveries}["home-assistant"]
    # 1100 MB at 8 MB/s = 137.5 -> 138 s on top of the 115 s
    assert ha.steps[-1] == ("image pull (not pre-pulled; estimate)", 138)
    assert ha.seconds == 115 + 138


def test_volumes_that_no_longer_fit_after_a_storage_node_dies() -> None:
    data = reference_data()
    data["apps"]["monitoring"]["storageGiB"] = 30
    per_node = sum(v.size_gib for v in analyse(model(data)).volumes)  # 3 replicas on 3 nodes: each holds all
    storage = {"cp1", "w1", "w2", "w3"}
    # usable GiB = GB * 1e9 / 2**30 * (1 - 10 % reserved); aim just below what one node must hold
    size_gb = int(per_node * 0.93 / (0.9 * 1e9 / 2**30))
    for node in data["nodes"]:
        if node["hostname"] in storage:
            node["disks"] = [{"id": f"usb-disk-{node['hostname']}", "sizeGB": size_gb}]
        else:
            node.pop("disks", None)
    a = analyse(model(data))
    # four storage nodes hold every volume's three replicas ...
    assert a.volumes_not_fitting == ()
    # ... but the three that remain when any storage node dies cannot (each would need all volumes)
    by_node = {f.node: f for f in a.failures}
    for host in storage:
        assert by_node[host].volumes_not_fitting, host
    assert not by_node["cp2"].volumes_not_fitting


def test_power_and_cold_start_are_reported() -> None:
    a = analyse(model(reference_data()))
    power = a.power()
    # 9 Pi 4 at 2.7 W idle / 6.4 W load; 10 SSDs (cp1 boots from one and has a data disk, cp2 and
    # cp3 boot from one, w1-w6 one data disk each) at 0.6 / 2.5 W; satellites Pi 3B+ 1.9 / 5.1
    # and Pi 3B 1.4 / 3.7. Idle 24.3 + 6.0 + 3.3 = 33.6 W; load 57.6 + 25.0 + 8.8 = 91.4 W.
    assert power["idle_watts"] == 33.6
    assert power["load_watts"] == 91.4
    assert power["kwh_per_year_idle"] == round(33.6 * 8.76, 1)
    order = [stage for stage, *_ in a.cold_start()]
    assert order.index("microk8s") < order.index("storage") < order.index("home-automation")
    # boot 60 + microk8s 60 + kubernetes 45 + storage 60 + home automation 50 = 275 s
    assert a.home_assistant_back_after_power_cut() == 275


def test_satellites_are_in_the_failure_table() -> None:
    a = analyse(model(reference_data()))
    by_node = {f.node: f for f in a.failures}
    garden = by_node["zsat-garden"]
    assert garden.kind == "satellite" and garden.survivable
    assert garden.zigbee_down == (("garden", None),)  # down until the satellite returns
    assert by_node["zsat-attic"].zigbee_down == (("attic", None),)
    # w1 holds the house stick: its network is down until w1 returns
    assert ("house", None) in by_node["w1"].zigbee_down


def test_planned_reboot_rows_worked_out_by_hand() -> None:
    from hkgen.analysis.planned import planned_reboots

    a = analyse(model(reference_data()))
    rows = {p.host: p for p in planned_reboots(a)}
    moves = {m.workload: m for p in rows.values() for m in p.moves}
    # Home Assistant drained: stop 10 + Longhorn detach 5 + attach 30 + pull 0 = 45 s; +45 s start = 90 s
    ha = moves["home-assistant"]
    assert (ha.how, ha.running, ha.usable) == ("moves", 45, 90)
    # mosquitto: 1 + 5 + 30 = 36 s; + 3 = 39 s
    assert (moves["mosquitto"].running, moves["mosquitto"].usable) == (36, 39)
    # the USB-pinned zigbee2mqtt waits for its node: stop 3 + reboot 120 = 123 s; + 20 = 143 s
    house = moves["zigbee2mqtt-house"]
    assert (house.how, house.running, house.usable) == ("waits for the node", 123, 143)
    # a satellite reboot: 60 s until ser2net answers + 20 s zigbee2mqtt start
    assert rows["zsat-garden"].zigbee_down == (("garden", 80),)
    assert all(p.survivable for p in rows.values())


def test_two_nodes_down_together() -> None:
    from hkgen.analysis.planned import scenario

    a = analyse(model(reference_data()))
    both_cps = scenario(a, frozenset({"cp1", "cp2"}))
    # 1 of 3 voters left: no majority, the API stops and nothing moves
    assert (both_cps["quorum_kept"], both_cps["voters_left"], both_cps["survivable"]) == (False, 1, False)
    assert {m["seconds_until_running"] for m in both_cps["moved"]} == {None}
    two_workers = scenario(a, frozenset({"w2", "w3"}))
    # 3 voters left; 2 storage nodes down < 3 replicas: every volume keeps a copy
    assert two_workers["quorum_kept"] and two_workers["survivable"]
    assert two_workers["volumes_maybe_unavailable"] == []
    three = scenario(a, frozenset({"w1", "w2", "w3"}))
    # as many storage nodes down as replicas: some volume may have had all three copies there
    assert three["volumes_maybe_unavailable"] and not three["survivable"]
    assert "house" in three["zigbee_networks_down_until_return"]


def test_cli_json_is_deterministic_and_documented(hkgen, repo: Path) -> None:
    first = hkgen("plan", "--format", "json", "clusters/home", cwd=repo)
    second = hkgen("plan", "--format", "json", "clusters/home", cwd=repo)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout == second.stdout
    data = json.loads(first.stdout)
    documented = (repo / "docs" / "plan-json.md").read_text()
    for key in data:
        assert f"`{key}`" in documented, f"top-level key {key} is not documented in docs/plan-json.md"
    assert data["verdict"]["survives_any_single_node_failure"] is True


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_plan_runs(hkgen, repo: Path, fmt: str) -> None:
    run = hkgen("plan", "--format", fmt, "clusters/home", cwd=repo)
    assert run.returncode == 0
    assert "Traceback" not in run.stdout + run.stderr


def test_figures_come_from_the_rendered_tree_and_agree_with_the_model() -> None:
    from hkgen.analysis.resilience import rendered_settings
    from hkgen.areas.blueprint import build_blueprint
    from hkgen.render.jinja import render_blueprint

    c = model(reference_data())
    settings = rendered_settings(render_blueprint(build_blueprint(c)))
    assert settings["node_monitor_grace"] == c.node_monitor_grace_seconds
    assert settings["policy"] == "delete-both-statefulset-and-deployment-pod"
    assert settings["workloads"]["home-assistant"] == {"eviction": c.pod_eviction_seconds, "termination_grace": 30}
    from_tree = {r.workload: r.seconds for r in analyse(c, settings).recoveries}
    from_model = {r.workload: r.seconds for r in analyse(c).recoveries}
    assert from_tree == from_model


def test_reference_recovery_within_two_minutes() -> None:
    """Issue 7/20 acceptance: Home Assistant, Mosquitto and zigbee2mqtt on a network coordinator
    run again within 120 s of an unplanned node loss (figures read from the rendered tree)."""
    from hkgen.analysis.resilience import rendered_settings
    from hkgen.areas.blueprint import build_blueprint
    from hkgen.render.jinja import render_blueprint

    c = model(reference_data())
    rec = {r.workload: r for r in analyse(c, rendered_settings(render_blueprint(build_blueprint(c)))).recoveries}
    for name in ("home-assistant", "mosquitto", "zigbee2mqtt-garden", "zigbee2mqtt-attic"):
        assert rec[name].seconds <= 120, (name, rec[name].steps)
        assert rec[name].default_seconds is None  # never, with Kubernetes defaults (StatefulSet)


def test_cluster_hash_is_cached_and_follows_equality() -> None:
    import pickle

    data = reference_data()
    first, second = model(data), model(copy.deepcopy(data))
    assert first == second and hash(first) == hash(second)
    assert hash(first) == hash(first)  # cached (per-cluster caches look it up for every node)
    other = copy.deepcopy(data)
    other["nodes"][0]["hostname"] = "cp9"
    assert model(other) != first
    clone = pickle.loads(pickle.dumps(first))  # noqa: S301 - our own bytes
    assert "_hash" not in clone.__dict__  # string hashes differ between processes
    assert clone == first and hash(clone) == hash(first)


def test_cli_text_a_user_reads(hkgen, repo: Path) -> None:
    run = hkgen("plan", "clusters/home", "--down", "cp1,cp2", cwd=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    # recovery table: running again, app start, usable (115 + 45 = 160), defaults
    assert any(re.fullmatch(r"home-assistant\s+StatefulSet\s+115 s\s+\+45 s\s+160 s\s+never", ln) for ln in lines)
    assert any(re.fullmatch(r"mosquitto\s+StatefulSet\s+115 s\s+\+3 s\s+118 s\s+never", ln) for ln in lines)
    assert any(re.match(r"zsat-garden \(satellite\)\s+kept\s+yes\s+Zigbee garden until it returns", ln) for ln in lines)
    assert any(re.match(r"w1\s+yes\s+.*zigbee2mqtt-house waits for the node 123/143", ln) for ln in lines)
    text = run.stdout
    assert "If cp1, cp2 die together:" in text
    assert "quorum LOST (1 voter(s) left)" in text
    assert "survivable: NO" in text
    assert "Verdict: survives any single node failure; every planned reboot is survivable" in text
    bad = hkgen("plan", "clusters/home", "--down", "cp9", cwd=repo)
    assert bad.returncode == 2 and "no node or satellite called cp9" in bad.stderr


def test_three_pi_starter_with_grafana_is_refused(hkgen, tmp_path: Path) -> None:
    """A 3 x 4 GiB HA starter passes its own plan; enabling Grafana there cannot survive a node."""
    made = hkgen("init", str(tmp_path / "r"), "--nodes", "3", "--name", "home")
    assert made.returncode == 0, made.stdout + made.stderr
    file = tmp_path / "r" / "clusters" / "home" / "cluster.yaml"
    assert hkgen("plan", str(file)).returncode == 0
    text = file.read_text()
    text = text.replace("  # grafana: enable it", "  grafana:\n    enabled: true\n  # grafana: enable it", 1)
    file.write_text(text)
    run = hkgen("validate", str(file))
    assert run.returncode == 1
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("nodes:"))
    assert f"cluster.yaml:{line}:1: $.nodes: topology ha promises to survive the loss of any one node" in run.stdout
    assert "hint: add a schedulable worker" in run.stdout


@pytest.mark.parametrize("nodes", [1, 3, 4, 6, 9])
def test_every_starter_passes_its_own_plan(hkgen, tmp_path: Path, nodes: int) -> None:
    made = hkgen("init", str(tmp_path / "r"), "--nodes", str(nodes), "--name", "home")
    assert made.returncode == 0, made.stdout + made.stderr
    run = hkgen("plan", str(tmp_path / "r" / "clusters" / "home"))
    if nodes == 1:  # declared single-node: no failover promised, and the plan says so
        assert "topology: single-node" in (tmp_path / "r" / "clusters" / "home" / "cluster.yaml").read_text()
        assert run.returncode == 1 and "Verdict: a single node failure is NOT survivable" in run.stdout
    else:
        assert run.returncode == 0, run.stdout
        assert "Verdict: survives any single node failure; every planned reboot is survivable" in run.stdout


def test_rebuild_is_flash_and_power_on_with_a_predicted_time() -> None:
    from hkgen.analysis.rebuild import rebuild_report

    c = model(reference_data())
    r = rebuild_report(c)
    assert r["steps"][0].startswith("write each card: hkgen boot-media") and r["steps"][1].startswith("power every")
    assert not any("kubectl" in s or "flux " in s for s in r["steps"])
    stages = [o["stage"] for o in r["order"]]
    assert stages == ["first boot", "cluster", "gitops engine", "platform", "restore", "apps"]
    assert r["home_assistant_back_seconds"] == r["order"][-1]["cumulative_seconds"] > 1800
    # Without restoreOnRebuild there is no restore stage, and the apps come back sooner.
    data = reference_data()
    data["storage"]["backup"]["restoreOnRebuild"] = False
    plain = rebuild_report(model(data))
    assert "restore" not in [o["stage"] for o in plain["order"]]
    assert plain["home_assistant_back_seconds"] < r["home_assistant_back_seconds"]
