"""The failure planner behind `hkgen plan`: what lands where, what survives a dead Pi or a power
cut, how long stateful apps take to come back, and what the cluster draws from the wall.

Everything here is arithmetic over the model and the app catalogue (pure, deterministic):
- placement mimics the scheduler closely enough to answer capacity questions: pinned pods
  first, replicas of one workload on distinct nodes, each pod on the schedulable node with the
  most free memory (the default scheduler's least-allocated spreading);
- recovery time after a node dies follows domain-notes §4.3:
  T = (G + P) + E + T_grace + L + A + I, plus the app's own start S, where G is the
  node-monitor grace period, P the node-monitor period, E the eviction toleration, T_grace the
  pod's termination grace, L Longhorn's reaction, A attach+mount, I image pull;
- Longhorn capacity places each volume's replicas on distinct storage nodes, now and with any
  one storage node gone.
Figures that are estimates (Pi timings, power draw) are named as such in the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..config.catalogue import Workload
from ..config.model import Cluster, Node
from .capacity import PLATFORM, all_workloads, allocatable_cpu_millis, allocatable_mib
from .daemons import EveryNode, model_every_node, read_every_node
from .failover import PREPULL_NAME, prepull_images
from .timing import KUBE_DEFAULTS, PI, app_start, pull_seconds, read_launch_args

__all__ = [
    "DEFAULTS",
    "DEFAULT_POLICY",
    "JSON_VERSION",
    "TIMINGS",
    "Analysis",
    "analyse",
    "rendered_settings",
]

JSON_VERSION = 1  # layout version of the `hkgen plan --format json` document

# Kubernetes/MicroK8s defaults the tuned figures are compared with (domain-notes §4.1; timing.py).
DEFAULTS: dict[str, int] = {k: KUBE_DEFAULTS[k] for k in ("node_monitor_grace", "eviction", "force_detach")}
DEFAULT_POLICY = "do-nothing"
# Pi 4 estimates in seconds (timing.PI): Longhorn's VolumeAttachment clean-up + resync, and
# Longhorn engine start + attach + mount on a Pi.
TIMINGS = {"longhorn_reaction": PI["longhorn_reaction"], "attach": PI["attach"]}
# Power draw in watts (idle, full load), typical published measurements; SSD per USB disk.
POWER = {
    "rpi4": (2.7, 6.4),
    "rpi5": (3.3, 9.0),
    "cm4": (2.2, 6.0),
    "rpi3b+": (1.9, 5.1),
    "rpi3b": (1.4, 3.7),
    "rpizero2w": (0.6, 3.0),
}
SSD_POWER = (0.6, 2.5)
# Cold start after a power cut (seconds, estimates for a Pi 4 booting Ubuntu from USB/SD).
COLD_START = (
    ("boot", "firmware, kernel, fsck of the root filesystem, network up", 60),
    ("microk8s", "snap services start; dqlite elects a leader once 2 of 3 voters are up", 60),
    ("kubernetes", "kubelite serves the API; nodes report Ready; Calico and CoreDNS start", 45),
    ("storage", "Longhorn manager and instance managers start; volumes re-attach to their nodes", 60),
    ("home-automation", "Mosquitto, zigbee2mqtt and Home Assistant start on their volumes", 50),
    ("gitops", "Flux/Argo CD resume and re-apply Git (nothing waits on it: objects survived)", 30),
    ("monitoring", "Prometheus replays its WAL; Thanos and Grafana follow", 90),
)


@dataclass(frozen=True)
class Pod:
    """One pod instance the planner places."""

    workload: str
    app: str
    cpu: int
    mem: int
    pinned_to: str | None = None
    every_node: bool = False
    storage_only: bool = False
    schedulable_only: bool = False  # a DaemonSet that does not tolerate the control planes' taint


@dataclass
class NodeLoad:
    """What the planner placed on one node (running totals: placement stays linear per pod)."""

    node: Node
    pods: list[Pod] = field(default_factory=list)
    mem: int = 0
    cpu: int = 0
    workloads: set[str] = field(default_factory=set)
    allocatable_mem: int = 0
    allocatable_cpu: int = 0

    def __post_init__(self) -> None:
        self.allocatable_mem = allocatable_mib(self.node)
        self.allocatable_cpu = allocatable_cpu_millis(self.node)

    def add(self, pod: Pod) -> None:
        """Put `pod` here."""
        self.pods.append(pod)
        self.mem += pod.mem
        self.cpu += pod.cpu
        self.workloads.add(pod.workload)

    @property
    def free_mem(self) -> int:
        """Allocatable memory not requested (MiB)."""
        return self.allocatable_mem - self.mem

    @property
    def free_cpu(self) -> int:
        """Allocatable CPU not requested (millicores)."""
        return self.allocatable_cpu - self.cpu


def _pods(cluster: Cluster, workloads: list[Workload], daemons: tuple[EveryNode, ...] = ()) -> list[Pod]:
    pods: list[Pod] = [Pod(d.name, "platform", d.cpu_millis, d.memory_mib, every_node=True,
                           schedulable_only=not d.on_control_planes) for d in daemons]
    for comp in PLATFORM:
        if comp.placement == "every-node":
            pods.append(Pod(comp.name, "platform", comp.cpu_millis, comp.memory_mib, every_node=True))
        elif comp.placement == "storage-nodes":
            pods.append(
                Pod(comp.name, "platform", comp.cpu_millis, comp.memory_mib, every_node=True, storage_only=True)
            )
        else:
            pods.extend(Pod(comp.name, "platform", comp.cpu_millis, comp.memory_mib) for _ in range(comp.replicas))
    for w in workloads:
        if w.per_node:
            pods.append(Pod(w.name, w.app, w.cpu_millis, w.memory_mib, every_node=True))
        else:
            pods.extend(Pod(w.name, w.app, w.cpu_millis, w.memory_mib, w.pinned_to) for _ in range(w.replicas))
    return pods


def _fits(
    load: NodeLoad, pod: Pod, extra_mem: int = 0, extra_cpu: int = 0, extra: frozenset[str] = frozenset()
) -> bool:
    allowed = (pod.pinned_to is None and load.node.schedulable) or pod.pinned_to == load.node.hostname
    return (allowed and load.free_mem - extra_mem >= pod.mem and load.free_cpu - extra_cpu >= pod.cpu
            and pod.workload not in load.workloads and pod.workload not in extra)


def place(cluster: Cluster, pods: list[Pod]) -> tuple[dict[str, NodeLoad], list[Pod]]:
    """Place `pods` on the cluster's nodes; return the loads and the pods that fit nowhere."""
    loads = {n.hostname: NodeLoad(n) for n in cluster.nodes}
    unplaced: list[Pod] = []
    for pod in pods:
        if pod.every_node:
            for load in loads.values():
                if not (pod.storage_only and not load.node.is_storage) and not (
                        pod.schedulable_only and not load.node.schedulable):
                    load.add(pod)
    ordered = sorted(
        (p for p in pods if not p.every_node), key=lambda p: (p.pinned_to is None, -p.mem, -p.cpu, p.workload)
    )
    for pod in ordered:
        best = max((ld for ld in loads.values() if _fits(ld, pod)),
                   key=lambda ld: (ld.free_mem, ld.free_cpu, -ld.node.index), default=None)
        if best is None:
            unplaced.append(pod)
        else:
            best.add(pod)
    return loads, unplaced


