"""The Alertmanager configuration of a cluster, as data: routing fit for a household, the
receivers of cluster.yaml's `alerts.receivers`, and the dead-man's switch.

Routing, top to bottom (first match wins):
1. `Watchdog` (kube-prometheus-stack's always-firing alert) goes to the heartbeat URL every
   `heartbeat.interval`, or nowhere without a heartbeat;
2. hkgen's own alerts (label origin=hkgen) go to the household;
3. kube-prometheus-stack's alerts go to the household as `alerts.upstreamRules` says (critical
   ones by default), the rest nowhere: they still show in Grafana and Alertmanager.
Alerts are grouped by name, so ten degraded volumes make one message. While a node is down,
the alerts that follow from it (label failure=node: degraded volumes, a coordinator or a
broker on the node, the control-plane count) and every other alert carrying that node's name are
inhibited: one incident, one message. A critical alert inhibits the warning of the same name
and node.

Credentials are `${KEY}` placeholders; the rendered Secret is substituted by the GitOps engine
from the SOPS file. Nothing here may hold another '$' (Go templates do not need one).
"""

from __future__ import annotations

from typing import Any

from ..config.model import Cluster
from ..config.secrets import placeholder
from .alert_rules import ORIGIN_LABEL

__all__ = ["HOUSEHOLD", "NOBODY", "config", "home_assistant_url"]

HOUSEHOLD = "household"
NOBODY = "nobody"
HEARTBEAT = "heartbeat"
HA_NAMESPACE = "home-automation"
HA_SERVICE = "home-assistant"
HA_PORT = 8123


def home_assistant_url(cluster: Cluster) -> str:
    """The Home Assistant webhook inside the cluster (the id is a secret)."""
    from .workloads import app_distro

    domain = app_distro(cluster)["clusterDomain"]
    webhook = placeholder("ALERTS_HOME_ASSISTANT_WEBHOOK_ID")
    return f"http://{HA_SERVICE}.{HA_NAMESPACE}.svc.{domain}:{HA_PORT}/api/webhook/{webhook}"


def _receivers(cluster: Cluster) -> tuple[dict[str, Any], bool]:
    """The household receiver and whether it has any integration at all."""
    alerts = cluster.alerts
    assert alerts is not None  # noqa: S101 - only called with alerting on
    household: dict[str, Any] = {"name": HOUSEHOLD}
    webhooks: list[dict[str, Any]] = []
    if alerts.home_assistant and cluster.app("home-assistant"):
        webhooks.append({"url": home_assistant_url(cluster), "send_resolved": True, "max_alerts": 20})
    if alerts.ntfy is not None:
        hook: dict[str, Any] = {"url": f"{alerts.ntfy.server}/{placeholder('ALERTS_NTFY_TOPIC')}?template=alertmanager",
                                "send_resolved": True, "max_alerts": 20}
        if alerts.ntfy.access_token:
            hook["http_config"] = {"authorization": {"type": "Bearer",
                                                     "credentials": placeholder("ALERTS_NTFY_TOKEN")}}
        webhooks.append(hook)
    if alerts.webhook:
        webhooks.append({"url": placeholder("ALERTS_WEBHOOK_URL"), "send_resolved": alerts.webhook_send_resolved})
    if webhooks:
        household["webhook_configs"] = webhooks
    if alerts.email is not None:
        household["email_configs"] = [{"to": ", ".join(alerts.email.to), "send_resolved": True}]
    return household, bool(webhooks or alerts.email is not None)


def config(cluster: Cluster) -> dict[str, Any]:
    """alertmanager.yaml of `cluster` (with `${KEY}` placeholders)."""
    alerts = cluster.alerts
    assert alerts is not None and cluster.alerting  # noqa: S101 - only called with alerting on
    household, reaches_someone = _receivers(cluster)
    target = HOUSEHOLD if reaches_someone else NOBODY
    receivers: list[dict[str, Any]] = [{"name": NOBODY}]
    if reaches_someone:
        receivers.append(household)
    global_: dict[str, Any] = {"resolve_timeout": "5m"}
    if alerts.email is not None:
        global_.update({"smtp_smarthost": alerts.email.smarthost, "smtp_from": alerts.email.sender,
                        "smtp_auth_username": alerts.email.username,
                        "smtp_auth_password": placeholder("ALERTS_SMTP_PASSWORD"), "smtp_require_tls": True})
    routes: list[dict[str, Any]] = []
    if alerts.heartbeat:
        receivers.append({"name": HEARTBEAT, "webhook_configs": [
            {"url": placeholder("ALERTS_HEARTBEAT_URL"), "send_resolved": False}]})
        routes.append({"receiver": HEARTBEAT, "matchers": ['alertname="Watchdog"'], "group_wait": "0s",
                       "group_interval": alerts.heartbeat_interval, "repeat_interval": alerts.heartbeat_interval})
    else:
        routes.append({"receiver": NOBODY, "matchers": ['alertname="Watchdog"']})
    routes += [
        {"receiver": NOBODY, "matchers": ['alertname="InfoInhibitor"']},
        {"receiver": target, "matchers": [f'{ORIGIN_LABEL[0]}="{ORIGIN_LABEL[1]}"']},
    ]
    if alerts.upstream_rules == "critical":
        routes.append({"receiver": target, "matchers": ['severity="critical"']})
    elif alerts.upstream_rules == "all":
        routes.append({"receiver": target, "matchers": ['severity=~"critical|warning"']})
    return {
        "global": global_,
        "route": {
            "receiver": NOBODY,
            "group_by": ["alertname"],
            "group_wait": alerts.group_wait,
            "group_interval": alerts.group_interval,
            "repeat_interval": alerts.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": [
            # A dead node explains its consequences: one message for the incident.
            {"source_matchers": ['alertname="HkgenNodeNotReady"'], "target_matchers": ['failure="node"',
                                                                                       'alertname!="HkgenNodeNotReady"']},
            # ... and so does every other alert about that node (the chart's KubeNodeUnreachable, ...).
            {"source_matchers": ['alertname="HkgenNodeNotReady"'],
             "target_matchers": ['alertname!="HkgenNodeNotReady"'], "equal": ["node"]},
            {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "node"]},
            # kube-prometheus-stack's InfoInhibitor: info alerts only count together with a real one.
            {"source_matchers": ['alertname="InfoInhibitor"'], "target_matchers": ['severity="info"'],
             "equal": ["namespace"]},
        ],
        "receivers": receivers,
        "templates": [],
    }
