"""MicroK8s channel upgrades from Git: what the seeds install (the script, its configuration and
timers) and the ConfigMap the GitOps tree carries (the wanted channel and the order), so a change
of `microk8s.channel` in cluster.yaml upgrades the nodes one at a time, control planes first.
The script (templates/cloud-init/files/hkgen-microk8s-upgrade.sh) says how; RECOVERY.md how to
roll back.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath
from typing import Any

from ..config.model import Cluster, Node
from . import dqlite_metrics
from .parts import Component, OutputFile, freeze

__all__ = ["CONFIG_MAP", "STATUS_MAP", "component", "seed_files", "timers"]

CONFIG_MAP = "hkgen-microk8s-upgrade"
STATUS_MAP = "hkgen-microk8s-upgrade-status"
NAMESPACE = "kube-system"
CONF = "/etc/hkgen/microk8s-upgrade.conf"
SNAP_DATA = "/var/snap/microk8s/current"


def order(cluster: Cluster) -> list[str]:
    """Upgrade order: control planes (voters first, in file order), then the workers."""
    return [n.hostname for n in cluster.control_planes] + [n.hostname for n in cluster.workers]


def _f(path: str, template: str, mode: str = "0644", data: Any = None) -> dict[str, Any]:
    return {"path": path, "permissions": mode, "template": f"core/cloud-init/files/{template}", "data": data,
            "append": False}


def seed_files(cluster: Cluster, node: Node) -> list[dict[str, Any]]:
    """write_files entries of `node` (the agent everywhere, the conductor on control planes)."""
    conf = {
        "node": node.hostname,
        # MicroK8s' own kubectl, called directly: `microk8s kubectl` refuses to run on a worker.
        "kubectl": "/snap/microk8s/current/kubectl",
        "admin_kubeconfig": f"{SNAP_DATA}/credentials/client.config",
        "node_kubeconfig": f"{SNAP_DATA}/credentials/kubelet.config",
        "snap": "/usr/bin/snap",
        "namespace": NAMESPACE,
        "config_map": CONFIG_MAP,
        "status_map": STATUS_MAP,
        "kured_namespace": "maintenance",
        "kured_daemonset": "kured",
        "lock_annotation": "weave.works/kured-node-lock",  # kured's default lock annotation
        "timeout": "1800",
        "drain_timeout": "900",
        # Control planes check the dqlite voters before each step (dqlite_metrics.py); workers
        # never conduct.
        "membership": dqlite_metrics.SCRIPT if node.is_control_plane else "",
    }
    files = [
        _f("/usr/local/sbin/hkgen-microk8s-upgrade", "hkgen-microk8s-upgrade.sh", "0755"),
        _f(CONF, "hkgen-microk8s-upgrade.conf.j2", "0644", {k: shlex.quote(v) for k, v in conf.items()}),
    ]
    for mode in timers(node):
        name = mode.removesuffix(".timer").removeprefix("hkgen-microk8s-upgrade-")
        data = {"mode": name, "every": "2min" if name == "conduct" else "1min"}
        files += [_f(f"/etc/systemd/system/hkgen-microk8s-upgrade-{name}.service",
                     "hkgen-microk8s-upgrade.service.j2", data=data),
                  _f(f"/etc/systemd/system/hkgen-microk8s-upgrade-{name}.timer",
                     "hkgen-microk8s-upgrade.timer.j2", data=data)]
    return files


def timers(node: Node) -> list[str]:
    """Timers to enable on `node`."""
    out = ["hkgen-microk8s-upgrade-agent.timer"]
    if node.is_control_plane:
        out.append("hkgen-microk8s-upgrade-conduct.timer")
    return out


def component(cluster: Cluster) -> Component:
    """The ConfigMap that carries the wanted channel from Git to the conductors."""
    context = {"name": CONFIG_MAP, "namespace": NAMESPACE, "channel": cluster.microk8s_channel,
               "order": " ".join(order(cluster)),
               "control_planes": " ".join(n.hostname for n in cluster.control_planes),
               **dqlite_metrics.expected(cluster)}
    return Component(
        "microk8s-upgrade", "configs", NAMESPACE,
        files=(OutputFile(PurePosixPath("configmap.yaml"), "core/platform/maintenance/upgrade-configmap.yaml.j2",
                          freeze(context)),),
        description=f"MicroK8s {cluster.microk8s_channel} on every node, upgraded one node at a time from Git.",
    )
