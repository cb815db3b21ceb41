"""Keys hkgen still accepts but no longer uses: each set one is a warning located where it is
written, saying what replaced it. The schema keeps them (so older files still validate, with
`additionalProperties: false` everywhere) without a default, so only a key the file names is
reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..config.load import PathKey

__all__ = ["DEPRECATED", "deprecated_keys"]

# path -> (message, hint)
DEPRECATED: dict[PathKey, tuple[str, str]] = {
    ("apps", "grafana", "postgresGeneration"): (
        "postgresGeneration is deprecated and ignored: the restore gate now decides by itself whether "
        "the database starts new or recovers from its backups, and every incarnation archives to "
        "s3://<bucket>/<prefix>/postgres/grafana-db/",
        "remove the key. If it was above 1 on a running cluster, its backups so far are in grafana-db-g<N>/; "
        "new ones go to grafana-db/ from the next nightly backup on (RECOVERY.md, CloudNativePG databases)"),
}


def deprecated_keys(data: Any) -> Iterator[tuple[PathKey, str, str]]:
    """(path, message, hint) of every deprecated key set in the raw cluster.yaml data."""
    for path, (message, hint) in DEPRECATED.items():
        node = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            yield path, message, hint
