"""Platform components (Longhorn, CloudNativePG, monitoring stack operators, ...). Filled by the
GitOps-tree work."""

from __future__ import annotations

from .model import Cluster
from .plan import Component

__all__ = ["components"]


def components(cluster: Cluster) -> list[Component]:
    """Platform components of `cluster`."""
    return []
