"""Generated per-cluster documents: the recovery runbook (RECOVERY.md) with the exact commands
for this cluster and `hkgen plan`'s headline figures. Markdown, rendered like every other file.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ..config.model import Cluster
from .parts import Component, OutputFile, freeze

__all__ = ["files"]


def files(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    """Document files of `cluster`."""
    from ..analysis.resilience import analyse, report
    from . import readme

    figures = report(analyse(cluster))
    context = freeze({"report": figures})
    return [
        OutputFile(PurePosixPath("RECOVERY.md"), "core/docs/RECOVERY.md.j2", context, "markdown"),
        *readme.files(cluster, components),
    ]
