"""Generated per-cluster documents (README, RECOVERY). Filled by the docs and planner work."""

from __future__ import annotations

from .model import Cluster
from .plan import Component, OutputFile

__all__ = ["plan"]


def plan(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    """Document files of `cluster`."""
    return []
