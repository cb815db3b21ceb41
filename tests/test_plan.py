"""`hkgen plan`: known answers for quorum, capacity, recovery times, power-cut order and JSON."""

from __future__ import annotations

import copy
import json
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
    assert [f.node for f in a.failures] == ["cp1", "cp2", "cp3", "w1", "w2", "w3", "w4", "w5", "w6"]
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


def test_tuned_recovery_versus_defaults() -> None:
    c = model(reference_data())
    tuned = {r.workload: r for r in analyse(c).recoveries}
    ha = tuned["home-assistant"]
    # (G + P) + E + T + L + A + I from domain-notes §4.3 with the reference settings
    expected = (20 + 5) + 15 + ha.steps[2][1] + 10 + 30 + 0
    assert ha.seconds == expected
    assert ha.default_seconds is None  # StatefulSet with default settings: never moves
    defaults = analyse(c, {"node_monitor_grace": DEFAULTS["node_monitor_grace"], "eviction": DEFAULTS["eviction"],
                           "policy": DEFAULT_POLICY, "source": "defaults"})
    slow = {r.workload: r for r in defaults.recoveries}["mosquitto"]
    assert slow.seconds == 55 + 300 + 30 + 360 + 30  # force-detach after 6 minutes


def test_deployment_with_defaults_takes_about_twelve_minutes() -> None:
    data = reference_data()
    data["customApps"] = [{"name": "notes", "image": "ghcr.io/example/notes:1.2.3", "port": 8080,
                           "storage": {"sizeGiB": 1, "mountPath": "/data"}}]
    rec = {r.workload: r for r in analyse(model(data)).recoveries}
    # custom apps with storage are StatefulSets; the default column still says never
    assert rec["notes"].default_seconds is None


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
    assert 20 < power["idle_watts"] < power["load_watts"] < 150
    order = [stage for stage, *_ in a.cold_start()]
    assert order.index("microk8s") < order.index("storage") < order.index("home-automation")
    assert a.home_assistant_back_after_power_cut() is not None


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
    """Issue 7 acceptance: Home Assistant, Mosquitto and zigbee2mqtt on a network coordinator."""
    rec = {r.workload: r for r in analyse(model(reference_data())).recoveries}
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
