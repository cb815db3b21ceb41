"""Where every second of `hkgen plan` comes from: Kubernetes facts, settings read back from the
rendered tree, and Raspberry Pi estimates, each kept apart and named, so a figure in the plan can
be traced to one of them.

* Kubernetes facts (the defaults a figure is compared with, and the kubelet's lease cadence): the
  kubelet renews its node Lease every `lease duration x 0.25` seconds (nodeLeaseRenewIntervalFraction
  in the kubelet, not configurable); the node lifecycle controller looks at the Lease every
  `--node-monitor-period` and marks the node NotReady/Unknown when it is older than
  `--node-monitor-grace-period`.
* Rendered settings (`rendered_settings`): the controller manager's grace and period and the
  kubelet's lease duration from the seeds' launch configuration, tolerations and termination grace
  from every StatefulSet/Deployment, Longhorn's node-down policy, the images the pre-pull
  DaemonSet keeps on every node.
* Pi estimates (`PI`, `APP_START`, `APP_STOP`, `IMAGE_MB`): typical figures for a Raspberry Pi 4 on
  USB SSD or SD card (domain notes §4.3); the plan labels them as estimates.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APP_START",
    "APP_STOP",
    "IMAGE_MB",
    "KUBE_DEFAULTS",
    "LEASE_RENEW_FRACTION",
    "PI",
    "PULL_MB_PER_SECOND",
    "WIFI_MIN_GRACE",
    "app_start",
    "app_stop",
    "lease_renew_seconds",
    "pull_seconds",
    "read_launch_args",
]

# Kubernetes defaults (kube-controller-manager, kube-apiserver, kubelet, attach-detach controller).
KUBE_DEFAULTS: dict[str, int] = {
    "node_monitor_grace": 50,  # --node-monitor-grace-period (1.32+; 40 s before)
    "node_monitor_period": 5,  # --node-monitor-period
    "eviction": 300,  # --default-unreachable-toleration-seconds
    "force_detach": 360,  # attach-detach controller: force detach after 6 minutes
    "lease_duration": 40,  # kubelet nodeLeaseDurationSeconds
}
# The kubelet renews its Lease at this fraction of the lease duration (pkg/kubelet:
# nodeLeaseRenewIntervalFraction = 0.25): 40 s -> every 10 s.
LEASE_RENEW_FRACTION = 0.25
# A node on Wi-Fi drops a few seconds of packets now and then (roaming, interference, power
# save): the grace period must cover that with renewals to spare. 30 s with a renewal every
# 7.5 s survives 22 s of silence; 20 s (a renewal every 5 s) only 15 s.
WIFI_MIN_GRACE = 30

# Raspberry Pi 4 estimates, seconds (domain notes §4.3 unless said otherwise).
PI: dict[str, int] = {
    "longhorn_reaction": 10,  # node down: Longhorn deletes the VolumeAttachment, resyncs (5-15 s)
    "longhorn_detach": 5,  # planned move: clean unmount + detach on the old node
    "attach": 30,  # engine start + attach + mount on the new node (10-40 s)
    "node_reboot": 120,  # firmware, kernel, fsck, snap services, kubelite, node Ready again
    "microk8s_refresh": 180,  # snap refresh of MicroK8s to a new channel + services up + Ready
    "satellite_reboot": 60,  # Pi 3 with ser2net: boot until the TCP port answers
}
# App start after its container starts (image on the node), estimates on a Pi 4.
APP_START: dict[str, int] = {"home-assistant": 45, "zigbee2mqtt": 20, "mosquitto": 3, "prometheus": 60,
                             "grafana": 15}
# Graceful stop on a planned move (SIGTERM to exit), estimates; never more than the termination grace.
APP_STOP: dict[str, int] = {"home-assistant": 10, "zigbee2mqtt": 3, "mosquitto": 1, "prometheus": 20,
                            "grafana": 2}
# Compressed arm64 image sizes in MB (estimates from the registries' manifests) and the rate a Pi 4
# pulls and unpacks them (100 Mbit/s uplink, unpacking on USB SSD/SD card).
IMAGE_MB: dict[str, int] = {"home-assistant": 1100, "zigbee2mqtt": 120, "mosquitto": 10, "prometheus": 120,
                            "grafana": 150}
PULL_MB_PER_SECOND = 8
DEFAULT_APP_START = 20
DEFAULT_IMAGE_MB = 100


def app_start(app: str, workload: str) -> int:
    """Seconds from container start until the app answers (estimate)."""
    return APP_START.get(app, APP_START.get(workload, DEFAULT_APP_START))


def app_stop(app: str, workload: str, termination_grace: int) -> int:
    """Seconds a graceful stop takes (estimate, capped by the rendered termination grace)."""
    return min(APP_STOP.get(app, APP_STOP.get(workload, 5)), termination_grace)


def pull_seconds(app: str, workload: str) -> int:
    """Seconds to pull and unpack the app's image on a Pi that does not have it (estimate)."""
    size = IMAGE_MB.get(app, IMAGE_MB.get(workload, DEFAULT_IMAGE_MB))
    return -(-size // PULL_MB_PER_SECOND)


def lease_renew_seconds(lease_duration: float) -> float:
    """How often the kubelet renews its node Lease for a given lease duration."""
    return lease_duration * LEASE_RENEW_FRACTION


def read_launch_args(text: str, found: dict[str, Any]) -> None:
    """Pick the failover flags out of a rendered user-data (its launch configuration, as YAML text).

    The first value of each flag wins (every control plane renders the same ones).
    """
    flags = {
        "--node-monitor-grace-period": "node_monitor_grace",
        "--node-monitor-period": "node_monitor_period",
        "--node-lease-duration-seconds": "lease_duration",
    }
    for line in text.splitlines():
        stripped = line.strip()
        for flag, key in flags.items():
            if stripped.startswith(flag + ":") and key not in found:
                value = stripped.split(":", 1)[1].strip().strip("'\"").rstrip("s")
                if value.isdigit():
                    found[key] = int(value)
