"""`hkgen plan`'s report: the analysis (`resilience`) and the planned maintenance (`planned`) as the
stable JSON document docs/plan-json.md describes, which the text output and the cluster's docs read.
"""

from __future__ import annotations

from typing import Any

from .capacity import allocatable_cpu_millis, allocatable_mib
from .planned import planned_reboots
from .resilience import JSON_VERSION, Analysis, usable_gib
from .timing import PI

__all__ = ["report"]


def report(a: Analysis) -> dict[str, Any]:
    """The analysis as the stable JSON document of `hkgen plan --format json` (docs/plan-json.md)."""
    c = a.cluster

    nodes = []
    for n in c.nodes:
        load = a.loads[n.hostname]
        nodes.append(
            {
                "hostname": n.hostname,
                "role": n.role,
                "dqlite": "voter" if n in c.voters else "stand-by" if n in c.standbys else None,
                "schedulable": n.schedulable,
                "board": n.board,
                "memory_gib": n.memory_gib,
                "storage_gb": n.storage_gb,
                "memory_mib": {"allocatable": allocatable_mib(n), "requested": load.mem, "headroom": load.free_mem},
                "cpu_millis": {
                    "allocatable": allocatable_cpu_millis(n),
                    "requested": load.cpu,
                    "headroom": load.free_cpu,
                },
                "pods": sorted(p.workload for p in load.pods),
            }
        )
    failures = [
        {
            "node": f.node,
            "quorum_kept": f.quorum_kept,
            "voters_left": f.voters_left,
            "pods_without_a_place": list(f.stranded),
            "replicas_without_a_place": list(f.degraded),
            "pinned_workloads_down": list(f.pinned_down),
            "volumes_losing_last_replica": list(f.volumes_at_risk),
            "volumes_not_fitting_after": list(f.volumes_not_fitting),
            "survivable": f.survivable,
            "kind": f.kind,
            "apps_down": [{"workload": w, "seconds_until_running": run, "seconds_until_usable": use}
                          for w, run, use in f.apps_down],
            "zigbee_networks_down": [{"network": n, "seconds_until_usable": s} for n, s in f.zigbee_down],
        }
        for f in a.failures
    ]
    recoveries = [
        {
            "workload": r.workload,
            "app": r.app,
            "kind": r.kind,
            "steps": [{"what": what, "seconds": s} for what, s in r.steps],
            "seconds_until_running": r.seconds,
            "app_start_seconds": r.start,
            "seconds_until_usable": r.usable,
            "defaults_seconds_until_running": r.default_seconds,
        }
        for r in a.recoveries
    ]
    planned: list[dict[str, Any]] = [
        {"host": p.host, "kind": p.kind, "survivable": p.survivable,
         "moves": [{"workload": m.workload, "how": m.how, "seconds_until_running": m.running,
                    "seconds_until_usable": m.usable} for m in p.moves],
         "zigbee_networks_down": [{"network": n, "seconds_until_usable": s} for n, s in p.zigbee_down]}
        for p in planned_reboots(a)
    ]
    # A MicroK8s upgrade drains the same way; only what waits for the node waits longer.
    upgrade = {p.host: p.longest for p in planned_reboots(a, reboot=PI["microk8s_refresh"])}
    for row in planned:
        row["longest_seconds_until_usable"] = max((int(m["seconds_until_usable"]) for m in row["moves"]), default=0)
        row["longest_seconds_until_usable_upgrade"] = upgrade[str(row["host"])] if row["kind"] == "node" else None
    spofs = sorted({w for f in a.failures for w in f.pinned_down})
    return {
        "format": JSON_VERSION,
        "cluster": c.name,
        "control_plane": {
            "voters": [n.hostname for n in c.voters],
            "stand_bys": [n.hostname for n in c.standbys],
            "failures_in_a_row_tolerated": a.failures_tolerated,
        },
        "nodes": nodes,
        "unplaced_pods": sorted(p.workload for p in a.unplaced),
        "single_node_failures": failures,
        "single_points_of_failure": spofs,
        "storage": {
            "replicas": c.replicas,
            "usable_gib": round(sum(usable_gib(c, n) for n in c.storage_nodes), 1),
            "requested_gib": sum(v.size_gib for v in a.volumes) * c.replicas,
            "volumes": [{"name": v.name, "size_gib": v.size_gib, "backup_class": v.backup_class} for v in a.volumes],
            "volumes_not_fitting": list(a.volumes_not_fitting),
        },
        "failover_settings": {k: v for k, v in a.settings.items() if k != "every_node"},
        # hkgen's own DaemonSets (kured, image pre-pull) as rendered, counted in `nodes` (daemons.py)
        "every_node_pods": [{"name": e.name, "cpu_millis": e.cpu_millis, "memory_mib": e.memory_mib,
                             "on_control_planes": e.on_control_planes} for e in a.settings.get("every_node", ())],
        "recovery": recoveries,
        "power_cut": {
            "order": [
                {"stage": s, "what": w, "seconds": sec, "cumulative_seconds": cum} for s, w, sec, cum in a.cold_start()
            ],
            "home_assistant_back_seconds": a.home_assistant_back_after_power_cut(),
        },
        "power": a.power(),
        "planned_maintenance": planned,
        "verdict": {
            "survives_any_single_node_failure": all(f["survivable"] for f in failures) and not a.unplaced,
            "survives_any_planned_reboot": all(p["survivable"] for p in planned) and not a.unplaced,
            "everything_fits": not a.unplaced and not a.volumes_not_fitting,
        },
    }
