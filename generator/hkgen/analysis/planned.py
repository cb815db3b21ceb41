"""Planned maintenance and multi-node scenarios for `hkgen plan`.

* A planned reboot (or MicroK8s upgrade) of one node: the node is cordoned and drained first, one
  node at a time, so an app's downtime is its move, not the reboot: graceful stop (estimate, capped
  by the rendered termination grace), Longhorn's clean detach and the attach on the new node
  (estimates), the image pull (none when pre-pulled), then the app's start. A workload with
  another replica elsewhere is not down at all (its PodDisruptionBudget keeps one); a CloudNativePG
  primary is switched over; a pinned workload (USB stick) is down for the whole reboot.
* A satellite's reboot takes its Zigbee networks down until ser2net answers again and
  zigbee2mqtt reconnects.
* `scenario`: several nodes down at once (quorum, pods without a place, volumes whose every
  replica may have been on the dead nodes, Zigbee networks down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .resilience import Analysis, displaced_without_place, fit_volumes
from .timing import PI, app_start, app_stop, pull_seconds

__all__ = ["CNPG_SWITCHOVER", "Move", "PlannedReboot", "planned_reboots", "scenario"]

CNPG_SWITCHOVER = 10  # seconds: CloudNativePG promotes a standby when the primary is evicted (estimate)


@dataclass(frozen=True)
class Move:
    """One workload's fate during a planned reboot of its node."""

    workload: str
    how: str  # "moves" | "replica elsewhere" | "switchover" | "waits for the node"
    running: int  # seconds without a running pod
    usable: int  # seconds until the app answers again


@dataclass(frozen=True)
class PlannedReboot:
    """A planned reboot (or MicroK8s upgrade) of one host."""

    host: str
    kind: str  # "node" | "satellite"
    moves: tuple[Move, ...]
    zigbee_down: tuple[tuple[str, int], ...]
    survivable: bool  # the same node failing unplanned is survivable, so draining it is too

    @property
    def longest(self) -> int:
        """Longest time any app on the host is not usable."""
        return max((m.usable for m in self.moves), default=0)


def _move(a: Analysis, name: str, host: str, reboot: int) -> Move:
    w = next(w for w in a.workloads if w.name == name)
    if w.replicas > 1 and w.kind != "Cluster":
        return Move(name, "replica elsewhere", 0, 0)
    if w.kind == "Cluster":
        return Move(name, "switchover", CNPG_SWITCHOVER, CNPG_SWITCHOVER)
    rendered = a.settings.get("workloads", {}).get(name, {})
    grace = int(rendered.get("termination_grace", w.termination_grace_seconds))
    stop = app_stop(w.app, name, grace)
    start = app_start(w.app, name)
    if w.pinned_to == host:
        return Move(name, "waits for the node", stop + reboot, stop + reboot + start)
    image = a.settings.get("images", {}).get(name)
    pull = 0 if image is not None and image in a.settings.get("prepulled", ()) else pull_seconds(w.app, name)
    volume = PI["longhorn_detach"] + PI["attach"] if w.volumes else 0
    running = stop + volume + pull
    return Move(name, "moves", running, running + start)


def planned_reboots(a: Analysis, *, reboot: int = PI["node_reboot"]) -> list[PlannedReboot]:
    """Every node's and satellite's planned reboot, one at a time (`reboot`: seconds the node is away)."""
    failures = {f.node: f for f in a.failures}
    out: list[PlannedReboot] = []
    for node in a.cluster.nodes:
        host = node.hostname
        on_node = sorted({p.workload for p in a.loads[host].pods if not p.every_node and p.app != "platform"})
        moves = tuple(_move(a, name, host, reboot) for name in on_node)
        nets = {w.name: w.item for w in a.workloads if w.app == "zigbee2mqtt" and w.item}
        zigbee = tuple(sorted((str(nets[m.workload]), m.usable) for m in moves if m.workload in nets))
        out.append(PlannedReboot(host, "node", moves, zigbee, failures[host].survivable))
    z2m = app_start("zigbee2mqtt", "zigbee2mqtt")
    for sat in a.cluster.satellites:
        nets_down = tuple(sorted((z.name, PI["satellite_reboot"] + z2m) for z in a.cluster.zigbee
                                 if z.satellite == sat.hostname and a.cluster.app("zigbee2mqtt") is not None))
        out.append(PlannedReboot(sat.hostname, "satellite", (), nets_down, True))
    return out


def scenario(a: Analysis, down: frozenset[str]) -> dict[str, Any]:
    """Several hosts down at once: what still works (the JSON `scenario` document)."""
    c = a.cluster
    nodes = {n.hostname for n in c.nodes}
    satellites = {s.hostname for s in c.satellites}
    unknown = sorted(down - nodes - satellites)
    if unknown:
        raise KeyError(", ".join(unknown))
    gone = frozenset(down & nodes)
    voters = [n.hostname for n in c.voters]
    voters_left = [v for v in voters if v not in gone]
    # dqlite keeps working while a majority of its voters answers; stand-bys are promoted only
    # by a working majority, so several voters lost at once are not replaced.
    quorum = 2 * len(voters_left) > len(voters)
    stranded = sorted({p.workload for p in displaced_without_place(a.loads, gone)}) if gone else []
    pinned = sorted(w.name for w in a.workloads if w.pinned_to in gone)
    stranded = [w for w in stranded if w not in pinned]
    storage_down = sorted(n.hostname for n in c.storage_nodes if n.hostname in gone)
    # Longhorn keeps `replicas` copies on distinct nodes; with that many storage nodes down, some
    # volume may have had every copy there (unavailable until one returns).
    unavailable = [v.name for v in a.volumes] if storage_down and len(storage_down) >= c.replicas else []
    not_fitting = fit_volumes(c, list(a.volumes), gone, a.capacity) if storage_down and not unavailable else []
    recovery = {r.workload: r for r in a.recoveries}
    moved = []
    for host in sorted(gone):
        for name in sorted({p.workload for p in a.loads[host].pods if not p.every_node and p.app != "platform"}):
            if name in pinned or name in stranded:
                continue
            rec = recovery.get(name)
            moved.append({"workload": name, "from": host,
                          "seconds_until_running": rec.seconds if rec and quorum else None,
                          "seconds_until_usable": rec.usable if rec and quorum else None})
    nets = {w.name: w.item for w in a.workloads if w.app == "zigbee2mqtt" and w.item}
    stuck = {str(nets[m["workload"]]) for m in moved if m["workload"] in nets} if not quorum else set()
    zigbee_down = sorted({str(z.name) for z in c.zigbee if z.satellite in down or z.node in gone} | stuck)
    return {
        "down": sorted(down),
        "quorum_kept": quorum,
        "voters_left": len(voters_left),
        "pods_without_a_place": stranded,
        "pinned_workloads_down": pinned,
        "storage_nodes_down": storage_down,
        "volumes_maybe_unavailable": unavailable,
        "volumes_not_fitting_after": not_fitting,
        "moved": moved,
        "zigbee_networks_down_until_return": zigbee_down,
        "survivable": quorum and not stranded and not unavailable,
    }
