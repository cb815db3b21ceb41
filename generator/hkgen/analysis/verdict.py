"""`topology: ha` is a promise: the cluster survives the loss of any one node. `hkgen validate` (and
so render and publish) holds the file to it with the planner's verdict, located at the node list,
with a hint saying what to add or disable. Also: a grace period too short for a node on Wi-Fi.

Cheap on purpose: the model-based analysis (no render), cached per cluster.
"""

from __future__ import annotations

from ..config.model import Cluster
from .timing import WIFI_MIN_GRACE

__all__ = ["survival_problems", "wifi_grace_problems"]

Found = tuple[tuple[str | int, ...], str, str]  # (path in cluster.yaml, message, hint)


def survival_problems(cluster: Cluster) -> list[Found]:
    """Why an HA cluster would not survive one of its nodes failing (empty: it would)."""
    if cluster.topology != "ha" or len(cluster.control_planes) < 3:
        return []  # fewer control planes: validate's topology rule already says so
    from .resilience import analyse

    a = analyse(cluster)
    out: list[Found] = []
    if a.unplaced:
        names = ", ".join(sorted({p.workload for p in a.unplaced}))
        out.append((("nodes",), f"topology ha, but no node has room for: {names}",
                    "add a node (or more memory), or disable an app (apps.<name>.enabled: false)"))
        return out
    bad = [f for f in a.failures if f.kind == "node" and not f.survivable]
    if not bad:
        return out
    reasons: list[str] = []
    for f in bad:
        why = []
        if not f.quorum_kept:
            why.append("quorum lost")
        if f.stranded:
            why.append("no room for " + ", ".join(f.stranded))
        if f.volumes_at_risk:
            why.append("volumes lose their last replica")
        reasons.append(f"{f.node} ({'; '.join(why)})")
    # Name an app that is on: the heavy, non-essential ones first (they free the most room for
    # Home Assistant and its broker), else one whose pods found no room.
    enabled = {app.name for app in cluster.apps if app.enabled}
    stranded = {name for f in bad for name in f.stranded}
    apps: list[str] = [n for n in ("monitoring", "grafana") if n in enabled]
    apps += sorted({w.app for w in a.workloads if w.name in stranded} & enabled)
    app = apps[0] if apps else "<name>"
    out.append((("nodes",),
                "topology ha promises to survive the loss of any one node, but losing " + ", ".join(reasons)
                + " is not survivable (see `hkgen plan`)",
                f"add a schedulable worker (or give nodes more memory), or disable an app such as {app} "
                f"(apps.{app}.enabled: false)"))
    return out


def wifi_grace_problems(cluster: Cluster) -> list[Found]:
    """A node on Wi-Fi with a grace period its normal jitter would trip (flapping NotReady, evictions)."""
    wifi = [n.hostname for n in cluster.nodes if n.link == "wifi"]
    grace = cluster.node_monitor_grace_seconds
    if not wifi or grace >= WIFI_MIN_GRACE:
        return []
    return [(("microk8s", "failover", "nodeMonitorGracePeriodSeconds"),
             f"{', '.join(wifi)} {'is' if len(wifi) == 1 else 'are'} on Wi-Fi: a {grace} s grace period "
             f"(a lease renewal every {grace / 4:g} s) marks a node NotReady after {grace - grace / 4:g} s "
             "of lost packets, which Wi-Fi has now and then: pods would be evicted from a healthy node",
             f"set nodeMonitorGracePeriodSeconds to {WIFI_MIN_GRACE} or more, or cable the node")]
