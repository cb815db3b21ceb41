"""Catalogue and custom apps as GitOps components. Filled by the app-catalogue work."""

from __future__ import annotations

from .model import Cluster
from .plan import Component

__all__ = ["components"]


def components(cluster: Cluster) -> list[Component]:
    """App components of `cluster`."""
    return []