def rank_nodes(loads: dict[str, NodeLoad]) -> list[NodeLoad]:
    """Nodes by the scheduler's preference for a new pod (most free memory first): computed once
    per analysis, so moving a dead node's pods does not rescan every node for every pod.
    """
    return sorted(loads.values(), key=lambda ld: (ld.free_mem, -ld.node.index), reverse=True)


def displaced_without_place(loads: dict[str, NodeLoad], down: str | frozenset[str],
                            ranked: list[NodeLoad] | None = None) -> list[Pod]:
    """Pods of the `down` node(s) that find no other node, moving them like the scheduler would.

    Only the dead nodes' pods move (running pods elsewhere stay where they are); each goes to the
    surviving node with the most free memory that can take it, as in `place`. Nodes that took
    none of the moved pods keep their place in `ranked`: the first that fits is the best of them;
    the few that took some are compared by their reduced free memory.
    """
    gone = frozenset({down}) if isinstance(down, str) else down
    order = ranked if ranked is not None else rank_nodes(loads)
    extra_mem: dict[str, int] = {}
    extra_cpu: dict[str, int] = {}
    extra: dict[str, set[str]] = {}
    stranded: list[Pod] = []
    moving = sorted((p for host in sorted(gone) for p in loads[host].pods if not p.every_node),
                    key=lambda p: (-p.mem, -p.cpu, p.workload))
    for pod in moving:
        best: NodeLoad | None = None
        for load in order:
            host = load.node.hostname
            if host in gone or host in extra_mem:
                continue
            if _fits(load, pod):
                best = load
                break
        for host in extra_mem:
            load = loads[host]
            if not _fits(load, pod, extra_mem[host], extra_cpu[host], frozenset(extra[host])):
                continue
            if best is None or (load.free_mem - extra_mem[host], -load.node.index) > (
                    best.free_mem - extra_mem.get(best.node.hostname, 0), -best.node.index):
                best = load
        if best is None:
            stranded.append(pod)
            continue
        host = best.node.hostname
        extra_mem[host] = extra_mem.get(host, 0) + pod.mem
        extra_cpu[host] = extra_cpu.get(host, 0) + pod.cpu
        extra.setdefault(host, set()).add(pod.workload)
    return stranded


