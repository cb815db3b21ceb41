"""Zero-touch reflash of any node: the seed parts that make a rejoin work without a person.

* `hkgen-microk8s-after-join` (every node): run by the join service after `microk8s join` exits
  0. It writes the node's own kubelet arguments back (upstream join copies the contacted node's,
  taints included) and judges success by the node itself: Ready and, for a control plane, a dqlite
  voter or stand-by (join can print a failure and still exit 0).
* `hkgen-microk8s-reclaim` (control planes, timer): removes the stale membership of a node that
  was reflashed (its cluster agent presents a CA other than the cluster's, and it is not Ready),
  never a Ready node or a member carrying the cluster's CA, one node per run, and a voter only
  when the other voters remain a majority.

The settings join hkgen-microk8s-join's configuration file (join.conf); seeds.py hooks them in.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from ..config.model import Cluster, Node

__all__ = ["OWN_KUBELET_ARGS", "join_settings", "kubelet_arg_lines", "seed_files"]

OWN_KUBELET_ARGS = "/etc/hkgen/microk8s/kubelet-args"
MICROK8S_DATA = "/var/snap/microk8s/current"


def kubelet_arg_lines(launch_config: Mapping[str, Any]) -> list[str]:
    """The node's own kubelet arguments (`--flag=value`), as its launch configuration (the seed's
    /etc/microk8s.yaml, `seeds.base_launch_config`) sets them.
    """
    args = launch_config.get("extraKubeletArgs") or {}
    return [f"{flag}={value}" for flag, value in args.items() if value is not None]


def join_settings(cluster: Cluster, node: Node) -> dict[str, str]:
    """Entries of join.conf the after-join step reads (values shell-quoted by the caller)."""
    return {
        "after_join": "/usr/local/sbin/hkgen-microk8s-after-join",
        "kubelet_args": f"{MICROK8S_DATA}/args/kubelet",
        "own_args": OWN_KUBELET_ARGS,
        "node_ip": node.ip,
        "node_name": node.hostname,
        "clustered_lock": f"{MICROK8S_DATA}/var/lock/clustered.lock",
    }


def seed_files(cluster: Cluster, node: Node, launch_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """write_files entries (same shape as seeds._file) of the after-join and reclaim steps."""
    def file(path: str, template: str, mode: str = "0644", data: Any = None) -> dict[str, Any]:
        return {"path": path, "permissions": mode, "template": f"core/cloud-init/files/{template}",
                "data": data, "append": False}

    files = [
        file("/usr/local/sbin/hkgen-microk8s-after-join", "hkgen-microk8s-after-join.sh", "0755"),
        file(OWN_KUBELET_ARGS, "lines.j2", "0644", kubelet_arg_lines(launch_config)),
    ]
    if node.is_control_plane:
        members = [f"{n.hostname} {n.ip} {'control-plane' if n.is_control_plane else 'worker'}"
                   for n in cluster.nodes]
        conf = {"members_file": "/etc/hkgen/microk8s/members", "microk8s": "/snap/bin/microk8s",
                "openssl": "/usr/bin/openssl", "joined_file": "/var/lib/hkgen/microk8s-joined",
                "agent_port": "25000", "self_ip": node.ip}
        files += [
            file("/usr/local/sbin/hkgen-microk8s-reclaim", "hkgen-microk8s-reclaim.sh", "0755"),
            file(conf["members_file"], "lines.j2", "0644", members),
            file("/etc/hkgen/microk8s/reclaim.conf", "bootstrap.conf.j2", "0644",
                 {k: shlex.quote(v) for k, v in conf.items()}),
            file("/etc/systemd/system/hkgen-microk8s-reclaim.service", "hkgen-microk8s-reclaim.service.j2"),
            file("/etc/systemd/system/hkgen-microk8s-reclaim.timer", "hkgen-microk8s-reclaim.timer.j2"),
        ]
    return files
