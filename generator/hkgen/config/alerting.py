"""The `alerts:` section of cluster.yaml as a frozen model part: Alertmanager sizing, routing
timings, the dead-man's switch and the receivers that reach the household.

Built by `model.build_model` from schema-checked data with defaults applied; stages after the
model read only this. Secret values (webhook ids, topics, passwords, URLs) are not here: the
receivers only say which secret keys they need (`config/secrets.py` adds them to the contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Alerts", "EmailReceiver", "NtfyReceiver", "build_alerts"]


@dataclass(frozen=True)
class NtfyReceiver:
    """ntfy push: server URL; the topic (and token) are secrets."""

    server: str
    access_token: bool


@dataclass(frozen=True)
class EmailReceiver:
    """E-mail over SMTP; the password is a secret."""

    smarthost: str
    sender: str
    to: tuple[str, ...]
    username: str


@dataclass(frozen=True)
class Alerts:
    """Alerting as configured (defaults applied)."""

    enabled: bool
    group_wait: str
    group_interval: str
    repeat_interval: str
    upstream_rules: str
    runbook_url: str | None
    heartbeat: bool
    heartbeat_interval: str
    home_assistant: bool
    ha_notify_service: str
    ntfy: NtfyReceiver | None
    email: EmailReceiver | None
    webhook: bool
    webhook_send_resolved: bool


def build_alerts(data: dict[str, Any]) -> Alerts:
    """The model part of a schema-checked `alerts` mapping (defaults applied)."""
    rcv = data["receivers"]
    ntfy = rcv.get("ntfy")
    email = rcv.get("email")
    webhook = rcv.get("webhook")
    return Alerts(
        enabled=data["enabled"],
        group_wait=data["groupWait"], group_interval=data["groupInterval"], repeat_interval=data["repeatInterval"],
        upstream_rules=data["upstreamRules"], runbook_url=data.get("runbookUrl"),
        heartbeat=data["heartbeat"]["enabled"], heartbeat_interval=data["heartbeat"]["interval"],
        home_assistant=rcv["homeAssistant"]["enabled"], ha_notify_service=rcv["homeAssistant"]["notifyService"],
        ntfy=NtfyReceiver(ntfy["server"].rstrip("/"), ntfy["accessToken"]) if ntfy is not None else None,
        email=(EmailReceiver(email["smarthost"], email["from"], tuple(email["to"]),
                             email.get("username", email["from"])) if email is not None else None),
        webhook=webhook is not None, webhook_send_resolved=bool(webhook and webhook["sendResolved"]),
    )
