"""Stage 3, model: the validated cluster file as frozen dataclasses with every default applied.

Stages after this one read only the model, never the raw YAML data. Defaults come from the
schema (`default` keywords), so the schema stays the one source of truth for them; the model adds
what is derived (voters and stand-bys, storage nodes, the bootstrap node, address ranges).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

from .alerting import Alerts, build_alerts

__all__ = [
    "Admin",
    "AppConfig",
    "Backup",
    "Cluster",
    "CustomApp",
    "Disk",
    "Node",
    "Satellite",
    "SerialDevice",
    "Tls",
    "UsbDevice",
    "Wifi",
    "ZigbeeNetwork",
    "build_model",
]

Role = Literal["control-plane", "worker"]
MAX_VOTERS = 3


@dataclass(frozen=True)
class Wifi:
    """Wi-Fi settings of a node or satellite (passphrase lives in the secrets file)."""

    ssid: str
    country: str


@dataclass(frozen=True)
class Disk:
    """A Longhorn disk: a USB SSD found by its stable /dev/disk/by-id name."""

    id: str
    size_gb: int


@dataclass(frozen=True)
class UsbDevice:
    """A USB device on a cluster node (e.g. a Zigbee stick)."""

    name: str
    id: str
    kind: str


@dataclass(frozen=True)
class Node:
    """A Raspberry Pi in the cluster."""

    hostname: str
    role: Role
    schedulable: bool
    board: str
    memory_gib: int
    ip: str
    mac: str
    link: str
    wifi: Wifi | None
    boot_device: str
    disks: tuple[Disk, ...]
    usb_devices: tuple[UsbDevice, ...]
    labels: tuple[tuple[str, str], ...]
    index: int

    @property
    def is_control_plane(self) -> bool:
        """True for MicroK8s control-plane (dqlite) members."""
        return self.role == "control-plane"

    @property
    def is_storage(self) -> bool:
        """True when the node gives at least one disk to Longhorn."""
        return bool(self.disks)

    @property
    def storage_gb(self) -> int:
        """Raw capacity of the node's Longhorn disks."""
        return sum(d.size_gb for d in self.disks)


@dataclass(frozen=True)
class SerialDevice:
    """A USB serial device a satellite serves over TCP."""

    name: str
    id: str
    port: int
    baud_rate: int


@dataclass(frozen=True)
class Satellite:
    """A small Pi outside the cluster that serves USB radios over TCP with ser2net."""

    hostname: str
    board: str
    memory_gib: float | None
    ip: str
    mac: str
    link: str
    wifi: Wifi | None
    serial_devices: tuple[SerialDevice, ...]
    index: int


@dataclass(frozen=True)
class ZigbeeNetwork:
    """A Zigbee network and how its zigbee2mqtt instance reaches the coordinator."""

    name: str
    base_topic: str
    channel: int
    adapter: str
    # exactly one of: node (USB on a cluster node), satellite, or host (network coordinator)
    node: str | None
    satellite: str | None
    device: str | None
    host: str | None
    port: int | None
    index: int

    @property
    def pinned(self) -> bool:
        """True when the coordinator is a USB stick on a cluster node: the pod cannot move."""
        return self.node is not None


@dataclass(frozen=True)
class Admin:
    """An admin login with its SSH keys."""

    name: str
    ssh_keys: tuple[str, ...]


@dataclass(frozen=True)
class Backup:
    """Off-site backup target and schedules."""

    endpoint: str
    bucket: str
    region: str
    prefix: str
    snapshot_cron: str
    snapshot_retain: int
    backup_cron: str
    backup_retain: int
    restore_on_rebuild: bool
    encrypt_volumes: bool = False  # critical volumes LUKS-encrypted by Longhorn


@dataclass(frozen=True)
class AppConfig:
    """A catalogue app as configured: its name and its settings with defaults applied."""

    name: str
    enabled: bool
    settings: dict[str, Any] = field(hash=False, compare=True)


@dataclass(frozen=True)
class CustomApp:
    """A container app declared in cluster.yaml."""

    name: str
    image: str
    port: int
    cpu_millis: int
    memory_mib: int
    storage_gib: int | None
    mount_path: str | None
    backup_class: str
    env: tuple[tuple[str, str], ...]
    secret_env: tuple[tuple[str, str], ...]
    host_network: bool
    expose: str
    load_balancer_ip: str | None = None  # with expose: loadBalancer, the address asked for
    login: str = "admin"  # with expose: ingress, `admin` (the ingress asks) or `own` (the app does)


