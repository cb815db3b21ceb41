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
    parser.add_argument("--down", metavar="HOST[,HOST...]", default="",
                        help="also report these nodes/satellites failing together (e.g. --down cp1,cp2)")


def run(args: argparse.Namespace) -> int:
    """Validate, analyse and print each cluster; exit 1 if a cluster is invalid or a failure is fatal."""
    from ..analysis.alerting import alerting_report
    from ..analysis.rebuild import rebuild_report
    from ..analysis.report import report
    from ..analysis.resilience import analyse, rendered_settings
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
        analysis = analyse(result.cluster, rendered_settings(tree))
        data = report(analysis)
        if args.down:
            from ..analysis.planned import scenario
            from ..core.errors import UsageError

            try:
                data["scenario"] = scenario(analysis, frozenset(h.strip() for h in args.down.split(",") if h.strip()))
            except KeyError as exc:
                raise UsageError(f"--down: no node or satellite called {exc.args[0]}") from None
        data["alerting"] = alerting_report(result.cluster, data)  # who hears about each failure, and when
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
    if d.get("every_node_pods"):
        lines.append("Counted on each node they run on: " + ", ".join(
            f"{e['name']} {e['memory_mib']} MiB/{e['cpu_millis']}m"
            + ("" if e["on_control_planes"] else " (schedulable nodes)") for e in d["every_node_pods"]))
    if d["unplaced_pods"]:
        lines.append(f"NOT PLACED (no node has room): {', '.join(d['unplaced_pods'])}")
    lines += ["", "If one node or satellite dies (seconds until running / usable again):"]
    rows = []
    for f in d["single_node_failures"]:
        notes = []
        down = [f"{a['workload']} {_secs(a['seconds_until_running'])}/{_secs(a['seconds_until_usable'])}"
                for a in f["apps_down"]
                if a["seconds_until_usable"] != 0 and a["workload"] not in f["pinned_workloads_down"]]
        if down:
            notes.append("apps back: " + ", ".join(down))
        if f["zigbee_networks_down"]:
            notes.append("Zigbee " + ", ".join(f"{z['network']} {_secs(z['seconds_until_usable'])}"
                                               for z in f["zigbee_networks_down"]))
        if f["pinned_workloads_down"]:
            notes.append("down until it returns: " + ", ".join(f["pinned_workloads_down"]))
        if f["pods_without_a_place"]:
            notes.append("no room for: " + ", ".join(f["pods_without_a_place"]))
        if f["replicas_without_a_place"]:
            notes.append("runs with one replica less: " + ", ".join(f["replicas_without_a_place"]))
        if f["volumes_losing_last_replica"]:
            notes.append("DATA LOSS risk: " + ", ".join(f["volumes_losing_last_replica"]))
        if f["volumes_not_fitting_after"]:
            notes.append("replicas no longer fit: " + ", ".join(f["volumes_not_fitting_after"]))
        name = f["node"] + (" (satellite)" if f["kind"] == "satellite" else "")
        rows.append([name, "kept" if f["quorum_kept"] else "LOST", "yes" if f["survivable"] else "NO",
                     "; ".join(notes) or "-"])
    lines += _table(["node down", "quorum", "survivable", "notes"], rows)
    st = d["storage"]
    lines += ["", f"Longhorn: {st['replicas']} replicas, {st['requested_gib']} GiB requested of "
                  f"{st['usable_gib']} GiB usable"
              + (f"; DO NOT FIT: {', '.join(st['volumes_not_fitting'])}" if st["volumes_not_fitting"] else "")]
    s = d["failover_settings"]
    lease = s.get("lease_duration")
    renew = f" (kubelet lease renewed every {lease / 4:g} s)" if lease else ""
    lines += ["", "Recovery of stateful apps after their node dies "
                  f"(node-monitor grace {s['node_monitor_grace']} s{renew}, eviction {s['eviction']} s, "
                  f"Longhorn policy {s['policy']}; from {s['source']}; "
                  "attach, app start and image sizes are Pi estimates):"]
    rows = [[r["workload"], r["kind"], f"{r['seconds_until_running']} s",
             f"+{r['app_start_seconds']} s", f"{r['seconds_until_usable']} s",
             "never" if r["defaults_seconds_until_running"] is None
             else f"{r['defaults_seconds_until_running']} s"] for r in d["recovery"]]
    lines += _table(["workload", "kind", "running again", "app start", "usable", "with defaults"], rows)
    if d["recovery"]:
        lines.append("  running again = " + " + ".join(f"{st['what']} {st['seconds']} s"
                                                       for st in d["recovery"][0]["steps"])
                     + f" ({d['recovery'][0]['workload']})")
    lines += ["", "Planned reboot or MicroK8s upgrade of one host (drained first, one at a time; "
                  "seconds until running / usable again):"]
    rows = []
    for p in d["planned_maintenance"]:
        moved = [f"{m['workload']} {m['how']} {m['seconds_until_running']}/{m['seconds_until_usable']}"
                 for m in p["moves"] if m["seconds_until_usable"]]
        moved += [f"Zigbee {z['network']} {_secs(z['seconds_until_usable'])}" for z in p["zigbee_networks_down"]
                  if p["kind"] == "satellite"]
        upgrade = p["longest_seconds_until_usable_upgrade"]
        rows.append([p["host"] + (" (satellite)" if p["kind"] == "satellite" else ""),
                     "yes" if p["survivable"] else "NO", "-" if upgrade is None else f"{upgrade} s",
                     "; ".join(moved) or "nothing is down"])
    lines += _table(["host", "survivable", "longest if upgraded", "downtime (reboot)"], rows)
    if "scenario" in d:
        lines += ["", *_scenario_text(d["scenario"])]
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
    if "alerting" in d:
        from ..analysis.alerting import to_text as alerting_text

        lines += alerting_text(d["alerting"])
    v = d["verdict"]
    lines += ["", "Verdict: " + ("survives any single node failure" if v["survives_any_single_node_failure"]
                                 else "a single node failure is NOT survivable")
              + ("; every planned reboot is survivable" if v["survives_any_planned_reboot"]
                 else "; a planned reboot is NOT survivable")]
    return lines


