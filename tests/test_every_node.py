"""hkgen's own every-node pods (kured, the image pre-pull DaemonSet) in `hkgen plan`'s capacity
figures, read from the rendered tree (analysis/daemons.py). Expected figures worked out by hand."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml

from hkgen.analysis.daemons import EveryNode, mib, millis, pod_requests, read_every_node
from hkgen.analysis.resilience import analyse, rendered_settings
from hkgen.areas.blueprint import build_blueprint
from hkgen.core.yamlio import dump
from hkgen.render.jinja import render_blueprint
from test_plan import model, reference_data


def _tree(data: dict[str, Any]) -> dict[PurePosixPath, bytes]:
    return dict(render_blueprint(build_blueprint(model(data))))


def test_quantities_and_the_schedulers_pod_request() -> None:
    assert (millis("10m"), millis("0.5"), millis(1), millis("2.5m")) == (10, 500, 1000, 3)
    assert (mib("32Mi"), mib("1Gi"), mib("512Ki"), mib("100M"), mib(1048576)) == (32, 1024, 1, 96, 1)
    # containers run together (10 + 5 m, 32 + 16 Mi); init containers one at a time, before them:
    # cpu max(15, 100, 1) = 100, memory max(48, 8, 64) = 64
    app = [{"requests": {"cpu": "10m", "memory": "32Mi"}}, {"requests": {"cpu": "5m", "memory": "16Mi"}}]
    init = [{"requests": {"cpu": "100m", "memory": "8Mi"}}, {"requests": {"cpu": "1m", "memory": "64Mi"}}]
    assert pod_requests(app, init) == (100, 64)
    assert pod_requests([None, {"limits": {"memory": "1Gi"}}]) == (0, 0)  # no requests: nothing reserved


def test_reference_counts_kured_everywhere_and_prepull_on_schedulable_nodes() -> None:
    c = model(reference_data())
    settings = rendered_settings(_tree(reference_data()))
    # from the rendered kured HelmRelease (10m, 32Mi, tolerates the control-plane taint) and the
    # pre-pull DaemonSet (three 1m/8Mi pulls and a 1m/8Mi hold: max(1 + 0, 1) = 1m, max(8, 8) = 8 Mi)
    assert settings["every_node"] == (EveryNode("image-prepull", 1, 8, False), EveryNode("kured", 10, 32, True))
    a = analyse(c, settings)
    assert a.settings["every_node"] == analyse(c).settings["every_node"]  # the model says the same
    # cp2 is a tainted control plane without disks and runs no apps. By hand, its requests are
    #   metallb-speaker 48 + longhorn-manager 192 + longhorn-csi-plugin 48   (platform, every node)
    #   + node-exporter 32 + smartctl-exporter 32                           (monitoring, per node)
    #   + kured 32                                                          (not the pre-pull: tainted)
    #   = 384 MiB;  cpu 20 + 50 + 20 + 20 + 10 + 10 = 130 m
    cp2 = a.loads["cp2"]
    assert (cp2.mem, cp2.cpu) == (384, 130)
    assert {p.workload for p in cp2.pods} >= {"kured"} and "image-prepull" not in {p.workload for p in cp2.pods}
    # a worker carries both: 32 + 8 MiB, 10 + 1 m more than without them
    without = analyse(c, {**settings, "every_node": ()})
    w1, bare = a.loads["w1"], without.loads["w1"]
    assert (w1.mem - bare.mem, w1.cpu - bare.cpu) == (40, 11)
    assert (cp2.mem - without.loads["cp2"].mem, cp2.cpu - without.loads["cp2"].cpu) == (32, 10)


def test_the_plan_counts_what_the_tree_asks_for() -> None:
    """A tree whose kured asks for 100Mi/50m: cp2's figure moves with it (352 + 100 MiB, 120 + 50 m)."""
    tree = _tree(reference_data())
    path = PurePosixPath("platform/controllers/kured/helmrelease-kured.yaml")
    docs = [d for d in yaml.safe_load_all(tree[path]) if d]
    docs[0]["spec"]["values"]["resources"]["requests"] = {"cpu": "50m", "memory": "100Mi"}
    tree[path] = dump(docs[0]).encode()
    a = analyse(model(reference_data()), rendered_settings(tree))
    assert (a.loads["cp2"].mem, a.loads["cp2"].cpu) == (452, 170)


def test_argo_cd_trees_are_read_too() -> None:
    data = reference_data()
    data["gitops"]["engine"] = "argocd"
    settings = rendered_settings(_tree(data))
    assert settings["every_node"] == (EveryNode("image-prepull", 1, 8, False), EveryNode("kured", 10, 32, True))


def test_nothing_is_counted_for_what_is_not_rendered() -> None:
    data = reference_data()
    data["os"]["upgrades"]["enabled"] = False  # no kured
    for app in ("home-assistant", "mosquitto", "zigbee2mqtt"):  # no home-critical app: no pre-pull
        data["apps"][app]["enabled"] = False
    c = model(data)
    assert rendered_settings(_tree(data))["every_node"] == ()
    assert analyse(c).settings["every_node"] == ()


def test_which_daemonsets_run_on_tainted_control_planes() -> None:
    def one(tolerations: Any) -> bool:
        found: list[EveryNode] = []
        read_every_node({"kind": "DaemonSet", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "containers": [{"resources": {"requests": {"cpu": "5m", "memory": "4Mi"}}}],
            "tolerations": tolerations}}}}, found)
        assert (found[0].cpu_millis, found[0].memory_mib) == (5, 4)
        return found[0].on_control_planes

    cp = "node-role.kubernetes.io/control-plane"
    assert one([{"operator": "Exists"}])  # tolerates every taint
    assert one([{"key": cp, "operator": "Exists", "effect": "NoSchedule"}])
    assert one([{"key": cp, "effect": "NoSchedule"}])  # Equal, value "": the taint's own value
    assert not one([{"key": cp, "value": "x", "effect": "NoSchedule"}])
    assert not one([{"key": cp, "operator": "Exists", "effect": "NoExecute"}])
    assert not one(None)


def test_validates_memory_sum_counts_them_too() -> None:
    """validate's fit check: kured on all 9 nodes (9 x 32 MiB) and the pre-pull on the 7
    schedulable ones (cp1, w1-w6: 7 x 8 MiB) add 288 + 56 = 344 MiB to the platform's request."""
    from hkgen.analysis.capacity import platform_memory_mib

    data = reference_data()
    with_them = platform_memory_mib(model(data))
    data["os"]["upgrades"]["enabled"] = False
    for app in ("home-assistant", "mosquitto", "zigbee2mqtt"):
        data["apps"][app]["enabled"] = False
    assert with_them - platform_memory_mib(model(data)) == 344
