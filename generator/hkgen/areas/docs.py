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
    from ..analysis.report import report
    from ..analysis.resilience import analyse
    from . import readme
    from .alert_rules import RUNBOOKS, rules

    figures = report(analyse(cluster))
    # Runbook sections for the alerts this cluster has (alert rules link to their headings).
    found = rules(cluster)
    runbooks = [{"key": k, "title": title, "steps": steps, "alerts": sorted({r.alert for r in found if r.runbook == k})}
                for k, (title, steps) in RUNBOOKS.items() if any(r.runbook == k for r in found)]
    context = freeze({"report": figures, "alert_runbooks": runbooks})
    return [
        OutputFile(PurePosixPath("RECOVERY.md"), "core/docs/RECOVERY.md.j2", context, "markdown"),
        *readme.files(cluster, components),
    ]