@dataclass(frozen=True)
class VolumeNeed:
    """A Longhorn volume: size and backup class, owned by a workload."""

    owner: str
    name: str
    size_gib: int
    backup_class: str


def _volumes(workloads: list[Workload]) -> list[VolumeNeed]:
    out: list[VolumeNeed] = []
    for w in workloads:
        for i in range(w.replicas):
            for v in w.volumes:
                suffix = f"-{i}" if w.replicas > 1 else ""
                out.append(VolumeNeed(w.name, f"{v.name}-{w.name}{suffix}", v.size_gib, v.backup_class))
    return out


def usable_gib(cluster: Cluster, node: Node) -> float:
    """Longhorn space of `node`: disk GB -> GiB, less the reserved share, times over-provisioning."""
    raw = node.storage_gb * 1e9 / 2**30
    return raw * (1 - cluster.reserved_percent / 100) * cluster.over_provisioning_percent / 100


def storage_capacity(cluster: Cluster) -> dict[str, float]:
    """Usable Longhorn GiB of every storage node (computed once per analysis)."""
    return {n.hostname: usable_gib(cluster, n) for n in cluster.storage_nodes}


def fit_volumes(cluster: Cluster, volumes: list[VolumeNeed], down: frozenset[str] = frozenset(),
                capacity: dict[str, float] | None = None) -> list[str]:
    """Volumes whose replicas cannot all be placed on distinct storage nodes (none = everything fits).

    `capacity` (from `storage_capacity`) saves recomputing every node's space per failure: the
    nodes in `down` are just left out of it.
    """
    import heapq

    space = capacity if capacity is not None else storage_capacity(cluster)
    free = {host: gib for host, gib in space.items() if host not in down}
    replicas = min(cluster.replicas, len(free)) if down else cluster.replicas
    heap = [(-gib, host) for host, gib in free.items()]  # most free space first
    heapq.heapify(heap)
    failed: list[str] = []
    for vol in sorted(volumes, key=lambda v: (-v.size_gib, v.name)):
        if len(heap) < replicas:
            failed.append(vol.name)
            continue
        picked = [heapq.heappop(heap) for _ in range(replicas)]
        if any(-gib < vol.size_gib for gib, _host in picked):
            failed.append(vol.name)
            for item in picked:
                heapq.heappush(heap, item)
            continue
        for gib, host in picked:
            heapq.heappush(heap, (gib + vol.size_gib, host))
    return failed