def _secs(value: int | None) -> str:
    return "until it returns" if value is None else f"{value} s"


def _scenario_text(s: dict[str, Any]) -> list[str]:
    lines = [f"If {', '.join(s['down'])} die together:"]
    if s["quorum_kept"]:
        lines.append(f"  quorum kept ({s['voters_left']} voters left)")
    else:
        lines.append(f"  quorum LOST ({s['voters_left']} voter(s) left): the API stops; pods on the other nodes keep "
                     "running, nothing moves until enough control planes return")
    if s["pods_without_a_place"]:
        lines.append("  no room for: " + ", ".join(s["pods_without_a_place"]))
    if s["pinned_workloads_down"]:
        lines.append("  down until their node returns: " + ", ".join(s["pinned_workloads_down"]))
    if s["volumes_maybe_unavailable"]:
        lines.append(f"  {len(s['storage_nodes_down'])} storage nodes down with {len(s['volumes_maybe_unavailable'])} "
                     "volumes: a volume may have had every replica there (unavailable until one returns)")
    if s["volumes_not_fitting_after"]:
        lines.append("  replicas no longer fit: " + ", ".join(s["volumes_not_fitting_after"]))
    for m in s["moved"]:
        lines.append(f"  {m['workload']} (from {m['from']}): " + (
            f"running after {m['seconds_until_running']} s, usable after {m['seconds_until_usable']} s"
            if m["seconds_until_running"] is not None else "stays down"))
    if s["zigbee_networks_down_until_return"]:
        lines.append("  Zigbee networks down until their host returns: "
                     + ", ".join(s["zigbee_networks_down_until_return"]))
    lines.append("  survivable: " + ("yes" if s["survivable"] else "NO"))
    return lines
