"""`hkgen plan`'s rebuild prediction: what a person does (flash each card, power on) and how long
the cluster then takes, by itself, until Home Assistant is back with its data.

Everything after power-on runs without a person: cloud-init and the join service
(areas/seeds.py), the reclaim of stale members and the after-join check (areas/rejoin.py), the
GitOps bootstrapper (areas/bootstrap.py), the engine's layers and the restore gate
(areas/restore.py). The figures are estimates for a Pi 4 on a home Internet line; the restore
estimate is an upper bound (every critical volume restored full, one after the other).
"""

from __future__ import annotations

from typing import Any

from ..config.model import Cluster

__all__ = ["RESTORE_MBIT", "rebuild_report"]

RESTORE_MBIT = 100  # download from the S3 target, Mbit/s (a typical home line)
# (stage, what happens, seconds) after every Pi is powered on (estimates, Pi 4).
STAGES = (
    ("first boot", "cloud-init: packages, the MicroK8s snap, node setup (a failed setup fails the boot)", 600),
    ("cluster", "control planes form or join (a reflashed node's stale membership is removed first), "
                "workers join; each node is checked Ready and, for control planes, in dqlite", 180),
    ("gitops engine", "a control plane installs the pinned engine (download, sha256 check) with sops-age "
                      "and the Git credentials from its boot media; it takes over from Git", 180),
    ("platform", "CRDs, Longhorn, cert-manager, CloudNativePG: image pulls on every node", 900),
)
APPS_START = ("apps", "images pulled (Home Assistant's is over 1 GB), pods start on their restored volumes", 420)


def _restore_seconds(cluster: Cluster) -> tuple[int, float]:
    """(seconds, GiB) to restore every critical volume from S3 (0 without restoreOnRebuild)."""
    if not (cluster.backup and cluster.backup.restore_on_rebuild):
        return 0, 0.0
    from ..analysis.capacity import all_workloads

    gib = float(sum(v.size_gib * w.replicas for w in all_workloads(cluster) for v in w.volumes
                    if v.backup_class == "critical"))
    seconds = int(gib * 1024 * 8 / RESTORE_MBIT) + 60  # plus Longhorn's engine start per restore
    return seconds, gib


def rebuild_report(cluster: Cluster) -> dict[str, Any]:
    """Steps for a person, then the stages the cluster runs by itself, with cumulative seconds."""
    hosts = [n.hostname for n in cluster.nodes] + [s.hostname for s in cluster.satellites]
    steps = [
        f"write each card: hkgen boot-media clusters/{cluster.name} --node <host> --out <boot partition> "
        f"({len(hosts)} cards: {', '.join(hosts)})",
        "power every Pi on, in any order",
    ]
    restore, gib = _restore_seconds(cluster)
    stages = list(STAGES)
    if restore:
        stages.append(("restore", f"the restore gate restores each app's critical volumes from S3 "
                                  f"({gib:.0f} GiB at most, {RESTORE_MBIT} Mbit/s)", restore))
    stages.append(APPS_START)
    total = 0
    order = []
    for stage, what, seconds in stages:
        total += seconds
        order.append({"stage": stage, "what": what, "seconds": seconds, "cumulative_seconds": total})
    return {
        "steps": steps,
        "order": order,
        "home_assistant_back_seconds": total if cluster.app("home-assistant") is not None else None,
        "needs_a_person": ["lost age key (no card can be written)", "lost S3 bucket (apps start empty only "
                           "after their markers are deleted by hand)"],
    }
