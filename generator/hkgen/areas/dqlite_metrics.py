"""The control planes' view of the datastore membership, made visible to the health gates.

Coordinated reboots and MicroK8s upgrades may start only while the dqlite voters are complete.
Kubernetes does not show them (kubelite can be Ready while its dqlite server is down), so every
control plane runs `hkgen-dqlite-membership` from a timer: it asks the dqlite leader for the
membership the way `microk8s status` does (MicroK8s' own dqlite shell, `.cluster`), tries each
member's server (`.describe`), and writes the result for node-exporter's textfile collector
(`TEXTFILE_DIR`, mounted into node-exporter by the monitoring app's values). The maintenance gate
rules (`maintenance.GATE_ALERTS`) compare it with the voters and control planes rendered here,
so kured waits; the upgrade conductor runs the same script's `check` with the counts the upgrade
ConfigMap carries from Git. A control plane that has not joined yet reports `up 0`: until it is a
member, the membership is not complete.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..config.model import Cluster, Node

__all__ = ["SCRIPT", "TEXTFILE", "TEXTFILE_DIR", "expected", "seed_files", "timers"]

SCRIPT = "/usr/local/sbin/hkgen-dqlite-membership"
CONF = "/etc/hkgen/dqlite-membership.conf"
# node-exporter reads *.prom here (apps/monitoring/templates/values/kube-prometheus-stack.yaml.j2
# mounts it; a test holds the two together).
TEXTFILE_DIR = "/var/lib/hkgen/node-exporter"
TEXTFILE = f"{TEXTFILE_DIR}/hkgen_dqlite.prom"
SNAP = "/snap/microk8s/current"  # MicroK8s is a classic snap: its static dqlite shell runs as is
BACKEND = "/var/snap/microk8s/current/var/kubernetes/backend"  # k8s-dqlite --storage-dir


def expected(cluster: Cluster) -> dict[str, int]:
    """What a complete membership holds: the voters and every control plane (voters + stand-bys)."""
    return {"voters": len(cluster.voters), "members": len(cluster.control_planes)}


def _f(path: str, template: str, mode: str = "0644", data: Any = None) -> dict[str, Any]:
    return {"path": path, "permissions": mode, "template": f"core/cloud-init/files/{template}", "data": data,
            "append": False}


def seed_files(cluster: Cluster, node: Node) -> list[dict[str, Any]]:
    """write_files entries of `node` (control planes only: workers hold no dqlite)."""
    del cluster  # the same on every control plane; the expectations travel in Git
    if not node.is_control_plane:
        return []
    conf = {"dqlite": f"{SNAP}/bin/dqlite", "backend": BACKEND, "textfile": TEXTFILE, "timeout": "10"}
    return [
        _f(SCRIPT, "hkgen-dqlite-membership.sh", "0755"),
        _f(CONF, "hkgen-dqlite-membership.conf.j2", "0644", {k: shlex.quote(v) for k, v in conf.items()}),
        _f("/etc/systemd/system/hkgen-dqlite-membership.service", "hkgen-dqlite-membership.service.j2"),
        _f("/etc/systemd/system/hkgen-dqlite-membership.timer", "hkgen-dqlite-membership.timer.j2"),
    ]


def timers(node: Node) -> list[str]:
    """Timers to enable on `node`."""
    return ["hkgen-dqlite-membership.timer"] if node.is_control_plane else []
