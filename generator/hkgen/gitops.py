"""GitOps engine layout (Flux or Argo CD) of the components. Filled by the GitOps-tree work."""

from __future__ import annotations

from .model import Cluster
from .plan import Component, OutputFile

__all__ = ["plan"]


def plan(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    """Engine files for `components`."""
    return []
