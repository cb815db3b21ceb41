"""When hosts reboot for updates, and the rules that keep it inside the nightly window.

Nodes never reboot on a clock: unattended-upgrades leaves /var/run/reboot-required and kured
(maintenance.py) reboots them one at a time, drained, and starts a reboot only inside the window
of cluster.yaml (`os.upgrades.rebootTime`, `rebootWindowHours`). Satellites are outside the
cluster and reboot themselves at `rebootTime`, the n-th one `n * staggerMinutes` later.

Rules (`problems`, located at the key to change; seeds.schedule_problems reports them):
* every satellite reboots inside the window (error): the window is the time of night the
  household gave to maintenance, and a staggered satellite outside it takes its Zigbee network
  down at an hour nobody chose (staggerMinutes 240 with four satellites: 15:30);
* the window holds every node's turn (warning): kured gives a node about `NODE_TURN_MINUTES`
  (until a node sees the lock free, its drain and reboot, the lock held after it); a shorter
  window still reboots them all, over several nights.
"""

from __future__ import annotations

from ..analysis.timing import PI
from ..config.model import Cluster
from ..core.errors import Problem

__all__ = ["KURED_LOCK_RELEASE_DELAY_MINUTES", "KURED_PERIOD_MINUTES", "NODE_TURN_MINUTES", "problems",
           "satellite_times", "window"]

KURED_PERIOD_MINUTES = 5  # each node looks for the sentinel and the lock this often
KURED_LOCK_RELEASE_DELAY_MINUTES = 10  # lock held after a node is back: Longhorn rebuilds first
DRAIN_ESTIMATE_SECONDS = 60  # evictions and graceful stops on a Pi (estimate)
# One node's turn: up to one period until it sees the lock free, its drain and reboot, the hold.
NODE_TURN_MINUTES = (KURED_PERIOD_MINUTES + KURED_LOCK_RELEASE_DELAY_MINUTES
                     + -(-(DRAIN_ESTIMATE_SECONDS + PI["node_reboot"]) // 60))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    minutes %= 24 * 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def window(cluster: Cluster) -> tuple[str, str]:
    """kured's window (local HH:MM start and end)."""
    start = _minutes(cluster.reboot_time)
    return _hhmm(start), _hhmm(start + cluster.reboot_window_hours * 60)


def satellite_times(cluster: Cluster) -> dict[str, str]:
    """Automatic-reboot time (local HH:MM) of every satellite, in file order."""
    start = _minutes(cluster.reboot_time)
    return {s.hostname: _hhmm(start + i * cluster.reboot_stagger_minutes) for i, s in enumerate(cluster.satellites)}


def problems(cluster: Cluster) -> list[Problem]:
    """Satellites rebooting outside kured's window (error); a window too short for every node (warning)."""
    if not cluster.upgrades_enabled:
        return []
    out: list[Problem] = []
    start, end = window(cluster)
    length = cluster.reboot_window_hours * 60
    step = cluster.reboot_stagger_minutes
    last = len(cluster.satellites) - 1
    if last > 0 and last * step >= length:
        sat = cluster.satellites[last].hostname
        hints = [f"lower staggerMinutes to {(length - 1) // last} or less"] if (length - 1) // last >= 10 else []
        if (last * step) // 60 + 1 <= 24:  # the schema's bounds of staggerMinutes and rebootWindowHours
            hints.append(f"set rebootWindowHours to {(last * step) // 60 + 1} or more")
        hint = ", or ".join(hints)
        out.append(Problem(cluster.source, 0, 0, "$.os.upgrades.staggerMinutes",
                           f"satellite {sat} would reboot at {satellite_times(cluster)[sat]}, outside the reboot "
                           f"window {start}-{end} (rebootWindowHours {cluster.reboot_window_hours}) in which kured "
                           "reboots the nodes", hint))
    nodes = len(cluster.nodes)
    if nodes * NODE_TURN_MINUTES > length:
        per_night = max(length // NODE_TURN_MINUTES, 1)
        nights = -(-nodes // per_night)
        out.append(Problem(
            cluster.source, 0, 0, "$.os.upgrades.rebootWindowHours",
            f"kured reboots one node about every {NODE_TURN_MINUTES} minutes (drain, reboot, lock held "
            f"{KURED_LOCK_RELEASE_DELAY_MINUTES} minutes after): the {cluster.reboot_window_hours}-hour window "
            f"{start}-{end} reaches {per_night} of {nodes} nodes a night, so an update that needs a reboot "
            f"takes {nights} nights to reach every node",
            f"set rebootWindowHours to {-(-(nodes * NODE_TURN_MINUTES) // 60)} for one night", "warning"))
    return out
