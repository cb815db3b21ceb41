"""`hkgen plan PATH [--format text|json]`: capacity, single-node failures, recovery times,
power-cut order and power draw for the cluster as configured.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import cluster_paths, out

NAME = "plan"
HELP = "show what survives a dead Pi or a power cut, predicted recovery times and power draw"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen plan`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a cluster.yaml or its folder")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (json is stable)")


def run(args: argparse.Namespace) -> int:
    """Validate, analyse and print each cluster; exit 1 if a cluster is invalid or a failure is fatal."""
    from ..analysis.rebuild import rebuild_report
    from ..analysis.resilience import analyse, rendered_settings, report
    from ..areas.blueprint import build_blueprint
    from ..core.errors import ConfigError
    from ..pipeline import validate_cluster
    from ..render.jinja import render_blueprint

    status = 0
    for path in cluster_paths(args.paths):
        _doc, result = validate_cluster(path)
        if result.errors or result.cluster is None:
            raise ConfigError(result.problems)
        # The figures come from the tree as it would be rendered now (in memory, not written).
        tree = render_blueprint(build_blueprint(result.cluster))
        data = report(analyse(result.cluster, rendered_settings(tree)))
        data["rebuild"] = rebuild_report(result.cluster)
        if not data["verdict"]["survives_any_single_node_failure"]:
            status = 1
        if args.format == "json":
            out(json.dumps(data, indent=2, sort_keys=True))
        else:
            for line in to_text(data):
                out(line)
    return status


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths), *(_row(r, widths) for r in rows)]


def to_text(d: dict[str, Any]) -> list[str]:
    """The human report."""
    lines = [f"Cluster {d['cluster']}", ""]
    cp = d["control_plane"]
    lines.append(f"Control plane: voters {', '.join(cp['voters'])}"
                 + (f"; stand-bys {', '.join(cp['stand_bys'])}" if cp["stand_bys"] else "")
                 + f"; control-plane failures in a row tolerated: {cp['failures_in_a_row_tolerated']}")
    lines.append("")
    rows = [[n["hostname"], n["role"] + (f" ({n['dqlite']})" if n["dqlite"] else ""),
             "yes" if n["schedulable"] else "no",
             f"{n['memory_mib']['requested']}/{n['memory_mib']['allocatable']}",
             f"{n['memory_mib']['headroom']}",
             f"{n['cpu_millis']['requested']}/{n['cpu_millis']['allocatable']}",
             str(n["storage_gb"] or "-")] for n in d["nodes"]]
    lines += _table(["node", "role", "apps", "mem MiB req/alloc", "headroom", "cpu m req/alloc", "disk GB"], rows)
    if d["unplaced_pods"]:
        lines.append(f"NOT PLACED (no node has room): {', '.join(d['unplaced_pods'])}")
    lines += ["", "If one node dies:"]
    rows = []
    for f in d["single_node_failures"]:
        notes = []
        if f["pinned_workloads_down"]:
            notes.append("down until it returns: " + ", ".join(f["pinned_workloads_down"]))
        if f["pods_without_a_place"]:
            notes.append("no room for: " + ", ".join(f["pods_without_a_place"]))
        if f["volumes_losing_last_replica"]:
            notes.append("DATA LOSS risk: " + ", ".join(f["volumes_losing_last_replica"]))
        if f["volumes_not_fitting_after"]:
            notes.append("replicas no longer fit: " + ", ".join(f["volumes_not_fitting_after"]))
        rows.append([f["node"], "kept" if f["quorum_kept"] else "LOST", "yes" if f["survivable"] else "NO",
                     "; ".join(notes) or "-"])
    lines += _table(["node down", "quorum", "survivable", "notes"], rows)
    st = d["storage"]
    lines += ["", f"Longhorn: {st['replicas']} replicas, {st['requested_gib']} GiB requested of "
                  f"{st['usable_gib']} GiB usable"
              + (f"; DO NOT FIT: {', '.join(st['volumes_not_fitting'])}" if st["volumes_not_fitting"] else "")]
    s = d["failover_settings"]
    lines += ["", f"Recovery of stateful apps after their node dies (node-monitor grace {s['node_monitor_grace']} s, "
                  f"eviction {s['eviction']} s, Longhorn policy {s['policy']}; from {s['source']}):"]
    rows = [[r["workload"], r["kind"], f"{r['seconds_until_running']} s",
             f"+{r['app_start_seconds']} s", "never" if r["defaults_seconds_until_running"] is None
             else f"{r['defaults_seconds_until_running']} s"] for r in d["recovery"]]
    lines += _table(["workload", "kind", "running again", "app start", "with defaults"], rows)
    pc = d["power_cut"]
    lines += ["", "After a power cut (estimates for Pi 4):"]
    lines += _table(["stage", "cumulative", "what happens"],
                    [[o["stage"], f"{o['cumulative_seconds']} s", o["what"]] for o in pc["order"]])
    if pc["home_assistant_back_seconds"] is not None:
        lines.append(f"Home Assistant back about {pc['home_assistant_back_seconds']} s after power returns.")
    rb = d.get("rebuild")
    if rb:
        lines += ["", "Rebuild from blank cards (nothing typed after power-on; estimates for Pi 4):"]
        lines += [f"  {i}. {step}" for i, step in enumerate(rb["steps"], 1)]
        lines += _table(["stage", "cumulative", "what happens"],
                        [[o["stage"], f"{o['cumulative_seconds']} s", o["what"]] for o in rb["order"]])
        if rb["home_assistant_back_seconds"] is not None:
            lines.append(f"Home Assistant back with its data about {rb['home_assistant_back_seconds'] // 60} min "
                         "after power-on.")
        lines.append("Needs a person only for: " + "; ".join(rb["needs_a_person"]) + ".")
    p = d["power"]
    lines += ["", f"Power draw (estimate): {p['idle_watts']} W idle, {p['load_watts']} W under load, "
                  f"{p['kwh_per_year_idle']} kWh/year at idle."]
    if d["single_points_of_failure"]:
        lines.append(f"Single points of failure: {', '.join(d['single_points_of_failure'])}")
    v = d["verdict"]
    lines += ["", "Verdict: " + ("survives any single node failure" if v["survives_any_single_node_failure"]
                                 else "a single node failure is NOT survivable")]
    return lines
