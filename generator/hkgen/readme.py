"""The per-cluster README (node table, apps, Zigbee networks, Mermaid diagrams). Filled by the
docs work (issue 13)."""

from __future__ import annotations

from .model import Cluster
from .plan import Component, OutputFile

__all__ = ["plan"]


def plan(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    """README file(s) of `cluster`."""
    return []