@dataclass(frozen=True)
class Recovery:
    """Predicted time for a stateful workload to run again after its node dies."""

    workload: str
    app: str
    kind: str
    steps: tuple[tuple[str, int], ...]
    start: int
    default_steps: tuple[tuple[str, int], ...] | None  # None = never recovers with defaults

    @property
    def seconds(self) -> int:
        """Seconds until the replacement pod runs on a healthy node with its volume."""
        return sum(s for _, s in self.steps)

    @property
    def usable(self) -> int:
        """Seconds until the app answers again (running + the app's own start)."""
        return self.seconds + self.start

    @property
    def default_seconds(self) -> int | None:
        """The same with Kubernetes/Longhorn defaults (None: never, until the node returns)."""
        return None if self.default_steps is None else sum(s for _, s in self.default_steps)


def _pull_step(w: Workload, settings: dict[str, Any]) -> tuple[str, int]:
    """The image pull of a moved pod: nothing when the rendered pre-pull DaemonSet holds its image."""
    image = settings.get("images", {}).get(w.name)
    if image is not None and image in settings.get("prepulled", ()):
        return ("image pull (pre-pulled on every node)", 0)
    return ("image pull (not pre-pulled; estimate)", pull_seconds(w.app, w.name))


def recoveries(cluster: Cluster, workloads: list[Workload], settings: dict[str, Any]) -> list[Recovery]:
    """Recovery predictions for every stateful, non-pinned, single-instance workload.

    T = (G + P) + E + T_grace + L + A + I, then the app's start S (domain notes §4.3): G, P, E and
    T_grace as rendered, L and A Pi estimates, I zero when the image is pre-pulled.
    """
    grace = int(settings["node_monitor_grace"])
    period = int(settings.get("node_monitor_period", KUBE_DEFAULTS["node_monitor_period"]))
    policy = str(settings["policy"])
    per_workload: dict[str, dict[str, int]] = settings.get("workloads", {})
    out: list[Recovery] = []
    for w in sorted(workloads, key=lambda w: w.name):
        if not w.volumes or w.pinned_to or w.kind == "Cluster":
            continue
        rendered = per_workload.get(w.name, {})
        eviction = rendered.get("eviction", int(settings["eviction"]))
        termination = rendered.get("termination_grace", w.termination_grace_seconds)
        detach_ok = (
            policy.startswith("delete-both")
            or (policy == "delete-statefulset-pod" and w.kind == "StatefulSet")
            or (policy == "delete-deployment-pod" and w.kind == "Deployment")
        )
        steps = (
            (f"node marked NotReady (grace {grace} s + monitor period {period} s)", grace + period),
            ("pod evicted (tolerationSeconds)", eviction),
            ("termination grace", termination),
            ("Longhorn releases the volume" + ("" if detach_ok else " (force detach after 6 min)"),
             PI["longhorn_reaction"] if detach_ok else DEFAULTS["force_detach"]),
            ("volume attached on the new node (estimate)", PI["attach"]),
            _pull_step(w, settings),
        )
        default: tuple[tuple[str, int], ...] | None
        if w.kind == "StatefulSet":
            default = None  # pod stays Terminating on the dead node; no replacement is created
        else:
            default = (
                ("node marked NotReady", DEFAULTS["node_monitor_grace"] + KUBE_DEFAULTS["node_monitor_period"]),
                ("pod evicted", DEFAULTS["eviction"]),
                ("force detach after 6 min", DEFAULTS["force_detach"]),
                ("volume attached", PI["attach"]),
            )
        out.append(Recovery(w.name, w.app, w.kind, steps, app_start(w.app, w.name), default))
    return out


