"""Node and satellite seeds: the cloud-init NoCloud files each Pi boots from, planned as data.

Every cluster node gets `nodes/<host>/` and every satellite `satellites/<host>/` with the files
the Ubuntu Server for Raspberry Pi boot partition needs: `user-data` (cloud-config), `meta-data`,
`network-config` (Netplan v2) and the kernel command line (`cmdline.txt`, or
`current/cmdline.txt` in the A/B boot layout Ubuntu uses from 26.04), which cloud-init cannot
change before the first boot. Secret values appear only as `${KEY}` placeholders
(`secrets.placeholder`); `hkgen boot-media` substitutes them when it writes a flashable seed.

Decisions taken here (the rendered seeds carry them as comments, RECOVERY documents them):

* Joining. No node's launch configuration joins or forms by itself. A first-boot service
  (`hkgen-microk8s-join`) tries to join every other control plane; only the bootstrap node may
  form the cluster, and only when every peer answered and refused the persistent token. Control
  planes add the token to their own node only after they formed or joined, so a fresh,
  unjoined node always refuses: a reflashed bootstrap node with live peers therefore joins them
  instead of starting a second cluster, and an unreachable peer makes it wait, never form
  (unless an admin creates /etc/hkgen/microk8s/form-anyway on it: the peers are gone for good).
  The token and the addons are separate launch-config parts, so a failing addon never keeps
  the token, and with it every join, waiting.
* Labels and taints. Kubelets may not set node-role labels and `microk8s join --worker`
  replaces a worker's `--node-labels`, so labels are applied cluster-side, through the API, by
  the platform's node-labels component (`platform.py`); `node_metadata()` states what every node
  must carry and a test holds the two together. Seeds add what only the node can do at
  registration: a non-schedulable control plane registers with its NoSchedule taint
  (`--register-with-taints`), so no pod lands there before the labeller first runs.
* Disks. A Longhorn disk is formatted only when `blkid -p` finds nothing at all on it; a
  filesystem, partition table or any other signature is never touched. Its mount point is made
  immutable while nothing is mounted there, so Longhorn can never fill the OS disk.
* Boot device. `bootDevice: usb` nodes run Ubuntu from an SSD of their own (the image is flashed
  there); Longhorn disks are other SSDs named by stable id, and the OS disk, which carries a
  partition table, would be refused anyway. Nodes on SD cards, and satellites, keep the journal
  in RAM, run without rsyslog and mount / with noatime, so the card is hardly written.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any

from ..analysis.failover import controller_manager_args, kubelet_args
from ..config.model import Cluster, Node, Satellite, Wifi
from ..config.secrets import key_for, placeholder
from ..core.errors import Problem, RenderError
from . import bootstrap as gitops_bootstrap
from . import dqlite_metrics, reboots, rejoin, upgrade
from .parts import Component, OutputFile, freeze

__all__ = [
    "CMDLINE_DEFAULTS",
    "CONTROL_PLANE_TAINT",
    "HKGEN_LAUNCH_DIR",
    "JOINED_MARKER",
    "LAUNCH_CONFIG",
    "LONGHORN_DISKS_ANNOTATION",
    "LONGHORN_DISK_LABEL",
    "NodeMetadata",
    "base_launch_config",
    "cmdline_params",
    "files",
    "host_files",
    "is_launch_config",
    "kernel_cmdline",
    "node_metadata",
    "reboot_schedule",
    "schedule_problems",
    "seed_folder",
    "seed_problems",
]

# Kernel command lines of the Ubuntu Server for Raspberry Pi images as shipped (22.04 and 24.04:
# boot partition root; 26.04 uses the A/B layout introduced in 25.10, with the known-good boot
# assets, cmdline.txt included, under current/).
CMDLINE_DEFAULTS: dict[str, tuple[str, str]] = {
    "22.04": ("cmdline.txt", "console=serial0,115200 dwc_otg.lpm_enable=0 console=tty1 "
                             "root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash"),
    "24.04": ("cmdline.txt", "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 "
                             "root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash"),
    "26.04": ("current/cmdline.txt", "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 "
                                     "root=LABEL=writable rootfstype=ext4 panic=10 rootwait fixrtc"),
}
# Boards with two HDMI connectors (KMS names HDMI-A-1 and HDMI-A-2).
_TWO_HDMI = {"rpi4", "rpi5", "cm4"}

LAUNCH_CONFIG = "/etc/microk8s.yaml"  # read by the MicroK8s snap's install hook (domain notes 1.1)
HKGEN_LAUNCH_DIR = "/etc/hkgen/microk8s"  # launch-config parts the join service installs later
MICROK8S_LAUNCHER_DIR = "/var/snap/microk8s/common/etc/launcher"  # applied by the cluster agent
JOINED_MARKER = "/var/lib/hkgen/microk8s-joined"
KUBELITE_UNIT = "snap.microk8s.daemon-kubelite.service"
LAUNCH_CONFIG_VERSION = "0.2.0"
MIN_MICROK8S = (1, 28)  # first release whose cluster agent reads launch-config format 0.2.0
CLUSTER_DOMAIN = "cluster.local"
KUBE_PROXY_METRICS_PORT = 10249  # kube-proxy --metrics-bind-address default port; kube-prometheus-stack scrapes it
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "value": "", "effect": "NoSchedule"}
LONGHORN_DISK_LABEL = "node.longhorn.io/create-default-disk"
LONGHORN_DISKS_ANNOTATION = "node.longhorn.io/default-disks-config"
# runcmd's script returns the status of its last command: this last command fails the boot
# (`cloud-init status --long`: error, scripts-user) when hkgen-node-setup failed earlier in it.
SETUP_FAILED_MARKER = "/run/hkgen/node-setup-failed"
SETUP_CHECK = ("test", "!", "-e", SETUP_FAILED_MARKER)
JOIN_TOKEN_KEY = "JOIN_TOKEN"  # noqa: S105 - the key name, not a value

# Secret value (or its `${KEY}` placeholder) by key name.
Secret = Callable[[str], str]


def is_launch_config(path: str) -> bool:
    """True for a file path (on the Pi) that holds a MicroK8s launch configuration."""
    return path == LAUNCH_CONFIG or (path.startswith(HKGEN_LAUNCH_DIR + "/") and path.endswith(".yaml"))


@cache
def _file_order(cluster: Cluster) -> dict[str, int]:
    """Position of every node in the file, by host name."""
    return {n.hostname: i for i, n in enumerate(cluster.nodes)}


def seed_folder(cluster: Cluster, hostname: str) -> PurePosixPath:
    """Folder of a host's seed inside the cluster folder: nodes/<host> or satellites/<host>."""
    if hostname in _file_order(cluster):
        return PurePosixPath("nodes", hostname)
    if any(s.hostname == hostname for s in cluster.satellites):
        return PurePosixPath("satellites", hostname)
    raise KeyError(hostname)


