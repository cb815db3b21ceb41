"""Who hears about a failure, and when: the alerting part of `hkgen plan`.

For every failure the planner models (each node dying on its own, each Zigbee satellite going
away, a power cut) this says which of hkgen's alerts fires, which alerts are held back as part of
the same incident (Alertmanager's inhibition), and how long until a message reaches a person:

  T = G + S + E + F + W

G the time until Kubernetes marks the node NotReady (node-monitor grace period; for probes, 0),
S one scrape interval until Prometheus sees it, E one evaluation interval, F the alert's `for:`,
W Alertmanager's group_wait. When Prometheus itself ran on the dead node, nothing is evaluated
until it runs again elsewhere: the planner's recovery time for Prometheus is added to that case.
Alertmanager runs twice on distinct nodes, so a dead node never delays the message itself.
Worst cases, in seconds; figures are arithmetic over cluster.yaml, not measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..areas.alert_rules import Rule, duration_seconds, rules
from ..config.model import Cluster

__all__ = ["alerting_report", "to_text"]


def _receivers(cluster: Cluster) -> list[str]:
    alerts = cluster.alerts
    if alerts is None or not cluster.alerting:
        return []
    out = []
    if alerts.home_assistant and cluster.app("home-assistant"):
        out.append("Home Assistant")
    if alerts.ntfy is not None:
        out.append("ntfy")
    if alerts.email is not None:
        out.append("e-mail")
    if alerts.webhook:
        out.append("webhook")
    return out


def _first(found: list[Rule], name: str) -> Rule | None:
    return next((r for r in found if r.alert == name), None)


def alerting_report(cluster: Cluster, plan: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `alerting` section of `hkgen plan --format json`; `plan` is the rest of the report
    (read for Prometheus' own recovery time, if it has one).
    """
    found = rules(cluster)
    receivers = _receivers(cluster)
    out: dict[str, Any] = {"enabled": cluster.alerting, "receivers": receivers, "reaches_someone": bool(receivers),
                           "heartbeat": bool(cluster.alerts and cluster.alerts.heartbeat), "failures": []}
    if not cluster.alerting or cluster.alerts is None:
        return out
    mon = cluster.app("monitoring")
    assert mon is not None  # noqa: S101 - alerting implies monitoring
    scrape = duration_seconds(str(mon.settings["scrapeInterval"]))
    group_wait = duration_seconds(cluster.alerts.group_wait)
    prometheus_back = next((int(r["seconds_until_running"]) for r in (plan or {}).get("recovery", [])
                            if r.get("workload") == "prometheus" and r.get("seconds_until_running") is not None),
                           None)
    out["timings"] = {"node_monitor_grace": cluster.node_monitor_grace_seconds, "scrape": scrape,
                      "evaluation": scrape, "group_wait": group_wait,
                      "prometheus_recovery": prometheus_back}

    def entry(failure: str, rule: Rule | None, grace: int, held: list[str], prometheus_may_be_there: bool) -> None:
        if rule is None:
            return
        seconds = grace + scrape + scrape + duration_seconds(rule.for_) + group_wait
        worst = seconds + prometheus_back if prometheus_may_be_there and prometheus_back is not None else None
        out["failures"].append({
            "failure": failure, "alert": rule.alert, "severity": rule.severity, "held_back": sorted(set(held)),
            "seconds_to_person": seconds, "seconds_if_prometheus_was_there": worst,
            "arithmetic": f"{grace} + {scrape} + {scrape} + {duration_seconds(rule.for_)} + {group_wait}",
        })

    node_down = _first(found, "HkgenNodeNotReady")
    consequences = [r.alert for r in found if r.failure == "node" and r.alert != "HkgenNodeNotReady"]
    for node in cluster.nodes:
        held = [a for a in consequences if a != "HkgenControlPlaneDegraded" or node.is_control_plane]
        if not any(n.pinned and n.node == node.hostname for n in cluster.zigbee):
            held = [a for a in held if a != "HkgenZigbeeBridgeOffline"]
        entry(f"node {node.hostname} down", node_down, cluster.node_monitor_grace_seconds, held, node.schedulable)
    satellite = _first(found, "HkgenZigbeeSatelliteUnreachable")
    for sat in cluster.satellites:
        if any(n.satellite == sat.hostname for n in cluster.zigbee):
            entry(f"satellite {sat.hostname} down", satellite, 0, ["HkgenZigbeeBridgeOffline"], False)
    return out


def to_text(section: Mapping[str, Any]) -> list[str]:
    """The alerting part of the human report."""
    if not section.get("enabled"):
        return ["", "Alerts: off (alerts.enabled or apps.monitoring)."]
    receivers = section["receivers"]
    lines = ["", "Who hears about it (worst case: node grace + scrape + evaluation + for + group_wait; "
                 + (f"receivers: {', '.join(receivers)})" if receivers
                    else "NO receiver configured in alerts.receivers: these messages reach nobody)") + ":"]
    rows = []
    for f in section["failures"]:
        when = f"{f['seconds_to_person']} s"
        if f["seconds_if_prometheus_was_there"] is not None:
            when += f" ({f['seconds_if_prometheus_was_there']} s if Prometheus ran there)"
        rows.append([f["failure"], f["alert"], when, ", ".join(f["held_back"]) or "-"])
    header = ["failure", "alert", "message after", "held back as the same incident (if affected)"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, ["-" * w for w in widths], *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append("Power cut or network down: " + (
        "the heartbeat stops; the outside check alerts after its own grace period."
        if section["heartbeat"] else "nobody hears of it (alerts.heartbeat is off)."))
    return lines