@dataclass(frozen=True)
class Failure:
    """What happens when one node dies."""

    node: str
    quorum_kept: bool
    voters_left: int
    stranded: tuple[str, ...]  # workloads none of whose pods can run anywhere else
    pinned_down: tuple[str, ...]  # workloads pinned to this node (single points of failure)
    volumes_at_risk: tuple[str, ...]  # volumes that may lose their last replica
    volumes_not_fitting: tuple[str, ...]  # volumes whose replicas no longer fit
    # (workload, seconds until running, seconds until usable); None = until the host returns
    apps_down: tuple[tuple[str, int | None, int | None], ...] = ()
    zigbee_down: tuple[tuple[str, int | None], ...] = ()  # (network, seconds usable again or None)
    kind: str = "node"  # or "satellite"
    degraded: tuple[str, ...] = ()  # replicated workloads one of whose pods finds no place (others serve)

    @property
    def survivable(self) -> bool:
        """Quorum kept, every pod finds a place, no volume loses its last replica."""
        return self.quorum_kept and not self.stranded and not self.volumes_at_risk


@dataclass(frozen=True)
class Analysis:
    """Everything `hkgen plan` reports."""

    cluster: Cluster
    loads: dict[str, NodeLoad]
    unplaced: tuple[Pod, ...]
    failures: tuple[Failure, ...]
    recoveries: tuple[Recovery, ...]
    volumes: tuple[VolumeNeed, ...]
    volumes_not_fitting: tuple[str, ...]
    settings: dict[str, Any]
    workloads: tuple[Workload, ...] = ()
    capacity: dict[str, float] = field(default_factory=dict)

    @property
    def failures_tolerated(self) -> int:
        """Control-plane failures in a row the cluster survives (stand-bys are promoted in between)."""
        cps = len(self.cluster.control_planes)
        return max(cps - 2, 0) if cps >= 3 else 0

    def power(self) -> dict[str, float]:
        """Estimated draw in watts of nodes, satellites and SSDs (idle and load)."""
        idle = load = 0.0
        for n in self.cluster.nodes:
            i, peak = POWER[n.board]
            disks = len(n.disks) + (1 if n.boot_device == "usb" else 0)
            idle += i + disks * SSD_POWER[0]
            load += peak + disks * SSD_POWER[1]
        for s in self.cluster.satellites:
            i, peak = POWER[s.board]
            idle += i
            load += peak
        return {
            "idle_watts": round(idle, 1),
            "load_watts": round(load, 1),
            "kwh_per_year_idle": round(idle * 24 * 365 / 1000, 1),
        }

    def cold_start(self) -> list[tuple[str, str, int, int]]:
        """Power-cut recovery order: (stage, what happens, seconds, cumulative seconds)."""
        total = 0
        out: list[tuple[str, str, int, int]] = []
        for stage, what, seconds in COLD_START:
            total += seconds
            out.append((stage, what, seconds, total))
        return out

    def home_assistant_back_after_power_cut(self) -> int | None:
        """Seconds from power-on until Home Assistant runs (None if it is not enabled)."""
        if self.cluster.app("home-assistant") is None:
            return None
        for stage, _what, _s, cumulative in self.cold_start():
            if stage == "home-automation":
                return cumulative
        return None


def rendered_settings(tree: dict[Any, bytes]) -> dict[str, Any]:
    """The failover settings as the rendered tree really sets them.

    Reads the control planes' MicroK8s launch configuration (node-monitor grace), Longhorn's
    HelmRelease/Application values (node-down pod deletion policy) and every StatefulSet /
    Deployment (tolerationSeconds for unreachable nodes, terminationGracePeriodSeconds).
    Missing pieces are left out, so the caller falls back to the model.
    """
    import yaml as pyyaml

    loader = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)
    found: dict[str, Any] = {"workloads": {}, "images": {}, "prepulled": [], "source": "rendered tree"}
    every_node: list[EveryNode] = []  # kured and the pre-pull DaemonSet, as rendered (daemons.py)
    for path in sorted(tree, key=str):
        text = tree[path].decode("utf-8", "replace")
        if str(path).endswith("/user-data"):
            if "--node-" in text:
                read_launch_args(text, found)
            continue
        if not str(path).endswith(".yaml") or "kind:" not in text:
            continue
        try:
            docs = list(pyyaml.load_all(text, Loader=loader))
        except pyyaml.YAMLError:
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            _read_object(doc, found)
            read_every_node(doc, every_node)
    found["every_node"] = tuple(sorted(every_node, key=lambda e: e.name))
    return found