@dataclass(frozen=True)
class Tls:
    """Who issues the web UIs' certificates (`tls` in cluster.yaml; config/tls.py uses it)."""

    issuer: str = "internal"  # internal CA, or acme (DNS-01)
    acme_email: str = ""
    acme_server: str = "production"
    solver: str = ""  # cloudflare or rfc2136
    rfc2136: tuple[tuple[str, str], ...] = ()  # nameserver, keyName, algorithm


@dataclass(frozen=True)
class Cluster:
    """The whole validated cluster."""

    source: str
    name: str
    domain: str
    topology: str
    timezone: str
    locale: str
    description: str
    lan: str
    gateway: str
    dns: tuple[str, ...]
    ntp: tuple[str, ...]
    pod_cidr: str
    service_cidr: str
    lb_pool: tuple[str, str]
    ingress_ip: str
    api_server_names: tuple[str, ...]
    os_release: str
    admins: tuple[Admin, ...]
    upgrades_enabled: bool
    reboot_time: str
    reboot_stagger_minutes: int
    cpu_governor: str
    disable_hdmi: bool
    disable_bluetooth: bool
    disable_wifi_when_wired: bool
    microk8s_channel: str
    addons: tuple[tuple[str, tuple[str, ...]], ...]
    node_monitor_grace_seconds: int
    pod_eviction_seconds: int
    watchdog_enabled: bool
    watchdog_max_restarts: int
    nodes: tuple[Node, ...]
    satellites: tuple[Satellite, ...]
    zigbee: tuple[ZigbeeNetwork, ...]
    replicas: int
    reserved_percent: int
    over_provisioning_percent: int
    data_path: str
    backup: Backup | None
    engine: str
    repo_url: str
    repo_branch: str
    gitops_interval: str
    secrets_file: str
    age_recipients: tuple[str, ...]
    versions: dict[str, dict[str, str]] = field(hash=False)
    apps: tuple[AppConfig, ...] = ()
    custom_apps: tuple[CustomApp, ...] = ()
    alerts: Alerts | None = None  # None only for models built without an `alerts` section (tests)
    reboot_window_hours: int = 3  # os.upgrades.rebootWindowHours: kured's nightly window
    tls: Tls = Tls()
    dns_server_ip: str | None = None  # network.dnsServerIP: k8s-gateway answers for the domain there

    def __hash__(self) -> int:
        # Per-cluster caches (`functools.cache` on a Cluster) hash it on every call; the generated
        # hash walks every node, so a 1,000-node cluster paid for 1,000 nodes per lookup.
        # The fields are immutable, so the hash is computed once.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            hashed = (f.name for f in fields(self) if (f.compare if f.hash is None else f.hash))
            cached = hash(tuple(getattr(self, name) for name in hashed))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        # String hashes differ between processes: a copy must compute its own.
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    @property
    def source_label(self) -> str:
        """How rendered files name the cluster file: the same whatever path hkgen was called with."""
        return f"clusters/{self.name}/cluster.yaml"

    @property
    def kubernetes_minor(self) -> str:
        """Kubernetes minor version of the MicroK8s channel, e.g. '1.34'."""
        return self.microk8s_channel.split("/", 1)[0]

    @cached_property
    def control_planes(self) -> tuple[Node, ...]:
        """Control-plane nodes in file order."""
        return tuple(n for n in self.nodes if n.is_control_plane)

    @cached_property
    def voters(self) -> tuple[Node, ...]:
        """The dqlite voters: MicroK8s keeps at most three; the first three control planes."""
        return self.control_planes[:MAX_VOTERS]

    @cached_property
    def standbys(self) -> tuple[Node, ...]:
        """Control planes beyond the three voters: dqlite stand-bys that take over a lost voter."""
        return self.control_planes[MAX_VOTERS:]

    @property
    def bootstrap_node(self) -> Node:
        """The control plane that forms the cluster and enables the addons (the first one)."""
        return self.control_planes[0]

    @cached_property
    def workers(self) -> tuple[Node, ...]:
        """Worker nodes in file order."""
        return tuple(n for n in self.nodes if not n.is_control_plane)

    @cached_property
    def storage_nodes(self) -> tuple[Node, ...]:
        """Nodes that give disks to Longhorn."""
        return tuple(n for n in self.nodes if n.is_storage)

    @cached_property
    def schedulable_nodes(self) -> tuple[Node, ...]:
        """Nodes app pods may run on."""
        return tuple(n for n in self.nodes if n.schedulable)

    @property
    def fqdn_suffix(self) -> str:
        """Domain suffix of node FQDNs."""
        return self.domain

    @property
    def lan_prefix(self) -> int:
        """Prefix length of the LAN."""
        return ipaddress.ip_network(self.lan, strict=False).prefixlen

    @property
    def alerting(self) -> bool:
        """True when Alertmanager and hkgen's alert rules are rendered (alerts on, monitoring enabled)."""
        return self.alerts is not None and self.alerts.enabled and self.app("monitoring") is not None

    @property
    def alerts_to_home_assistant(self) -> bool:
        """True when Alertmanager posts to Home Assistant's webhook (its receiver on, the app enabled)."""
        return self.alerting and self.alerts is not None and self.alerts.home_assistant and \
            self.app("home-assistant") is not None

    def app(self, name: str) -> AppConfig | None:
        """The catalogue app called `name` if it is configured and enabled."""
        for app in self.apps:
            if app.name == name and app.enabled:
                return app
        return None

    def node(self, hostname: str) -> Node:
        """The node called `hostname` (validated to exist)."""
        for node in self.nodes:
            if node.hostname == hostname:
                return node
        raise KeyError(hostname)

    def satellite(self, hostname: str) -> Satellite:
        """The satellite called `hostname` (validated to exist)."""
        for sat in self.satellites:
            if sat.hostname == hostname:
                return sat
        raise KeyError(hostname)

    def version(self, group: str, name: str) -> str:
        """Pinned version of a chart or image, after cluster overrides."""
        return self.versions[group][name]


