"""Node and satellite seeds (cloud-init NoCloud files per Pi). Filled by the node-seed work."""

from __future__ import annotations

from .model import Cluster
from .plan import OutputFile

__all__ = ["plan"]


def plan(cluster: Cluster) -> list[OutputFile]:
    """Seed files of every node and satellite."""
    return []