def _read_object(doc: dict[str, Any], found: dict[str, Any]) -> None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("HelmRelease", "Application"):
        values = spec.get("values") or ((spec.get("source") or {}).get("helm") or {}).get("valuesObject") or {}
        policy = (values.get("defaultSettings") or {}).get("nodeDownPodDeletionPolicy")
        if policy:
            found["policy"] = str(policy)
    elif kind == "DaemonSet" and (doc.get("metadata") or {}).get("name") == PREPULL_NAME:
        pod = ((spec.get("template") or {}).get("spec")) or {}
        found["prepulled"] = sorted({str(c.get("image")) for c in pod.get("initContainers") or []})
    elif kind in ("StatefulSet", "Deployment"):
        pod = ((spec.get("template") or {}).get("spec")) or {}
        name = str((doc.get("metadata") or {}).get("name"))
        containers = pod.get("containers") or []
        if containers and containers[0].get("image"):
            found["images"][name] = str(containers[0]["image"])
        entry: dict[str, int] = {}
        for tol in pod.get("tolerations") or []:
            if tol.get("key") == "node.kubernetes.io/unreachable" and "tolerationSeconds" in tol:
                entry["eviction"] = int(tol["tolerationSeconds"])
        if "terminationGracePeriodSeconds" in pod:
            entry["termination_grace"] = int(pod["terminationGracePeriodSeconds"])
        if entry:
            found["workloads"][name] = entry


def analyse(cluster: Cluster, settings: dict[str, Any] | None = None) -> Analysis:
    """Run every analysis. `settings` are the failover values actually rendered (defaults: the model)."""
    if settings is None:
        return _analyse_model(cluster)
    return _analyse(cluster, settings)


@cache
def _analyse_model(cluster: Cluster) -> Analysis:
    """The analysis with the model's settings, once per cluster (docs and README both use it)."""
    return _analyse(cluster, None)


def model_settings(cluster: Cluster) -> dict[str, Any]:
    """The failover settings as the model says the tree renders them (no tree at hand)."""
    from .failover import NODE_MONITOR_PERIOD

    prepulled = prepull_images(cluster)
    return {
        "node_monitor_grace": cluster.node_monitor_grace_seconds,
        "node_monitor_period": NODE_MONITOR_PERIOD,
        "lease_duration": cluster.node_monitor_grace_seconds,
        "eviction": cluster.pod_eviction_seconds,
        "policy": "delete-both-statefulset-and-deployment-pod",
        "images": dict(prepulled),
        "prepulled": sorted(set(prepulled.values())),
        "every_node": tuple(model_every_node(cluster)),
        "source": "cluster.yaml",
    }


def _down_for(recovery: dict[str, Recovery], pinned: set[str], w: Workload,
              settings: dict[str, Any]) -> tuple[int | None, int | None]:
    """Seconds until `w` runs and answers again after its node died (None: until the node returns)."""
    if w.name in pinned:
        return None, None
    rec = recovery.get(w.name)
    if rec is not None:
        return rec.seconds, rec.usable
    if w.replicas > 1 and w.kind != "Cluster":
        return 0, 0  # another replica keeps serving
    noticed = int(settings["node_monitor_grace"]) + int(settings.get("node_monitor_period", 5))
    if w.kind == "Cluster":  # CloudNativePG promotes a standby once the node is NotReady
        return noticed + 10, noticed + 10
    # No volume: the controller creates the replacement as soon as the pod is evicted.
    running = noticed + int(settings["eviction"]) + _pull_step(w, settings)[1]
    return running, running + app_start(w.app, w.name)