# --- schedules ---------------------------------------------------------------------------------


@cache
def reboot_schedule(cluster: Cluster) -> dict[str, str]:
    """Automatic-reboot time (HH:MM, local) of every satellite, in file order.

    Only satellites reboot on a clock: `rebootTime`, each next one `staggerMinutes` later. Nodes
    are rebooted by kured, one at a time, inside the window (reboots.py, maintenance.py).
    """
    return reboots.satellite_times(cluster)


def schedule_problems(cluster: Cluster) -> list[Problem]:
    """Reboots outside kured's nightly window: a satellite staggered past its end (error), a
    window too short for every node's turn (warning). See reboots.py.
    """
    return reboots.problems(cluster)


# --- node labels, annotations and taints ------------------------------------------------------


@dataclass(frozen=True)
class NodeMetadata:
    """What hkgen keeps on a Kubernetes Node object."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    taints: tuple[Mapping[str, str], ...]


def _data_paths(cluster: Cluster, node: Node) -> list[str]:
    """Mount points of a node's Longhorn disks: dataPath, dataPath-2, dataPath-3, ..."""
    return [cluster.data_path if i == 0 else f"{cluster.data_path}-{i + 1}" for i in range(len(node.disks))]


def node_metadata(cluster: Cluster) -> dict[str, NodeMetadata]:
    """Labels, annotations and taints each node must carry (applied cluster-side, see above).

    * `node-role.kubernetes.io/control-plane` or `.../worker` (kubelets may not self-set them);
    * storage nodes: `node.longhorn.io/create-default-disk=true` (Longhorn runs with
      createDefaultDiskLabeledNodes) for one disk; for several disks `=config` plus the
      `node.longhorn.io/default-disks-config` annotation listing every mount point with its
      reserved space, so Longhorn creates one disk per SSD;
    * the node's own `labels:` from cluster.yaml;
    * control planes with `schedulable: false`: NoSchedule taint
      `node-role.kubernetes.io/control-plane`.
    """
    out: dict[str, NodeMetadata] = {}
    for node in cluster.nodes:
        role = "control-plane" if node.is_control_plane else "worker"
        labels: dict[str, str] = {f"node-role.kubernetes.io/{role}": ""}
        annotations: dict[str, str] = {}
        if len(node.disks) == 1:
            labels[LONGHORN_DISK_LABEL] = "true"
        elif node.disks:
            labels[LONGHORN_DISK_LABEL] = "config"
            disks = [{"path": path, "allowScheduling": True,
                      "storageReserved": disk.size_gb * 10**9 * cluster.reserved_percent // 100}
                     for path, disk in zip(_data_paths(cluster, node), node.disks, strict=True)]
            annotations[LONGHORN_DISKS_ANNOTATION] = json.dumps(disks, separators=(",", ":"))
        labels.update(dict(node.labels))
        taints = (CONTROL_PLANE_TAINT,) if node.is_control_plane and not node.schedulable else ()
        out[node.hostname] = NodeMetadata(labels, annotations, taints)
    return out


# --- MicroK8s launch configurations ------------------------------------------------------------


def _service_ip(cluster: Cluster, offset: int) -> str:
    return str(ipaddress.ip_network(cluster.service_cidr, strict=False).network_address + offset)


def _join_peers(cluster: Cluster, node: Node) -> list[str]:
    """Control planes this node tries to join, in order.

    Control planes try the others in file order (the bootstrap node first). Workers start at a
    different control plane each (by their index) so their joins spread over the control planes,
    then try the rest.
    """
    cps = [cp for cp in cluster.control_planes if cp.hostname != node.hostname]
    if not node.is_control_plane and cps:
        shift = node.index % len(cps)
        cps = cps[shift:] + cps[:shift]
    return [cp.ip for cp in cps]


def base_launch_config(cluster: Cluster, node: Node) -> dict[str, Any]:
    """/etc/microk8s.yaml of a node: applied at snap install (pre-init), before anything starts.

    MicroK8s skips its bundled default launch configuration when this file exists, so the DNS
    settings of the kubelet are set here. No addons, token or join: those are applied after the
    join service decided whether this node forms the cluster or joins it.
    """
    kubelet: dict[str, Any] = {
        "--cluster-dns": _service_ip(cluster, 10),
        "--cluster-domain": CLUSTER_DOMAIN,
        "--node-ip": node.ip,
        **kubelet_args(cluster),  # lease cadence the grace period assumes (failover.py)
    }
    config: dict[str, Any] = {"version": LAUNCH_CONFIG_VERSION, "extraKubeletArgs": kubelet}
    if node.is_control_plane:
        if not node.schedulable:
            taint = CONTROL_PLANE_TAINT
            kubelet["--register-with-taints"] = f"{taint['key']}:{taint['effect']}"
        eviction = str(cluster.pod_eviction_seconds)
        config["extraKubeAPIServerArgs"] = {
            "--default-not-ready-toleration-seconds": eviction,
            "--default-unreachable-toleration-seconds": eviction,
        }
        config["extraKubeControllerManagerArgs"] = controller_manager_args(cluster)
        sans = [*cluster.api_server_names, node.ip]
        kubernetes_ip = _service_ip(cluster, 1)
        if kubernetes_ip != "10.152.183.1":  # MicroK8s' certificate already holds its default
            sans.append(kubernetes_ip)
        config["extraSANs"] = sans
    if cluster.app("monitoring") is not None:  # enabled
        # kube-proxy serves its metrics on 127.0.0.1 only (the upstream default, which MicroK8s'
        # arguments keep) while Prometheus scrapes every node's address: without this the
        # KubeProxyDown alert fires for ever. Bound to the node's LAN address, not 0.0.0.0.
        config["extraKubeProxyArgs"] = {"--metrics-bind-address": f"{node.ip}:{KUBE_PROXY_METRICS_PORT}"}
    # Read by MicroK8s' CNI generator at install: pod and service ranges of Calico, kube-proxy,
    # the API server and the controller manager.
    config["extraCNIEnv"] = {
        "IPv4_SUPPORT": "true",
        "IPv4_CLUSTER_CIDR": cluster.pod_cidr,
        "IPv4_SERVICE_CIDR": cluster.service_cidr,
    }
    return config


def _addons(cluster: Cluster) -> list[dict[str, Any]]:
    first, last = cluster.lb_pool
    addons: list[dict[str, Any]] = [
        # upstream nameservers, CoreDNS service address, cluster domain (addons/dns/enable)
        {"name": "dns", "args": [",".join(cluster.dns), _service_ip(cluster, 10), CLUSTER_DOMAIN]},
        {"name": "rbac"},
        {"name": "metallb", "args": [f"{first}-{last}"]},
    ]
    for name, args in cluster.addons:
        addons.append({"name": name, "args": list(args)} if args else {"name": name})
    return addons


def _addons_config(cluster: Cluster) -> dict[str, Any]:
    """Part the bootstrap node installs when it forms the cluster: the cluster-wide addons.

    A file of its own, apart from the token part: the cluster agent retries a file until all of
    it applied, and a failing addon must not keep the token (and so every join) waiting.
    """
    return {"version": LAUNCH_CONFIG_VERSION, "addons": _addons(cluster)}


def _token_config(secret: Secret) -> dict[str, Any]:
    """Part a control plane installs once it is a cluster member: it may now accept joins."""
    return {"version": LAUNCH_CONFIG_VERSION, "persistentClusterToken": secret(JOIN_TOKEN_KEY)}


# --- kernel command line -------------------------------------------------------------------------


def _boot_device(host: Node | Satellite) -> str:
    return host.boot_device if isinstance(host, Node) else "sdcard"


def cmdline_params(cluster: Cluster, host: Node | Satellite) -> tuple[str, ...]:
    """Kernel parameters hkgen adds to the image's command line for `host`."""
    params: list[str] = []
    if isinstance(host, Node):
        # Raspberry Pi kernels disable the memory cgroup; Kubernetes needs it (domain notes 1.7).
        params += ["cgroup_enable=memory", "cgroup_memory=1"]
    # Power-loss hardening: let the boot-time fsck repair what it finds instead of stopping in an
    # emergency shell nobody sees; reboot 10 s after a kernel panic.
    params += ["fsck.repair=yes", "panic=10"]
    if cluster.disable_hdmi:
        connectors = ("HDMI-A-1", "HDMI-A-2") if host.board in _TWO_HDMI else ("HDMI-A-1",)
        params += [f"video={c}:d" for c in connectors]
    if host.link == "wifi" and host.wifi is not None:
        params.append(f"cfg80211.ieee80211_regdom={host.wifi.country}")
    return tuple(params)


def kernel_cmdline(cluster: Cluster, host: Node | Satellite) -> tuple[str, str]:
    """(path on the boot partition, full command line) for `host`'s Ubuntu release."""
    path, default = CMDLINE_DEFAULTS[cluster.os_release]
    tokens = default.split()
    tokens += [p for p in cmdline_params(cluster, host) if p not in tokens]
    return path, " ".join(tokens)


# --- network -------------------------------------------------------------------------------------


def _wifi_key(wifi: Wifi) -> str:
    return key_for("WIFI_PASSPHRASE", wifi.ssid)


def _network_config(cluster: Cluster, host: Node | Satellite, secret: Secret) -> dict[str, Any]:
    wifi = host.link == "wifi" and host.wifi is not None
    # Ethernet matches the MAC address, so a seed flashed into the wrong Pi stays off the network
    # instead of taking another node's address. Netplan's networkd backend cannot match Wi-Fi
    # devices, so Wi-Fi uses the interface name (a Pi has one wlan0).
    device: dict[str, Any] = {} if wifi else {"match": {"macaddress": host.mac}, "set-name": "eth0"}
    device |= {
        "dhcp4": False,
        "addresses": [f"{host.ip}/{cluster.lan_prefix}"],
        "routes": [{"to": "default", "via": cluster.gateway}],
        "nameservers": {"addresses": list(cluster.dns), "search": [cluster.domain]},
    }
    if wifi and host.wifi is not None:
        device["access-points"] = {host.wifi.ssid: {"password": secret(_wifi_key(host.wifi))}}
        return {"version": 2, "renderer": "networkd", "wifis": {"wlan0": device}}
    return {"version": 2, "renderer": "networkd", "ethernets": {"eth0": device}}


# --- user-data ------------------------------------------------------------------------------------


def _file(path: str, template: str, *, mode: str = "0644", data: Any = None, append: bool = False) -> dict[str, Any]:
    """A file cloud-init writes on the Pi (`write_files`); its content comes from a template."""
    return {"path": path, "permissions": mode, "template": f"core/cloud-init/files/{template}",
            "data": data, "append": append}


HOSTS_FILE_LIMIT = 64  # beyond this, /etc/hosts lists control planes, satellites and the host itself


def _hosts_file(cluster: Cluster, host: Node | Satellite) -> list[tuple[str, str, str]]:
    """/etc/hosts entries: every host of a home-sized cluster; on a large one only what joins
    and the satellites need (a full list on every Pi would grow with the square of the nodes).
    """
    if len(cluster.nodes) + len(cluster.satellites) <= HOSTS_FILE_LIMIT:
        nodes = list(cluster.nodes)
    else:  # in file order, as for a small cluster
        nodes = list(cluster.control_planes)
        if isinstance(host, Node) and not host.is_control_plane:
            order = _file_order(cluster)
            nodes.append(host)
            nodes.sort(key=lambda n: order[n.hostname])
    entries = [(n.ip, f"{n.hostname}.{cluster.domain}", n.hostname) for n in nodes]
    entries += [(s.ip, f"{s.hostname}.{cluster.domain}", s.hostname) for s in cluster.satellites]
    return entries


def _common(cluster: Cluster, host: Node | Satellite, kind: str) -> dict[str, Any]:
    """Settings every Pi shares, nodes and satellites alike."""
    boot = _boot_device(host)
    wired = host.link == "ethernet"
    radios_off = {"bluetooth": cluster.disable_bluetooth, "wifi": wired and cluster.disable_wifi_when_wired}
    blacklist: list[str] = []
    if radios_off["bluetooth"]:
        blacklist += ["hci_uart", "btbcm"]
    if radios_off["wifi"]:
        blacklist += ["brcmfmac", "brcmutil"]
    packages = ["unattended-upgrades", "util-linux", "e2fsprogs"]
    files = [
        _file("/etc/hosts", "hosts.j2", data=_hosts_file(cluster, host)),
        _file("/etc/ssh/sshd_config.d/10-hkgen.conf", "sshd.conf.j2"),
        _file("/etc/systemd/journald.conf.d/60-hkgen.conf", "journald.conf.j2"),
        _file("/etc/systemd/system.conf.d/60-hkgen-watchdog.conf", "watchdog.conf.j2"),
        _file("/etc/apt/apt.conf.d/52hkgen-upgrades", "apt-upgrades.j2"),
        _file("/etc/sysctl.d/60-hkgen.conf", "sysctl.conf.j2"),
        _file("/etc/tmpfiles.d/hkgen-cpufreq.conf", "cpufreq.conf.j2"),
    ]
    if blacklist:
        files.append(_file("/etc/modprobe.d/hkgen-radios.conf", "modprobe-radios.conf.j2", data=blacklist))
    return {
        "kind": kind,
        "release": cluster.os_release,
        "hostname": host.hostname,
        "fqdn": f"{host.hostname}.{cluster.domain}",
        "ip": host.ip,
        "timezone": cluster.timezone,
        "locale": cluster.locale,
        "boot_device": boot,
        "sdcard": boot == "sdcard",
        "radios_off": radios_off,
        # Nodes are rebooted by kured (maintenance.py), in the window from rebootTime; satellites
        # by themselves, from rebootTime, staggered (reboots.py).
        "reboot_time": reboot_schedule(cluster).get(host.hostname, cluster.reboot_time),
        "packages": packages,
        "files": files,
        "users": [
            {"name": a.name, "groups": ["adm", "sudo"], "shell": "/bin/bash",
             "sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": True, "ssh_authorized_keys": list(a.ssh_keys)}
            for a in cluster.admins
        ],
        "admins": [a.name for a in cluster.admins],
        "ntp": {"enabled": True, "ntp_client": "systemd-timesyncd",
                **({"servers": list(cluster.ntp)} if cluster.ntp else {})},
    }


def _node_role(cluster: Cluster, node: Node) -> str:
    if not node.is_control_plane:
        return "worker"
    return "bootstrap" if node.hostname == cluster.bootstrap_node.hostname else "control-plane"


def _describe(cluster: Cluster, node: Node) -> str:
    if not node.is_control_plane:
        return f"{node.hostname}: worker (joins with --worker)"
    position = cluster.control_planes.index(node) + 1
    vote = "dqlite voter" if node in cluster.voters else "dqlite stand-by"
    text = f"{node.hostname}: control plane {position} of {len(cluster.control_planes)} ({vote})"
    if _node_role(cluster, node) == "bootstrap":
        text += "; bootstrap node: forms the cluster only if no peer already runs it"
    return text


def _node_seed(cluster: Cluster, node: Node, secret: Secret) -> dict[str, Any]:
    seed = _common(cluster, node, "node")
    role = _node_role(cluster, node)
    seed["summary"] = _describe(cluster, node)
    seed["role"] = role
    seed["control_plane"] = node.is_control_plane
    seed["channel"] = cluster.microk8s_channel
    seed["watchdog"] = node.is_control_plane and cluster.watchdog_enabled
    # openssl: the join service compares the CAs of its peers' certificates.
    packages = ["open-iscsi", "nfs-common", "cryptsetup", "dmsetup", "openssl"]
    if cluster.os_release == "22.04":
        # vxlan and friends for Calico; the package no longer exists from 24.04 on and would fail
        # the whole apt install there.
        packages.append("linux-modules-extra-raspi")
    if node.is_control_plane and cluster.backup:
        # age: datastore archives are encrypted to the cluster's age recipients before upload.
        packages.append("age")
    if node.is_control_plane and cluster.engine == "argocd":
        # gnupg (gpg, gpgv): hkgen-gitops-bootstrap verifies the signed argo-cd chart with them
        # (Ubuntu Server images have them already; named so that a trimmed image gets them too).
        packages.append("gnupg")
    seed["packages"] = [*packages, *seed["packages"]]
    disks = [
        {"id": disk.id, "device": f"/dev/disk/by-id/{disk.id}", "mount": path,
         "label": "longhorn" if i == 0 else f"longhorn-{i + 1}",
         "args": shlex.join([disk.id, path, "longhorn" if i == 0 else f"longhorn-{i + 1}"])}
        for i, (disk, path) in enumerate(zip(node.disks, _data_paths(cluster, node), strict=True))
    ]
    seed["disks"] = disks
    seed["kubelite_unit"] = KUBELITE_UNIT
    join_conf = {
        "role": role,
        "peers": " ".join(_join_peers(cluster, node)),
        "channel": cluster.microk8s_channel,
        "token_file": f"{HKGEN_LAUNCH_DIR}/join-token",
        "launcher_dir": MICROK8S_LAUNCHER_DIR,
        "addons_config": f"{HKGEN_LAUNCH_DIR}/addons.yaml" if role == "bootstrap" else "",
        "token_config": f"{HKGEN_LAUNCH_DIR}/token.yaml" if node.is_control_plane else "",
        "state_file": JOINED_MARKER,
        "join_lock": "/var/snap/microk8s/current/var/lock/join-in-progress",
        "form_anyway": f"{HKGEN_LAUNCH_DIR}/form-anyway" if role == "bootstrap" else "",
        "microk8s": "/snap/bin/microk8s",
        "snap": "/usr/bin/snap",
        "openssl": "/usr/bin/openssl",
        "agent_port": "25000",  # MicroK8s' cluster agent
    }
    join_conf.update(rejoin.join_settings(cluster, node))  # after-join check and own kubelet args
    files = seed["files"]
    files += [
        _file(LAUNCH_CONFIG, "launch-config.yaml.j2", mode="0600", data=base_launch_config(cluster, node)),
        _file(f"{HKGEN_LAUNCH_DIR}/join-token", "join-token.j2", mode="0600", data=secret(JOIN_TOKEN_KEY)),
        _file(f"{HKGEN_LAUNCH_DIR}/join.conf", "join.conf.j2", mode="0600",
              data={k: shlex.quote(v) for k, v in join_conf.items()}),
    ]
    if role == "bootstrap":
        files.append(_file(f"{HKGEN_LAUNCH_DIR}/addons.yaml", "launch-config.yaml.j2", mode="0600",
                           data=_addons_config(cluster)))
    if node.is_control_plane:
        files.append(_file(f"{HKGEN_LAUNCH_DIR}/token.yaml", "launch-config.yaml.j2", mode="0600",
                           data=_token_config(secret)))
    files += [
        _file("/usr/local/sbin/hkgen-microk8s-join", "hkgen-microk8s-join.sh", mode="0755"),
        _file("/etc/systemd/system/hkgen-microk8s-join.service", "hkgen-microk8s-join.service.j2"),
        _file("/etc/modules-load.d/hkgen-longhorn.conf", "modules-longhorn.conf.j2"),
    ]
    if disks:
        files += [
            _file("/usr/local/sbin/hkgen-prepare-disk", "hkgen-prepare-disk.sh", mode="0755"),
            _file("/etc/fstab", "fstab-disks.j2", data=disks, append=True),
        ]
    if seed["watchdog"]:
        watchdog = {
            "node": node.hostname,
            "max_restarts_per_hour": cluster.watchdog_max_restarts,
            "api_failures": 3,
            # The lifecycle controller marks a silent node NotReady after the grace period; a node
            # still Ready two minutes after that means it is stuck.
            "stale_lease_seconds": cluster.node_monitor_grace_seconds + 120,
            "leader_stale_seconds": 180,
            "boot_grace_seconds": 600,
            "escalate_within_seconds": 900,
            "state_file": "/var/lib/hkgen/microk8s-watchdog.json",
            "joined_file": JOINED_MARKER,
            "microk8s": "/snap/bin/microk8s",
            "snap": "/usr/bin/snap",
        }
        files += [
            _file("/usr/local/sbin/hkgen-microk8s-watchdog", "hkgen-microk8s-watchdog.py", mode="0755"),
            _file("/etc/hkgen/microk8s-watchdog.json", "json.j2", data=watchdog),
            _file("/etc/systemd/system/hkgen-microk8s-watchdog.service", "hkgen-microk8s-watchdog.service.j2"),
            _file("/etc/systemd/system/hkgen-microk8s-watchdog.timer", "hkgen-microk8s-watchdog.timer.j2"),
        ]
    files += upgrade.seed_files(cluster, node)  # MicroK8s channel upgrades from Git (upgrade.py)
    files += gitops_bootstrap.seed_files(cluster, node)  # control planes install the GitOps engine
    files += rejoin.seed_files(cluster, node, base_launch_config(cluster, node))  # zero-touch reflash
    files += dqlite_metrics.seed_files(cluster, node)  # the dqlite membership for the health gates
    files.append(_file("/usr/local/sbin/hkgen-node-setup", "hkgen-node-setup.sh.j2", mode="0755"))
    seed["snap_commands"] = [
        ["install", "microk8s", "--classic", f"--channel={cluster.microk8s_channel}"],
        # Held forever: a snap refresh restarts the control plane; upgrade node by node on purpose.
        ["refresh", "--hold", "microk8s"],
    ]
    seed["bootcmd"] = [
        # Every boot, before anything mounts or starts: an empty Longhorn mount point becomes
        # immutable, so with its SSD missing nothing can write to the OS disk there.
        ["sh", "-c", 'mkdir -p "$1" && { mountpoint -q "$1" || chattr +i "$1"; }', "hkgen-guard", d["mount"]]
        for d in disks
    ]
    timers = ["hkgen-microk8s-watchdog.timer"] if seed["watchdog"] else []
    seed["runcmd"] = [
        ["/usr/local/sbin/hkgen-node-setup"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "--no-block", "hkgen-microk8s-join.service"],
        *([["systemctl", "enable", "--now", *timers]] if timers else []),
        ["systemctl", "enable", "--now", *upgrade.timers(node)],
        *([["systemctl", "enable", "--now", "hkgen-gitops-bootstrap.timer", "hkgen-microk8s-reclaim.timer"]]
          if node.is_control_plane else []),
        *([["systemctl", "enable", "--now", *dqlite_metrics.timers(node)]] if dqlite_metrics.timers(node) else []),
    ]
    seed["setup_check"] = SETUP_CHECK
    return seed


SER2NET_DROP_IN = "/etc/systemd/system/ser2net.service.d/10-hkgen-restart.conf"


def _satellite_seed(cluster: Cluster, sat: Satellite) -> dict[str, Any]:
    seed = _common(cluster, sat, "satellite")
    devices = ", ".join(f"{d.name} on port {d.port}" for d in sat.serial_devices)
    seed["summary"] = f"{sat.hostname}: satellite serving {devices} over TCP (ser2net); no Kubernetes"
    seed["packages"] = ["ser2net", "ufw", *seed["packages"]]
    seed["serial_devices"] = [
        {"name": d.name, "device": f"/dev/serial/by-id/{d.id}", "port": d.port, "baud": d.baud_rate}
        for d in sat.serial_devices
    ]
    # ser2net answers only the cluster nodes (zigbee2mqtt pods reach it from their node's
    # address); SSH answers the whole LAN.
    seed["firewall"] = {
        "lan": str(ipaddress.ip_network(cluster.lan, strict=False)),
        "clients": [n.ip for n in cluster.nodes],
        "ports": [d.port for d in sat.serial_devices],
    }
    seed["files"] += [
        _file("/etc/ser2net.yaml", "ser2net.yaml.j2"),
        _file(SER2NET_DROP_IN, "ser2net-restart.conf.j2"),
        _file("/usr/local/sbin/hkgen-node-setup", "hkgen-node-setup.sh.j2", mode="0755"),
    ]
    seed["snap_commands"] = []
    seed["bootcmd"] = []
    # daemon-reload: the drop-in applies before the setup script (re)starts ser2net.
    seed["runcmd"] = [["systemctl", "daemon-reload"], ["/usr/local/sbin/hkgen-node-setup"]]
    seed["setup_check"] = SETUP_CHECK
    return seed


# --- the files ----------------------------------------------------------------------------------------


def _outputs(cluster: Cluster, host: Node | Satellite, seed: dict[str, Any], folder: PurePosixPath,
             secret: Secret) -> list[OutputFile]:
    cmdline_path, cmdline = kernel_cmdline(cluster, host)
    meta = {"instance_id": f"hkgen-{cluster.name}-{host.hostname}", "hostname": host.hostname}
    base = "core/cloud-init"
    return [
        OutputFile(folder / "user-data", f"{base}/user-data.j2", freeze({"seed": seed}), "cloud-config", 0o600),
        OutputFile(folder / "meta-data", f"{base}/meta-data.j2", freeze({"meta": meta}), "yaml", 0o644),
        OutputFile(folder / "network-config", f"{base}/network-config.j2",
                   freeze({"network": _network_config(cluster, host, secret), "host": host.hostname}), "yaml", 0o600),
        OutputFile(folder / cmdline_path, f"{base}/cmdline.txt.j2", freeze({"cmdline": cmdline}), "text", 0o644),
    ]


def host_files(cluster: Cluster, hostname: str, secrets: Mapping[str, str] | None = None) -> list[OutputFile]:
    """The seed files of one node or satellite.

    Without `secrets` (the committed render) secret values are `${KEY}` placeholders. With them
    (`hkgen boot-media`) the real values go into the same data, so the templates quote them for
    YAML like any other value (a Wi-Fi passphrase may hold `#` or `: `); a text substitution
    could not.
    """
    def secret(key: str) -> str:
        if secrets is None:
            return placeholder(key)
        return secrets[key]

    folder = seed_folder(cluster, hostname)
    for node in cluster.nodes:
        if node.hostname == hostname:
            return _outputs(cluster, node, _node_seed(cluster, node, secret), folder, secret)
    for sat in cluster.satellites:
        if sat.hostname == hostname:
            return _outputs(cluster, sat, _satellite_seed(cluster, sat), folder, secret)
    raise KeyError(hostname)


def seed_problems(cluster: Cluster) -> list[Problem]:
    """Why the seeds of `cluster` cannot be rendered (for `hkgen validate` too): reboots outside
    kured's window (`schedule_problems`; its warnings do not stop a render), and a MicroK8s
    channel older than the launch-configuration format the seeds use.
    """
    problems = schedule_problems(cluster)
    major, minor = (int(x) for x in cluster.kubernetes_minor.split("."))
    if (major, minor) < MIN_MICROK8S:
        # 1.27 reads launch configurations up to 0.1.0 and has no extraCNIEnv: its install hook
        # would fail on /etc/microk8s.yaml, and a failed pre-init fails the snap install.
        problems.append(Problem(cluster.source, 0, 0, "$.microk8s.channel",
                                f"MicroK8s {cluster.kubernetes_minor} cannot read the launch configuration format "
                                f"{LAUNCH_CONFIG_VERSION} the seeds use (MicroK8s 1.28 or later)",
                                "use channel 1.28/stable or later"))
    return problems


def files(cluster: Cluster, _components: Sequence[Component] = ()) -> list[OutputFile]:
    """Seed files of every node and satellite (the GitOps components play no part in a seed)."""
    problems = [p for p in seed_problems(cluster) if p.severity == "error"]
    if problems:
        raise RenderError(problems)
    files: list[OutputFile] = []
    hosts: list[Node | Satellite] = [*cluster.nodes, *cluster.satellites]
    for host in hosts:
        files += host_files(cluster, host.hostname)
    return files