def _wifi(data: dict[str, Any] | None) -> Wifi | None:
    return Wifi(data["ssid"], data["country"]) if data else None


def build_model(data: dict[str, Any], source: str, versions: dict[str, dict[str, str]],
                app_names: list[str]) -> Cluster:
    """Build the model from data that passed schema validation and has defaults applied."""
    cl, net, os_, mk, st, go, sec = (data[k] for k in
                                     ("cluster", "network", "os", "microk8s", "storage", "gitops", "secrets"))
    nodes = tuple(
        Node(
            hostname=n["hostname"], role=n["role"], schedulable=n["schedulable"], board=n["board"],
            memory_gib=n["memoryGiB"], ip=n["ip"], mac=n["mac"], link=n["link"], wifi=_wifi(n.get("wifi")),
            boot_device=n["bootDevice"],
            disks=tuple(Disk(d["id"], d["sizeGB"]) for d in n["disks"]),
            usb_devices=tuple(UsbDevice(u["name"], u["id"], u["kind"]) for u in n["usbDevices"]),
            labels=tuple(sorted(n["labels"].items())), index=i,
        )
        for i, n in enumerate(data["nodes"])
    )
    satellites = tuple(
        Satellite(
            hostname=s["hostname"], board=s["board"], memory_gib=s.get("memoryGiB"), ip=s["ip"], mac=s["mac"],
            link=s["link"], wifi=_wifi(s.get("wifi")),
            serial_devices=tuple(SerialDevice(d["name"], d["id"], d["port"], d["baudRate"])
                                 for d in s["serialDevices"]),
            index=i,
        )
        for i, s in enumerate(data["satellites"])
    )
    zigbee = tuple(
        ZigbeeNetwork(
            name=z["name"], base_topic=z.get("baseTopic", f"zigbee2mqtt/{z['name']}"), channel=z["channel"],
            adapter=z["adapter"], node=z["coordinator"].get("node"), satellite=z["coordinator"].get("satellite"),
            device=z["coordinator"].get("device"), host=z["coordinator"].get("host"),
            port=z["coordinator"].get("port"), index=i,
        )
        for i, z in enumerate(data["zigbee"]["networks"])
    )
    bk = st.get("backup")
    backup = None
    if bk:
        backup = Backup(
            endpoint=bk["s3"]["endpoint"], bucket=bk["s3"]["bucket"], region=bk["s3"]["region"],
            prefix=bk["s3"].get("prefix", cl["name"]),
            snapshot_cron=bk["snapshots"]["cron"], snapshot_retain=bk["snapshots"]["retain"],
            backup_cron=bk["backups"]["cron"], backup_retain=bk["backups"]["retain"],
            restore_on_rebuild=bk["restoreOnRebuild"], encrypt_volumes=bk.get("encryptVolumes", False),
        )
    merged_versions = {group: dict(pins) for group, pins in versions.items()}
    for group, pins in data["versions"].items():
        merged_versions[group].update(pins)
    apps = tuple(
        AppConfig(name, data["apps"][name]["enabled"], dict(data["apps"][name]))
        for name in sorted(app_names) if name in data["apps"]
    )
    custom = tuple(
        CustomApp(
            name=c["name"], image=c["image"], port=c["port"], cpu_millis=c["cpuMillis"], memory_mib=c["memoryMiB"],
            storage_gib=c["storage"]["sizeGiB"] if "storage" in c else None,
            mount_path=c["storage"]["mountPath"] if "storage" in c else None,
            backup_class=c["storage"]["backupClass"] if "storage" in c else "none",
            env=tuple(sorted(c["env"].items())), secret_env=tuple(sorted(c["secretEnv"].items())),
            host_network=c["hostNetwork"], expose=c["expose"], load_balancer_ip=c.get("loadBalancerIP"),
            login=c.get("login", "admin"),
        )
        for c in data["customApps"]
    )
    first, last = net["loadBalancerPool"].split("-")
    return Cluster(
        source=source, name=cl["name"], domain=cl["domain"], topology=cl["topology"], timezone=cl["timezone"],
        locale=cl["locale"], description=cl.get("description", ""),
        lan=net["lan"], gateway=net["gateway"], dns=tuple(net["dns"]), ntp=tuple(net["ntp"]),
        pod_cidr=net["podCidr"], service_cidr=net["serviceCidr"], lb_pool=(first, last), ingress_ip=net["ingressIP"],
        api_server_names=tuple(net["apiServerNames"]),
        os_release=os_["release"],
        admins=tuple(Admin(a["name"], tuple(a["sshKeys"])) for a in os_["admins"]),
        upgrades_enabled=os_["upgrades"]["enabled"], reboot_time=os_["upgrades"]["rebootTime"],
        reboot_stagger_minutes=os_["upgrades"]["staggerMinutes"],
        cpu_governor=os_["energy"]["cpuGovernor"], disable_hdmi=os_["energy"]["disableHdmi"],
        disable_bluetooth=os_["energy"]["disableBluetooth"],
        disable_wifi_when_wired=os_["energy"]["disableWifiWhenWired"],
        microk8s_channel=mk["channel"],
        addons=tuple((a["name"], tuple(a["args"])) for a in mk["addons"]),
        node_monitor_grace_seconds=mk["failover"]["nodeMonitorGracePeriodSeconds"],
        pod_eviction_seconds=mk["failover"]["podEvictionSeconds"],
        watchdog_enabled=mk["watchdog"]["enabled"], watchdog_max_restarts=mk["watchdog"]["maxRestartsPerHour"],
        nodes=nodes, satellites=satellites, zigbee=zigbee,
        replicas=st["longhorn"]["replicas"], reserved_percent=st["longhorn"]["reservedPercent"],
        over_provisioning_percent=st["longhorn"]["overProvisioningPercent"], data_path=st["longhorn"]["dataPath"],
        backup=backup,
        engine=go["engine"], repo_url=go["repository"]["url"], repo_branch=go["repository"]["branch"],
        gitops_interval=go["interval"],
        secrets_file=sec["file"], age_recipients=tuple(sec["ageRecipients"]),
        versions=merged_versions, apps=apps, custom_apps=custom,
        alerts=build_alerts(data["alerts"]) if "alerts" in data else None,
        reboot_window_hours=os_["upgrades"]["rebootWindowHours"],
        tls=_tls(data.get("tls") or {}),
        dns_server_ip=net.get("dnsServerIP"),
    )


def _tls(t: dict[str, Any]) -> Tls:
    acme = t.get("acme") or {}
    return Tls(issuer=t.get("issuer", "internal"), acme_email=acme.get("email", ""),
               acme_server=acme.get("server", "production"), solver=acme.get("solver", ""),
               rfc2136=tuple(sorted((k, str(v)) for k, v in (acme.get("rfc2136") or {}).items())))