def _analyse(cluster: Cluster, settings: dict[str, Any] | None) -> Analysis:
    rendered = model_settings(cluster)
    rendered.update(settings or {})
    workloads = all_workloads(cluster)
    pods = _pods(cluster, workloads, tuple(rendered["every_node"]))
    loads, unplaced = place(cluster, pods)
    volumes = _volumes(workloads)
    recs = recoveries(cluster, workloads, rendered)
    by_workload = {r.workload: r for r in recs}
    by_name = {w.name: w for w in workloads}
    pod_count: dict[str, int] = {}
    for pod in pods:
        pod_count[pod.workload] = pod_count.get(pod.workload, 0) + 1
    failures: list[Failure] = []
    voters = {n.hostname for n in cluster.voters}
    ha = cluster.topology == "ha"
    cps = {n.hostname for n in cluster.control_planes}
    # Computed once, adjusted per failure: pinned workloads by node, each storage node's space,
    # the fit without a node (storage nodes of one disk size are interchangeable for it).
    pinned_on: dict[str, set[str]] = {}
    for w in workloads:
        if w.pinned_to:
            pinned_on.setdefault(w.pinned_to, set()).add(w.name)
    networks = {w.name: w.item for w in workloads if w.app == "zigbee2mqtt" and w.item}
    capacity = storage_capacity(cluster)
    ranked = rank_nodes(loads)
    fit_after: dict[int, tuple[str, ...]] = {}
    at_risk_all = tuple(v.name for v in volumes) if cluster.replicas < 2 else ()
    for node in cluster.nodes:
        host = node.hostname
        stranded_pods = displaced_without_place(loads, host, ranked)
        lost: dict[str, int] = {}
        for pod in stranded_pods:
            lost[pod.workload] = lost.get(pod.workload, 0) + 1
        # A replicated workload with a pod left running elsewhere still serves: degraded, not down.
        stranded = sorted(name for name, n in lost.items() if n >= pod_count[name])
        degraded = sorted(name for name, n in lost.items() if n < pod_count[name])
        voters_left = len(voters) - (host in voters)
        quorum = ha and (voters_left >= 2 or len(cps) - (host in cps) >= 2)
        pinned = pinned_on.get(host, set())
        on_node = sorted({p.workload for p in loads[host].pods if not p.every_node and p.app != "platform"})
        down = tuple((w, *_down_for(by_workload, pinned, by_name[w], rendered)) for w in on_node)
        zigbee = tuple((networks[w], usable) for w, _running, usable in down if w in networks)
        not_fitting: tuple[str, ...] = ()
        if node.is_storage:
            if node.storage_gb not in fit_after:
                fit_after[node.storage_gb] = tuple(fit_volumes(cluster, volumes, frozenset({host}), capacity))
            not_fitting = fit_after[node.storage_gb]
        failures.append(
            Failure(
                node=host,
                quorum_kept=quorum,
                voters_left=voters_left,
                stranded=tuple(sorted(set(stranded) - pinned)),
                degraded=tuple(degraded),
                pinned_down=tuple(sorted(pinned)),
                volumes_at_risk=at_risk_all if node.is_storage else (),
                volumes_not_fitting=not_fitting,
                apps_down=down,
                zigbee_down=tuple(sorted(zigbee)),
            )
        )
    for sat in cluster.satellites:
        nets = tuple(sorted((z.name, None) for z in cluster.zigbee
                            if z.satellite == sat.hostname and cluster.app("zigbee2mqtt") is not None))
        failures.append(Failure(node=sat.hostname, quorum_kept=ha, voters_left=len(voters), stranded=(),
                                pinned_down=(), volumes_at_risk=(), volumes_not_fitting=(), zigbee_down=nets,
                                kind="satellite"))
    return Analysis(
        cluster=cluster,
        loads=loads,
        unplaced=tuple(unplaced),
        failures=tuple(failures),
        recoveries=tuple(recs),
        volumes=tuple(volumes),
        volumes_not_fitting=tuple(fit_volumes(cluster, volumes, capacity=capacity)),
        settings=rendered,
        workloads=tuple(workloads),
        capacity=capacity,
    )
