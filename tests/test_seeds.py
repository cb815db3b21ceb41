"""Pi seeds (issue 4, issue 11 items 2, 5, 6, 7): what every node and satellite boots from.

Seeds are rendered from the reference cluster and from variants built from it in tmp_path, then
checked the way `hkgen render` checks them (YAML 1.1 vs 1.2 reparse, cloud-config schema,
launch-config schema, Netplan structure), and read back with PyYAML as cloud-init reads them.
The scripts the seeds install run for real here where they can: the disk preparation against
image files with the real mkfs/blkid, the join logic and the watchdog against stand-ins for the
`microk8s`/`snap` commands (which cannot run on this machine).
"""

from __future__ import annotations

import ast
import copy
import functools
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

from conftest import FAKE_OPENSSL, need_programs, tools
from hkgen.areas import seeds
from hkgen.areas.parts import Blueprint
from hkgen.config.load import load_file
from hkgen.config.model import Cluster
from hkgen.core.errors import RenderError
from hkgen.render.jinja import render_file
from hkgen.validation.validate import validate_document
from hkgen.verify import cloudinit as cloudinit_check
from hkgen.verify import tree as verify

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_FILES = REPO / "templates" / "cloud-init" / "files"
CONTROL_PLANES = ("cp1", "cp2", "cp3")
WORKERS = ("w1", "w2", "w3", "w4", "w5", "w6")
SATELLITES = ("zsat-garden", "zsat-attic")
# Every key of `Configuration` (and its nested structs) in canonical/microk8s-cluster-agent
# pkg/k8sinit/schema.go at commit 33e4ad065b74 (2026-04-09), by yaml tag.
UPSTREAM_LAUNCH_KEYS = {
    "version", "addonRepositories", "addons", "extraKubeletArgs", "extraKubeAPIServerArgs", "extraKubeProxyArgs",
    "extraKubeControllerManagerArgs", "extraKubeSchedulerArgs", "extraKubeliteEnv", "extraSANs",
    "containerdRegistryConfigs", "extraContainerdArgs", "extraContainerdEnv", "extraDqliteArgs", "extraDqliteEnv",
    "extraMicroK8sClusterAgentArgs", "extraMicroK8sClusterAgentEnv", "extraMicroK8sAPIServerProxyArgs",
    "extraMicroK8sAPIServerProxyEnv", "extraEtcdArgs", "extraEtcdEnv", "extraFlanneldArgs", "extraFlanneldEnv",
    "extraConfigFiles", "persistentClusterToken", "join", "extraCNIEnv", "extraFIPSEnv",
}


# --- helpers (also used by test_bootmedia and test_netplan) ------------------------------------


def variant(tmp_path: Path, edit: Callable[[Any], None] | None = None) -> Cluster:
    """The reference cluster, edited (round-trip YAML), validated from tmp_path."""
    rt = YAML()
    data = rt.load((REPO / "clusters" / "home" / "cluster.yaml").read_text("utf-8"))
    if edit is not None:
        edit(data)
    folder = tmp_path / "clusters" / "home"
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    rt.dump(data, buf)
    (folder / "cluster.yaml").write_text(buf.getvalue(), "utf-8")
    result = validate_document(load_file(folder / "cluster.yaml", "clusters/home/cluster.yaml"))
    assert result.cluster is not None, [p.format() for p in result.errors]
    return result.cluster


def render_seeds(cluster: Cluster) -> tuple[Blueprint, dict[PurePosixPath, bytes]]:
    """Blueprint and render only the seed files, as `hkgen render` does."""
    files = seeds.files(cluster)
    plan = Blueprint(cluster, tuple(files), ())
    base = {"cluster": cluster, "components": ()}
    return plan, {f.path: render_file(f, base, f"clusters/{cluster.name}/cluster.yaml") for f in files}


def seed_problems(plan: Blueprint, tree: dict[PurePosixPath, bytes]) -> list[str]:
    return [p.format() for p in verify.reparse(plan, tree) + cloudinit_check.check(plan, tree, [])]


def text(tree: dict[PurePosixPath, bytes], *parts: str) -> str:
    return tree[PurePosixPath(*parts)].decode("utf-8")


def user_data(tree: dict[PurePosixPath, bytes], host: str) -> dict[str, Any]:
    """A host's user-data as cloud-init reads it (PyYAML, YAML 1.1)."""
    folder = "nodes" if PurePosixPath("nodes", host, "user-data") in tree else "satellites"
    return copy.deepcopy(_read_yaml11(text(tree, folder, host, "user-data")))


@functools.lru_cache(maxsize=64)
def _read_yaml11(body: str) -> Any:
    return yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def written(ud: dict[str, Any], path: str) -> str:
    """Content of the file `path` that user-data writes."""
    for item in ud["write_files"]:
        if item["path"] == path:
            content: str = item["content"]
            return content
    raise KeyError(path)


def paths_written(ud: dict[str, Any]) -> list[str]:
    return [item["path"] for item in ud["write_files"]]


def single_node(data: Any) -> None:
    data["cluster"]["topology"] = "single-node"
    data["nodes"] = [data["nodes"][0]]
    data["storage"]["longhorn"]["replicas"] = 1
    data["zigbee"]["networks"] = [n for n in data["zigbee"]["networks"] if "satellite" in n["coordinator"]]
    for app in ("monitoring", "grafana"):
        data["apps"][app]["enabled"] = False


def five_nodes(data: Any) -> None:
    data["nodes"] = data["nodes"][:5]
    # With kured and the pre-pull DaemonSet counted on every node, two 4 GiB workers no longer
    # take cp1's apps when it dies (topology: ha would refuse it): one worker has 8 GiB.
    data["nodes"][3]["memoryGiB"] = 8


def four_control_planes(data: Any) -> None:
    extra = copy.deepcopy(data["nodes"][1])
    extra["hostname"], extra["ip"], extra["mac"] = "cp4", "192.168.10.14", "dc:a6:32:10:00:14"
    data["nodes"].insert(3, extra)


def release(name: str) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        data["os"]["release"] = name
    return edit


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cluster, Blueprint, dict[PurePosixPath, bytes]]:
    cluster = variant(tmp_path_factory.mktemp("ref"))
    plan, tree = render_seeds(cluster)
    return cluster, plan, tree


# --- the reference seeds ----------------------------------------------------------------------


def test_every_node_and_satellite_gets_a_complete_seed(reference) -> None:
    _cluster, _plan, tree = reference
    expected = {PurePosixPath(kind, host, name)
                for kind, hosts in (("nodes", CONTROL_PLANES + WORKERS), ("satellites", SATELLITES))
                for host in hosts for name in ("user-data", "meta-data", "network-config", "cmdline.txt")}
    assert set(tree) == expected


def test_reference_seeds_pass_every_check(reference) -> None:
    _cluster, plan, tree = reference
    assert seed_problems(plan, tree) == []
    for path, data in tree.items():
        if path.name == "user-data":
            assert data.startswith(b"#cloud-config\n"), path


def test_seed_files_are_planned_with_their_formats_and_modes(reference) -> None:
    _cluster, plan, _tree = reference
    by_name = {f.path.name: f for f in plan.files if f.path.parts[1] == "cp1"}
    assert (by_name["user-data"].format, by_name["user-data"].mode) == ("cloud-config", 0o600)
    assert (by_name["network-config"].format, by_name["network-config"].mode) == ("yaml", 0o600)
    assert by_name["meta-data"].format == "yaml"
    assert by_name["cmdline.txt"].format == "text"


def test_user_data_basics_as_cloud_init_reads_them(reference) -> None:
    cluster, _plan, tree = reference
    ud = user_data(tree, "w3")
    assert ud["hostname"] == "w3" and ud["fqdn"] == "w3.home.arpa"
    assert ud["timezone"] == "Europe/Berlin" and ud["locale"] == "en_US.UTF-8"
    assert ud["ssh_pwauth"] is False and ud["disable_root"] is True
    (user,) = ud["users"]
    assert user["name"] == "ops" and user["lock_passwd"] is True
    assert user["ssh_authorized_keys"] == list(cluster.admins[0].ssh_keys)
    assert "passwd" not in user and "plain_text_passwd" not in user
    sshd = written(ud, "/etc/ssh/sshd_config.d/10-hkgen.conf")
    assert "PasswordAuthentication no" in sshd and "PermitRootLogin no" in sshd and "AllowUsers ops" in sshd
    assert ud["ntp"] == {"enabled": True, "ntp_client": "systemd-timesyncd", "servers": ["192.168.10.1"]}
    hosts = written(ud, "/etc/hosts")
    for node in cluster.nodes:
        assert f"{node.ip} {node.hostname}.home.arpa {node.hostname}\n" in hosts


def test_meta_data_has_a_stable_instance_id(reference) -> None:
    _cluster, _plan, tree = reference
    meta = yaml.safe_load(text(tree, "nodes", "cp2", "meta-data"))
    assert meta == {"instance-id": "hkgen-home-cp2", "local-hostname": "cp2"}


def test_longhorn_packages_everywhere_and_modules_extra_only_on_22_04(reference, tmp_path: Path) -> None:
    _cluster, _plan, tree = reference
    for host in CONTROL_PLANES + WORKERS:
        packages = user_data(tree, host)["packages"]
        assert {"open-iscsi", "nfs-common", "cryptsetup", "dmsetup", "unattended-upgrades"} <= set(packages)
        assert "linux-modules-extra-raspi" not in packages  # 24.04: the package does not exist
    for name, has_extra in (("22.04", True), ("26.04", False)):
        _plan2, tree2 = render_seeds(variant(tmp_path / name, release(name)))
        assert ("linux-modules-extra-raspi" in user_data(tree2, "w1")["packages"]) is has_extra


def test_iscsid_enabled_and_multipathd_masked(reference) -> None:
    _cluster, _plan, tree = reference
    ud = user_data(tree, "w2")
    setup = written(ud, "/usr/local/sbin/hkgen-node-setup")
    assert "systemctl enable --now iscsid.service" in setup
    assert "multipathd.service multipathd.socket" in setup and 'systemctl mask --now "$unit"' in setup
    assert written(ud, "/etc/modules-load.d/hkgen-longhorn.conf").split()[-2:] == ["iscsi_tcp", "dm_crypt"]
    assert ud["runcmd"][0] == ["/usr/local/sbin/hkgen-node-setup"]


# --- MicroK8s launch configurations -----------------------------------------------------------------


def launch(tree: dict[PurePosixPath, bytes], host: str, path: str = seeds.LAUNCH_CONFIG) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(written(user_data(tree, host), path))
    return loaded


def test_launch_config_is_written_before_the_snap_install_and_channel_is_pinned(reference) -> None:
    _cluster, _plan, tree = reference
    for host in CONTROL_PLANES + WORKERS:
        ud = user_data(tree, host)
        entry = next(f for f in ud["write_files"] if f["path"] == "/etc/microk8s.yaml")
        assert not entry.get("defer") and entry["permissions"] == "0600"
        # write_files runs in cloud-init's init stage, the snap module in the config stage.
        assert ud["snap"]["commands"] == [["install", "microk8s", "--classic", "--channel=1.34/stable"],
                                          ["refresh", "--hold", "microk8s"]]


def test_base_launch_config_sets_what_the_default_would_have(reference) -> None:
    cluster, _plan, tree = reference
    for host in CONTROL_PLANES + WORKERS:
        cfg = launch(tree, host)
        node = cluster.node(host)
        assert cfg["version"] == "0.2.0"
        assert cfg["extraKubeletArgs"]["--cluster-dns"] == "10.152.183.10"
        assert cfg["extraKubeletArgs"]["--cluster-domain"] == "cluster.local"
        assert cfg["extraKubeletArgs"]["--node-ip"] == node.ip
        assert cfg["extraCNIEnv"] == {"IPv4_SUPPORT": "true", "IPv4_CLUSTER_CIDR": "10.1.0.0/16",
                                      "IPv4_SERVICE_CIDR": "10.152.183.0/24"}
        # Addons, token and join are decided on the node, never baked into the install config.
        assert not {"addons", "join", "persistentClusterToken"} & set(cfg)


def test_kube_proxy_metrics_are_reachable_by_prometheus_on_every_node(reference, tmp_path) -> None:
    # kube-proxy binds its metrics to 127.0.0.1 unless told otherwise; Prometheus scrapes node
    # addresses, so without this the KubeProxyDown alert would never stop firing.
    cluster, _plan, tree = reference
    for host in CONTROL_PLANES + WORKERS:
        assert launch(tree, host)["extraKubeProxyArgs"] == {"--metrics-bind-address": f"{cluster.node(host).ip}:10249"}
    quiet = variant(tmp_path, lambda d: d["apps"]["monitoring"].update(enabled=False))
    _plan, quiet_tree = render_seeds(quiet)
    assert "extraKubeProxyArgs" not in launch(quiet_tree, "w1")


def test_control_planes_get_fast_failover_sans_and_taints(reference) -> None:
    cluster, _plan, tree = reference
    for host in CONTROL_PLANES:
        cfg = launch(tree, host)
        seconds = str(cluster.pod_eviction_seconds)
        assert cfg["extraKubeAPIServerArgs"] == {"--default-not-ready-toleration-seconds": seconds,
                                                 "--default-unreachable-toleration-seconds": seconds}
        assert cfg["extraKubeControllerManagerArgs"] == {
            "--node-monitor-grace-period": f"{cluster.node_monitor_grace_seconds}s", "--node-monitor-period": "5s"}
        assert cfg["extraSANs"] == ["k8s.home.arpa", cluster.node(host).ip]
    assert "--register-with-taints" not in launch(tree, "cp1")["extraKubeletArgs"]  # schedulable
    for host in ("cp2", "cp3"):
        assert launch(tree, host)["extraKubeletArgs"]["--register-with-taints"] == \
            "node-role.kubernetes.io/control-plane:NoSchedule"
    for host in WORKERS:
        assert not {"extraKubeAPIServerArgs", "extraKubeControllerManagerArgs", "extraSANs"} & set(launch(tree, host))


def test_only_the_bootstrap_node_carries_the_addons(reference) -> None:
    _cluster, _plan, tree = reference
    addons = launch(tree, "cp1", "/etc/hkgen/microk8s/addons.yaml")
    assert set(addons) == {"version", "addons"}  # the token is a part of its own (see the join script)
    assert addons["addons"] == [
        {"name": "dns", "args": ["192.168.10.1", "10.152.183.10", "cluster.local"]},
        {"name": "rbac"},
        {"name": "metallb", "args": ["192.168.10.200-192.168.10.220"]},
        {"name": "metrics-server"},
        {"name": "ingress"},
    ]
    for host in ("cp2", "cp3", *WORKERS):
        assert "/etc/hkgen/microk8s/addons.yaml" not in paths_written(user_data(tree, host))


def test_control_planes_get_the_token_part_workers_do_not(reference) -> None:
    _cluster, _plan, tree = reference
    for host in CONTROL_PLANES:
        assert launch(tree, host, "/etc/hkgen/microk8s/token.yaml") == {
            "version": "0.2.0", "persistentClusterToken": "${JOIN_TOKEN}"}
    for host in WORKERS:
        assert "/etc/hkgen/microk8s/token.yaml" not in paths_written(user_data(tree, host))


def join_conf(tree: dict[PurePosixPath, bytes], host: str) -> dict[str, str]:
    out = {}
    for line in written(user_data(tree, host), "/etc/hkgen/microk8s/join.conf").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value.strip("'")
    return out


def test_join_roles_and_peers(reference) -> None:
    _cluster, _plan, tree = reference
    cp1, cp2 = join_conf(tree, "cp1"), join_conf(tree, "cp2")
    assert (cp1["role"], cp1["peers"]) == ("bootstrap", "192.168.10.12 192.168.10.13")
    assert (cp2["role"], cp2["peers"]) == ("control-plane", "192.168.10.11 192.168.10.13")
    assert join_conf(tree, "cp2")["addons_config"] == ""
    assert cp1["addons_config"] == "/etc/hkgen/microk8s/addons.yaml"
    # Workers try every control plane, starting at different ones.
    starts = {join_conf(tree, w)["peers"].split()[0] for w in WORKERS}
    assert starts == {"192.168.10.11", "192.168.10.12", "192.168.10.13"}
    for w in WORKERS:
        assert join_conf(tree, w)["role"] == "worker"
        assert sorted(join_conf(tree, w)["peers"].split()) == ["192.168.10.11", "192.168.10.12", "192.168.10.13"]
        assert join_conf(tree, w)["token_config"] == ""


def test_committed_seeds_hold_placeholders_only(reference) -> None:
    _cluster, _plan, tree = reference
    for host in CONTROL_PLANES + WORKERS:
        ud = text(tree, "nodes", host, "user-data")
        assert cloudinit_check.placeholders(ud) == {"JOIN_TOKEN"}
        assert written(user_data(tree, host), "/etc/hkgen/microk8s/join-token").strip() == "${JOIN_TOKEN}"
    assert cloudinit_check.placeholders(text(tree, "nodes", "w6", "network-config")) == {"WIFI_PASSPHRASE_HOME_IOT"}
    assert cloudinit_check.placeholders(text(tree, "nodes", "w5", "network-config")) == set()
    for sat in SATELLITES:
        assert "JOIN_TOKEN" not in text(tree, "satellites", sat, "user-data")


def test_launch_schema_covers_exactly_the_upstream_keys() -> None:
    schema = json.loads((REPO / "schemas" / "microk8s-launch-config.schema.json").read_text())
    assert set(schema["properties"]) == UPSTREAM_LAUNCH_KEYS
    assert schema["additionalProperties"] is False
    assert schema["properties"]["join"]["additionalProperties"] is False
    assert set(schema["properties"]["join"]["properties"]) == {"url", "worker"}
    assert set(schema["properties"]["addons"]["items"]["properties"]) == {"name", "disable", "args"}
    assert set(schema["properties"]["addonRepositories"]["items"]["properties"]) == {"name", "url", "reference"}


def _launch_errors(config: str) -> list[str]:
    """Schema problems of a launch configuration, checked as part of a minimal user-data."""
    indented = "".join(f"      {line}\n" if line else "\n" for line in config.splitlines())
    ud = ("#cloud-config\nwrite_files:\n  - path: /etc/microk8s.yaml\n    content: |2\n" + indented)
    return [p.format() for p in cloudinit_check.check_seed_file("ud", "user-data", ud, node=False)]


def test_launch_schema_accepts_every_documented_form() -> None:
    full = """\
version: 0.2.0
persistentClusterToken: 0123456789abcdef0123456789abcdef
addonRepositories:
  - {name: core, url: https://github.com/canonical/microk8s-core-addons}
  - {name: extra, url: /snap/microk8s/current/addons/community, reference: 1.30}
addons:
  - name: dns
  - {name: registry, disable: true}
  - {name: metallb, args: [10.0.0.200-10.0.0.220]}
extraKubeletArgs: {--node-ip: 10.0.0.5, --eviction-hard: null}
extraKubeAPIServerArgs: {--event-ttl: 1h}
extraKubeProxyArgs: {--cluster-cidr: 10.1.0.0/16}
extraKubeControllerManagerArgs: {--node-monitor-grace-period: 20s}
extraKubeSchedulerArgs: {--leader-elect-lease-duration: 30s}
extraKubeliteEnv: {GOFIPS: '1'}
extraSANs: [k8s.example.org, 10.0.0.5]
containerdRegistryConfigs: {docker.io: 'server = "http://mirror:5000"'}
extraContainerdArgs: {-l: debug}
extraContainerdEnv: {http_proxy: http://proxy:3128}
extraDqliteArgs: {--disk-mode: 'true'}
extraDqliteEnv: {LIBRAFT_TRACE: '1'}
extraMicroK8sClusterAgentArgs: {--bind: 0.0.0.0:25000}
extraMicroK8sClusterAgentEnv: {A: b}
extraMicroK8sAPIServerProxyArgs: {--refresh-interval: 30s}
extraMicroK8sAPIServerProxyEnv: {A: b}
extraEtcdArgs: {--quota-backend-bytes: '8589934592'}
extraEtcdEnv: {A: b}
extraFlanneldArgs: {--ip-masq: 'true'}
extraFlanneldEnv: {A: b}
extraConfigFiles: {flannel-network-mgr-config: '{"Network": "10.1.0.0/16"}'}
join: {url: '10.0.0.10:25000/0123456789abcdef0123456789abcdef', worker: true}
extraCNIEnv: {IPv4_SUPPORT: true, IPv4_CLUSTER_CIDR: 10.2.0.0/16}
extraFIPSEnv: {GOFIPS: 1}
---
version: 0.1.0
"""
    assert _launch_errors(full) == []


@pytest.mark.parametrize(("config", "expected"), [
    ("version: 0.2.0\nextraKubeletArg: {--node-ip: 1.2.3.4}\n",
     "ud:6:7: $.write_files[0].content: MicroK8s launch configuration /etc/microk8s.yaml: $.extraKubeletArg: "
     "unknown key 'extraKubeletArg' (hint: did you mean 'extraKubeletArgs'?)"),
    ("version: 0.2.0\njoin: {url: x, worker: true, voter: true}\n",
     "ud:6:36: $.write_files[0].content: MicroK8s launch configuration /etc/microk8s.yaml: $.join.voter: "
     "unknown key 'voter'"),
    ("version: 0.3.0\n",
     "ud:5:16: $.write_files[0].content: MicroK8s launch configuration /etc/microk8s.yaml: $.version: "
     "'0.3.0' does not match"),
    ("extraSANs: [a]\n",
     "ud:5:7: $.write_files[0].content: MicroK8s launch configuration /etc/microk8s.yaml: "
     "'version' is a required property"),
    ("version: 0.2.0\n---\nversion: 0.2.0\naddons: [{name: dns, enable: true}]\n",
     "ud:8:28: $.write_files[0].content: MicroK8s launch configuration /etc/microk8s.yaml (part 2): "
     "$.addons[0].enable: unknown key 'enable'"),
    ("version: 0.2.0\nextraConfigFiles: {../etc/passwd: x}\n",
     "ud:6:26: $.write_files[0].content: MicroK8s launch configuration /etc/microk8s.yaml: "
     "$.extraConfigFiles['../etc/passwd']: key '../etc/passwd' is not allowed here"),
])
def test_launch_schema_refuses_what_microk8s_would_only_warn_about(config: str, expected: str) -> None:
    errors = _launch_errors(config)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_launch_config_problem_points_at_the_user_data_line(reference) -> None:
    _cluster, _plan, tree = reference
    original = text(tree, "nodes", "cp2", "user-data")
    broken = original.replace("      extraCNIEnv:\n", "      extraKubeletArgz: {}\n      extraCNIEnv:\n", 1)
    assert broken != original
    line = broken.splitlines().index("      extraKubeletArgz: {}") + 1
    problems = [p.format() for p in cloudinit_check.check_seed_file("clusters/home/nodes/cp2/user-data", "user-data",
                                                                    broken, node=True)]
    assert problems == [f"clusters/home/nodes/cp2/user-data:{line}:7: $.write_files[{_index(tree, 'cp2')}].content: "
                        "MicroK8s launch configuration /etc/microk8s.yaml: $.extraKubeletArgz: unknown key "
                        "'extraKubeletArgz' (hint: did you mean 'extraKubeletArgs'?)"]


def _index(tree: dict[PurePosixPath, bytes], host: str) -> int:
    return paths_written(user_data(tree, host)).index("/etc/microk8s.yaml")


# --- the checker refuses broken seeds, located -----------------------------------------------------


def _check(kind: str, body: str, *, node: bool = True) -> list[str]:
    return [p.format() for p in cloudinit_check.check_seed_file("f", kind, body, node=node, secret_keys=["JOIN_TOKEN"])]


@pytest.mark.parametrize("forked", [False, True], ids=["inline", "forked"])
def test_render_verification_fails_on_a_broken_seed_with_its_location(reference, monkeypatch, forked) -> None:
    from hkgen.core import proc
    from hkgen.core.errors import VerifyError

    children = []

    def spy(fn, *args):
        child = fork_call(fn, *args)
        children.append(child)
        return child

    fork_call = proc.fork_call
    monkeypatch.setattr(proc, "fork_call", spy)
    # A large tree has its seeds checked in a forked child: the same problems must come back.
    monkeypatch.setattr(verify, "PARALLEL_MIN_FILES", 0 if forked else 10**9)
    _cluster, plan, tree = reference
    broken = dict(tree)
    path = PurePosixPath("nodes/w5/user-data")
    body = tree[path].decode().replace("ssh_pwauth: false", "ssh_pwauth: false\nssh_pw_auth: false")
    broken[path] = body.encode()
    with pytest.raises(VerifyError) as err:
        verify.verify(plan, broken)
    line = body.splitlines().index("ssh_pw_auth: false") + 1
    assert err.value.lines() == [f"clusters/home/nodes/w5/user-data:{line}:1: $.ssh_pw_auth: unknown key "
                                 "'ssh_pw_auth' (hint: did you mean 'ssh_pwauth'?)"]
    assert (len(children) == 1 and children[0] is not None) if forked else not children


def test_checker_finds_cloud_config_mistakes(reference) -> None:
    _cluster, _plan, tree = reference
    good = text(tree, "satellites", "zsat-garden", "user-data")
    assert _check("user-data", good, node=False) == []
    assert _check("user-data", good.replace("#cloud-config\n", "#cloud-conf\n", 1), node=False) == [
        "f:1:1: $: user-data must start with the line '#cloud-config'"]
    typo = good.replace("package_update: true", "package_updates: true")
    line = typo.splitlines().index("package_updates: true") + 1
    assert _check("user-data", typo, node=False) == [
        f"f:{line}:1: $.package_updates: unknown key 'package_updates' (hint: did you mean 'package_update'?)"]
    old = good.replace("lock_passwd: true", "lock-passwd: true")
    # cloud-init deprecated `lock-passwd` (22.3); hkgen's own schema knows only the keys hkgen writes.
    assert any("$.users[0].lock-passwd: unknown key 'lock-passwd' (hint: did you mean 'lock_passwd'?)" in p
               for p in _check("user-data", old, node=False))
    unknown = good.replace("hostname: zsat-garden\n", "hostname: zsat-garden\nrandom_seed: {data: '${JOIN_TOKN}'}\n", 1)
    assert any("unknown secret placeholder ${JOIN_TOKN}" in p for p in _check("user-data", unknown, node=False))


def test_checker_holds_node_seeds_to_the_microk8s_rules(reference) -> None:
    _cluster, _plan, tree = reference
    good = text(tree, "nodes", "w4", "user-data")
    assert _check("user-data", good) == []
    no_hold = good.replace("    - [refresh, '--hold', microk8s]\n", "")
    assert any("must hold MicroK8s refreshes" in p for p in _check("user-data", no_hold))
    unpinned = good.replace("'--channel=1.34/stable'", "'--edge'")
    assert any("pinned channel" in p for p in _check("user-data", unpinned))
    deferred = good.replace("  - path: /etc/microk8s.yaml\n", "  - path: /etc/microk8s.yaml\n    defer: true\n")
    assert any("$.write_files[" in p and "must be written before the snap step" in p
               for p in _check("user-data", deferred))
    missing = good.replace("  - path: /etc/microk8s.yaml\n", "  - path: /etc/microk8s.yml\n")
    assert any("a node seed must write /etc/microk8s.yaml" in p for p in _check("user-data", missing))


def test_checker_finds_network_and_cmdline_mistakes(reference) -> None:
    _cluster, _plan, tree = reference
    net = text(tree, "nodes", "w1", "network-config")
    assert _check("network-config", net) == []
    off_lan = net.replace("via: 192.168.10.1", "via: 192.168.11.1")
    line = off_lan.splitlines().index("        via: 192.168.11.1") + 1
    assert _check("network-config", off_lan) == [f"f:{line}:14: $.ethernets.eth0.routes[0].via: "
                                                 "gateway 192.168.11.1 is not on 192.168.10.0/24"]
    gateway4 = net.replace("    dhcp4: false\n", "    dhcp4: false\n    gateway4: 192.168.10.1\n")
    assert any("$.ethernets.eth0.gateway4: unknown key 'gateway4'" in p for p in _check("network-config", gateway4))
    no_bool = net.replace("dhcp4: false", "dhcp4: 'no'")
    assert any("$.ethernets.eth0.dhcp4: 'no' is not of type 'boolean'" in p for p in _check("network-config", no_bool))
    wifi = text(tree, "nodes", "w6", "network-config").replace("${WIFI_PASSPHRASE_HOME_IOT}", "short")
    assert any("access-points" in p and "is too short" in p for p in _check("network-config", wifi))
    cmdline = text(tree, "nodes", "w1", "cmdline.txt")
    assert _check("cmdline.txt", cmdline) == []
    assert [p for p in _check("cmdline.txt", cmdline.replace(" cgroup_memory=1", "")) if "cgroup_memory=1" in p]
    assert _check("cmdline.txt", cmdline.rstrip("\n") + "\nsecond line\n") == [
        "f:2:1: $: the kernel command line must be a single line (the firmware reads only the first)"]
    assert _check("meta-data", "local-hostname: w1\n") == ["f:1:1: $: meta-data needs a non-empty 'instance-id'"]


# --- network, kernel command line, schedule -----------------------------------------------------


def test_network_config_static_address_ethernet_by_mac_wifi_by_name(reference) -> None:
    _cluster, _plan, tree = reference
    eth = yaml.safe_load(text(tree, "nodes", "w1", "network-config"))
    assert eth == {"version": 2, "renderer": "networkd", "ethernets": {"eth0": {
        "match": {"macaddress": "dc:a6:32:10:00:21"}, "set-name": "eth0", "dhcp4": False,
        "addresses": ["192.168.10.21/24"], "routes": [{"to": "default", "via": "192.168.10.1"}],
        "nameservers": {"addresses": ["192.168.10.1"], "search": ["home.arpa"]}}}}
    wifi = yaml.safe_load(text(tree, "nodes", "w6", "network-config"))
    assert set(wifi) == {"version", "renderer", "wifis"}
    assert wifi["wifis"]["wlan0"]["access-points"] == {"home-iot": {"password": "${WIFI_PASSPHRASE_HOME_IOT}"}}
    assert wifi["wifis"]["wlan0"]["addresses"] == ["192.168.10.26/24"]


def test_kernel_command_line_per_release_board_and_link(reference, tmp_path: Path) -> None:
    _cluster, _plan, tree = reference
    cp1 = text(tree, "nodes", "cp1", "cmdline.txt")
    assert cp1.count("\n") == 1 and cp1.startswith("console=serial0,115200 multipath=off ")
    tokens = cp1.split()
    for param in ("root=LABEL=writable", "cgroup_enable=memory", "cgroup_memory=1", "fsck.repair=yes", "panic=10",
                  "video=HDMI-A-1:d", "video=HDMI-A-2:d"):
        assert param in tokens
    assert "cfg80211.ieee80211_regdom=DE" in text(tree, "nodes", "w6", "cmdline.txt").split()
    sat = text(tree, "satellites", "zsat-garden", "cmdline.txt").split()
    assert "cgroup_enable=memory" not in sat and "video=HDMI-A-1:d" in sat and "video=HDMI-A-2:d" not in sat
    _plan2, tree22 = render_seeds(variant(tmp_path / "22", release("22.04")))
    assert not text(tree22, "nodes", "cp1", "cmdline.txt").startswith("console=serial0,115200 multipath=off")
    _plan3, tree26 = render_seeds(variant(tmp_path / "26", release("26.04")))
    assert PurePosixPath("nodes/cp1/current/cmdline.txt") in tree26  # 26.04's A/B boot layout
    assert PurePosixPath("nodes/cp1/cmdline.txt") not in tree26
    assert text(tree26, "nodes", "cp1", "current", "cmdline.txt").split().count("panic=10") == 1


def test_nodes_reboot_through_kured_and_satellites_inside_its_window(reference, tmp_path: Path) -> None:
    cluster, _plan, tree = reference
    # only satellites reboot on a clock: rebootTime, then staggerMinutes apart
    assert seeds.reboot_schedule(cluster) == {"zsat-garden": "03:30", "zsat-attic": "04:00"}
    # Nodes never reboot on a clock: kured reboots them one at a time (issue 20)
    apt = written(user_data(tree, "cp3"), "/etc/apt/apt.conf.d/52hkgen-upgrades")
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in apt
    assert "Automatic-Reboot-Time" not in apt
    for host, at in (("zsat-garden", "03:30"), ("zsat-attic", "04:00")):
        apt = written(user_data(tree, host), "/etc/apt/apt.conf.d/52hkgen-upgrades")
        assert f'Unattended-Upgrade::Automatic-Reboot-Time "{at}";' in apt
        assert 'Unattended-Upgrade::Automatic-Reboot "true";' in apt
    assert seeds.schedule_problems(cluster) == []  # 9 nodes x 18 min = 162 min inside 3 hours

    import copy

    from hkgen.config.catalogue import load_catalogue
    from hkgen.config.load import load_file, load_text
    from hkgen.config.model import build_model
    from hkgen.config.schema import apply_defaults, default_versions
    from hkgen.core.yamlio import dump
    from hkgen.validation.validate import validate_document

    data = copy.deepcopy(load_file(REPO / "clusters" / "home" / "cluster.yaml").data)
    # Six control planes and 4-hour staggers were refused when control planes had windows of
    # their own; kured reboots one node at a time whatever their roles, so this is valid now.
    data["os"]["upgrades"]["staggerMinutes"] = 170  # zsat-attic at 06:20, inside 03:30-06:30
    for node in data["nodes"][3:6]:
        node["role"] = "control-plane"
    assert validate_document(load_text(dump(data), "cluster.yaml")).errors == ()
    # zsat-attic at 06:30 (the window's end) is refused, located at staggerMinutes
    data["os"]["upgrades"]["staggerMinutes"] = 180
    result = validate_document(load_text(dump(data), "cluster.yaml"))
    assert [p.path for p in result.errors] == ["$.os.upgrades.staggerMinutes"]
    assert result.errors[0].message == ("satellite zsat-attic would reboot at 06:30, outside the reboot window "
                                        "03:30-06:30 (rebootWindowHours 3) in which kured reboots the nodes")
    assert result.errors[0].hint == "lower staggerMinutes to 179 or less, or set rebootWindowHours to 4 or more"
    outside = build_model(apply_defaults(data), "cluster.yaml", default_versions(), list(load_catalogue()))
    with pytest.raises(RenderError, match="outside the reboot window"):
        seeds.files(outside)
    # a 2-hour window for 9 nodes (18 min each): a warning, and the seeds still render
    data["os"]["upgrades"]["staggerMinutes"] = 30
    data["os"]["upgrades"]["rebootWindowHours"] = 2
    result = validate_document(load_text(dump(data), "cluster.yaml"))
    assert result.errors == ()
    (warning,) = [w for w in result.warnings if w.path.startswith("$.os")]  # the reference's own warnings aside
    assert warning.path == "$.os.upgrades.rebootWindowHours"
    assert "reaches 6 of 9 nodes a night, so an update that needs a reboot takes 2 nights" in warning.message
    assert warning.hint == "set rebootWindowHours to 3 for one night"
    assert seeds.files(build_model(apply_defaults(data), "cluster.yaml", default_versions(), list(load_catalogue())))

    def disabled(data: Any) -> None:
        data["os"]["upgrades"]["enabled"] = False
        data["os"]["upgrades"]["staggerMinutes"] = 240
    off = variant(tmp_path / "off", disabled)
    _plan2, tree2 = render_seeds(off)
    apt = written(user_data(tree2, "cp1"), "/etc/apt/apt.conf.d/52hkgen-upgrades")
    assert 'APT::Periodic::Unattended-Upgrade "0";' in apt


def test_microk8s_older_than_the_launch_config_format_is_refused() -> None:
    """1.27 reads launch configs only up to 0.1.0: the schema refuses it, and seeds would too."""
    import copy

    from hkgen.config.catalogue import load_catalogue
    from hkgen.config.load import load_file, load_text
    from hkgen.config.model import build_model
    from hkgen.config.schema import apply_defaults, default_versions
    from hkgen.core.yamlio import dump
    from hkgen.validation.validate import validate_document

    data = copy.deepcopy(load_file(REPO / "clusters" / "home" / "cluster.yaml").data)
    data["microk8s"]["channel"] = "1.27/stable"
    result = validate_document(load_text(dump(data), "cluster.yaml"))
    assert [p.path for p in result.errors] == ["$.microk8s.channel"]
    cluster = build_model(apply_defaults(data), "cluster.yaml", default_versions(), list(load_catalogue()))
    with pytest.raises(RenderError, match=r"MicroK8s 1.27 cannot read the launch configuration format 0.2.0"):
        seeds.files(cluster)


# --- disks, SD-card wear, energy, power loss ---------------------------------------------------------


def test_longhorn_disk_mount_by_id_with_nofail_and_guard(reference) -> None:
    _cluster, _plan, tree = reference
    ud = user_data(tree, "w2")
    (fstab,) = [f for f in ud["write_files"] if f["path"] == "/etc/fstab"]
    assert fstab["append"] is True
    line = [ln for ln in fstab["content"].splitlines() if not ln.startswith("#")]
    assert line == ["/dev/disk/by-id/usb-SanDisk_Extreme_55AE_323233304A303032-0:0 /var/lib/longhorn auto "
                    "defaults,nofail,noatime,x-systemd.device-timeout=30s,"
                    "x-systemd.before=snap.microk8s.daemon-kubelite.service 0 2"]
    assert ud["bootcmd"] == [["sh", "-c", 'mkdir -p "$1" && { mountpoint -q "$1" || chattr +i "$1"; }',
                              "hkgen-guard", "/var/lib/longhorn"]]
    setup = written(ud, "/usr/local/sbin/hkgen-node-setup")
    assert "prepare_disk usb-SanDisk_Extreme_55AE_323233304A303032-0:0 /var/lib/longhorn longhorn\n" in setup
    for host in ("cp2", "cp3"):  # no Longhorn disk: no fstab entry, no guard, no formatting tool
        ud = user_data(tree, host)
        assert "bootcmd" not in ud
        assert not {"/etc/fstab", "/usr/local/sbin/hkgen-prepare-disk"} & set(paths_written(ud))


def test_several_disks_mount_side_by_side_and_feed_longhorn_config(tmp_path: Path) -> None:
    def two_disks(data: Any) -> None:
        data["nodes"][4]["disks"].append({"id": "usb-Extra_Disk_0002-0:0", "sizeGB": 1000})
    cluster = variant(tmp_path, two_disks)
    _plan, tree = render_seeds(cluster)
    fstab = written(user_data(tree, "w2"), "/etc/fstab")
    assert "/dev/disk/by-id/usb-Extra_Disk_0002-0:0 /var/lib/longhorn-2 auto " in fstab
    assert "prepare_disk usb-Extra_Disk_0002-0:0 /var/lib/longhorn-2 longhorn-2" in written(
        user_data(tree, "w2"), "/usr/local/sbin/hkgen-node-setup")
    meta = seeds.node_metadata(cluster)["w2"]
    assert meta.labels[seeds.LONGHORN_DISK_LABEL] == "config"
    assert json.loads(meta.annotations[seeds.LONGHORN_DISKS_ANNOTATION]) == [
        {"path": "/var/lib/longhorn", "allowScheduling": True, "storageReserved": 25_600_000_000},
        {"path": "/var/lib/longhorn-2", "allowScheduling": True, "storageReserved": 100_000_000_000},
    ]


def test_sd_card_nodes_keep_logs_in_ram_usb_nodes_keep_them_capped(reference) -> None:
    _cluster, _plan, tree = reference
    usb, sd = user_data(tree, "cp1"), user_data(tree, "w3")  # cp1 boots from USB, w3 from its SD card
    assert "Storage=persistent" in written(usb, "/etc/systemd/journald.conf.d/60-hkgen.conf")
    assert "SystemMaxUse=256M" in written(usb, "/etc/systemd/journald.conf.d/60-hkgen.conf")
    journald = written(sd, "/etc/systemd/journald.conf.d/60-hkgen.conf")
    assert "Storage=volatile" in journald and "RuntimeMaxUse=64M" in journald
    assert "rsyslog.service syslog.socket" in written(sd, "/usr/local/sbin/hkgen-node-setup")
    assert "rsyslog" not in written(usb, "/usr/local/sbin/hkgen-node-setup")
    for ud in (usb, sd):
        setup = written(ud, "/usr/local/sbin/hkgen-node-setup")
        assert "mount -o remount,noatime /" in setup
        assert "systemctl daemon-reexec" in setup  # arms the hardware watchdog
        assert "RuntimeWatchdogSec=15s" in written(ud, "/etc/systemd/system.conf.d/60-hkgen-watchdog.conf")
        assert "kernel.panic = 10" in written(ud, "/etc/sysctl.d/60-hkgen.conf")


def test_energy_settings(reference, tmp_path: Path) -> None:
    _cluster, _plan, tree = reference
    wired, wifi = user_data(tree, "w1"), user_data(tree, "w6")
    assert "schedutil" in written(wired, "/etc/tmpfiles.d/hkgen-cpufreq.conf")
    assert written(wired, "/etc/modprobe.d/hkgen-radios.conf").split("\n", 1)[1].split() == [
        "blacklist", "hci_uart", "blacklist", "btbcm", "blacklist", "brcmfmac", "blacklist", "brcmutil"]
    assert "brcmfmac" not in written(wifi, "/etc/modprobe.d/hkgen-radios.conf")  # its only link
    assert "rfkill block wifi" not in written(wifi, "/usr/local/sbin/hkgen-node-setup")

    def radios_on(data: Any) -> None:
        data["os"]["energy"] = {"cpuGovernor": "ondemand", "disableHdmi": False, "disableBluetooth": False,
                                "disableWifiWhenWired": False}
    cluster = variant(tmp_path, radios_on)
    _plan, tree2 = render_seeds(cluster)
    ud = user_data(tree2, "w1")
    assert "/etc/modprobe.d/hkgen-radios.conf" not in paths_written(ud)
    assert "ondemand" in written(ud, "/etc/tmpfiles.d/hkgen-cpufreq.conf")
    assert "video=" not in text(tree2, "nodes", "w1", "cmdline.txt")


# --- watchdog and labels -----------------------------------------------------------------------------


def test_watchdog_only_on_control_planes_and_switchable(reference, tmp_path: Path) -> None:
    cluster, _plan, tree = reference
    for host in CONTROL_PLANES:
        ud = user_data(tree, host)
        cfg = json.loads(written(ud, "/etc/hkgen/microk8s-watchdog.json"))
        assert cfg["node"] == host and cfg["max_restarts_per_hour"] == cluster.watchdog_max_restarts
        assert "OnUnitActiveSec=1min" in written(ud, "/etc/systemd/system/hkgen-microk8s-watchdog.timer")
        assert ["systemctl", "enable", "--now", "hkgen-microk8s-watchdog.timer"] in ud["runcmd"]
    for host in WORKERS:
        assert "/usr/local/sbin/hkgen-microk8s-watchdog" not in paths_written(user_data(tree, host))

    def off(data: Any) -> None:
        data["microk8s"]["watchdog"]["enabled"] = False
    _plan2, tree2 = render_seeds(variant(tmp_path, off))
    assert "/usr/local/sbin/hkgen-microk8s-watchdog" not in paths_written(user_data(tree2, "cp1"))


def test_node_metadata(reference) -> None:
    cluster, _plan, _tree = reference
    meta = seeds.node_metadata(cluster)
    assert meta["cp1"].labels == {"node-role.kubernetes.io/control-plane": "",
                                  "node.longhorn.io/create-default-disk": "true"}
    assert meta["cp1"].taints == ()
    assert meta["cp2"].taints == (seeds.CONTROL_PLANE_TAINT,)
    assert meta["cp2"].labels == {"node-role.kubernetes.io/control-plane": ""}
    assert meta["w1"].labels["node-role.kubernetes.io/worker"] == ""
    assert all(meta[w].labels["node.longhorn.io/create-default-disk"] == "true" for w in WORKERS)


def test_platform_labeller_applies_what_node_metadata_says(reference) -> None:
    """The labels are applied cluster-side by the platform's node-labels component; hold the two together."""
    from hkgen.areas.blueprint import build_blueprint

    cluster, _plan, _tree = reference
    plan = build_blueprint(cluster)
    component = next(c for c in plan.components if c.name == "node-labels")
    base = {"cluster": cluster, "components": plan.components}
    rendered = "\n".join(render_file(f, base, "x").decode() for f in component.files)
    for host, meta in seeds.node_metadata(cluster).items():
        for key, value in meta.labels.items():
            assert f"{key}={value}" in rendered, (host, key)
        for taint in meta.taints:
            assert f"{taint['key']}:{taint['effect']}" in rendered


# --- satellites ---------------------------------------------------------------------------------------


def test_satellite_seed_serves_its_sticks_and_nothing_else(reference) -> None:
    cluster, _plan, tree = reference
    ud = user_data(tree, "zsat-garden")
    assert "snap" not in ud and "bootcmd" not in ud
    assert {"ser2net", "ufw"} <= set(ud["packages"]) and "open-iscsi" not in ud["packages"]
    assert not [p for p in paths_written(ud) if "microk8s" in p]
    ser2net = written(ud, "/etc/ser2net.yaml")
    assert ser2net.startswith("%YAML 1.1\n---\n")
    assert ("connection: &zigbee-garden\n  accepter: tcp,6638\n  enable: on\n  options:\n    kickolduser: true\n"
            "  connector: serialdev,/dev/serial/by-id/"
            "usb-Silicon_Labs_Sonoff_Zigbee_3.0_USB_Dongle_Plus_0001-if00-port0,115200n81,local\n") in ser2net
    setup = written(ud, "/usr/local/sbin/hkgen-node-setup")
    assert "ufw allow from 192.168.10.0/24 to any port 22 proto tcp" in setup
    for node in cluster.nodes:
        assert f"ufw allow from {node.ip} to any port 6638 proto tcp" in setup
    assert "ufw --force enable" in setup and "systemctl restart ser2net.service" in setup
    assert "PasswordAuthentication no" in written(ud, "/etc/ssh/sshd_config.d/10-hkgen.conf")
    assert "Storage=volatile" in written(ud, "/etc/systemd/journald.conf.d/60-hkgen.conf")  # SD card
    attic = yaml.safe_load(text(tree, "satellites", "zsat-attic", "network-config"))
    assert attic["wifis"]["wlan0"]["addresses"] == ["192.168.10.32/24"]


def test_satellite_with_two_sticks(tmp_path: Path) -> None:
    def two(data: Any) -> None:
        data["satellites"][0]["serialDevices"].append({"name": "zwave-garden", "id": "usb-0658_0200-if00", "port": 6639,
                                                        "baudRate": 115200})
    _plan, tree = render_seeds(variant(tmp_path, two))
    ser2net = written(user_data(tree, "zsat-garden"), "/etc/ser2net.yaml")
    assert ser2net.count("connection: &") == 2 and "accepter: tcp,6639" in ser2net
    assert "port 6639 proto tcp" in written(user_data(tree, "zsat-garden"), "/usr/local/sbin/hkgen-node-setup")


# --- variant clusters ---------------------------------------------------------------------------------


VARIANTS: dict[str, Callable[[Any], None] | None] = {
    "single-node": single_node,
    "five-nodes": five_nodes,
    "four-control-planes": four_control_planes,
    "ubuntu-22.04": release("22.04"),
    "ubuntu-24.04": release("24.04"),
    "ubuntu-26.04": release("26.04"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_clusters_render_and_validate(name: str, tmp_path: Path) -> None:
    cluster = variant(tmp_path, VARIANTS[name])
    plan, tree = render_seeds(cluster)
    assert seed_problems(plan, tree) == []
    assert {p.parts[1] for p in tree if p.parts[0] == "nodes"} == {n.hostname for n in cluster.nodes}
    assert all(user_data(tree, n.hostname)["snap"]["commands"][0][-1] == "--channel=1.34/stable" for n in cluster.nodes)


def test_single_node_cluster_forms_alone(tmp_path: Path) -> None:
    _plan, tree = render_seeds(variant(tmp_path, single_node))
    assert join_conf(tree, "cp1")["role"] == "bootstrap" and join_conf(tree, "cp1")["peers"] == ""
    assert "/etc/hkgen/microk8s/addons.yaml" in paths_written(user_data(tree, "cp1"))


def test_four_control_planes_make_a_stand_by(tmp_path: Path) -> None:
    _plan, tree = render_seeds(variant(tmp_path, four_control_planes))
    ud = text(tree, "nodes", "cp4", "user-data")
    assert "# cp4: control plane 4 of 4 (dqlite stand-by)" in ud
    assert "# cp1: control plane 1 of 4 (dqlite voter); bootstrap node" in text(tree, "nodes", "cp1", "user-data")
    assert join_conf(tree, "cp4")["role"] == "control-plane"
    assert join_conf(tree, "cp4")["peers"] == "192.168.10.11 192.168.10.12 192.168.10.13"
    assert "/etc/hkgen/microk8s/token.yaml" in paths_written(user_data(tree, "cp4"))
    assert "/usr/local/sbin/hkgen-microk8s-watchdog" in paths_written(user_data(tree, "cp4"))


def test_wifi_only_node_and_custom_service_range(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        node = data["nodes"][3]
        node["link"], node["wifi"] = "wifi", {"ssid": "no", "country": "NL"}  # "no" is false in YAML 1.1
        data["network"]["serviceCidr"] = "10.153.0.0/24"
    cluster = variant(tmp_path, edit)
    plan, tree = render_seeds(cluster)
    assert seed_problems(plan, tree) == []
    net = yaml.safe_load(text(tree, "nodes", "w1", "network-config"))
    assert list(net["wifis"]["wlan0"]["access-points"]) == ["no"]  # the SSID, read back as a string
    assert net["wifis"]["wlan0"]["access-points"]["no"] == {"password": "${WIFI_PASSPHRASE_NO}"}
    assert "cfg80211.ieee80211_regdom=NL" in text(tree, "nodes", "w1", "cmdline.txt").split()
    cfg = launch(tree, "cp1")
    assert cfg["extraKubeletArgs"]["--cluster-dns"] == "10.153.0.10"
    assert cfg["extraSANs"][-1] == "10.153.0.1"
    assert cfg["extraCNIEnv"]["IPv4_SERVICE_CIDR"] == "10.153.0.0/24"
    assert launch(tree, "cp1", "/etc/hkgen/microk8s/addons.yaml")["addons"][0]["args"][1] == "10.153.0.10"


def test_yaml_1_1_look_alikes_stay_strings(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        data["os"]["admins"][0]["name"] = "on"
        data["os"]["upgrades"]["rebootTime"] = "01:20"
    cluster = variant(tmp_path, edit)
    plan, tree = render_seeds(cluster)
    assert seed_problems(plan, tree) == []
    ud = user_data(tree, "cp1")
    assert ud["users"][0]["name"] == "on"
    sat = user_data(tree, "zsat-garden")
    assert 'Automatic-Reboot-Time "01:20"' in written(sat, "/etc/apt/apt.conf.d/52hkgen-upgrades")


# --- the scripts the seeds install ---------------------------------------------------------------


def _scripts(tree: dict[PurePosixPath, bytes]) -> dict[str, str]:
    """Every executable a seed installs, by host:path."""
    out = {}
    for path in tree:
        if path.name == "user-data":
            for item in yaml.safe_load(tree[path])["write_files"]:
                if item["permissions"] == "0755":
                    out[f"{path.parts[1]}:{item['path']}"] = item["content"]
    return out


STATIC = ("hkgen-microk8s-join.sh", "hkgen-prepare-disk.sh", "hkgen-microk8s-watchdog.py",
          "hkgen-gitops-bootstrap.sh", "hkgen-microk8s-after-join.sh", "hkgen-microk8s-reclaim.sh",
          "hkgen-dqlite-membership.sh")


def test_static_scripts_are_installed_verbatim(reference) -> None:
    _cluster, _plan, tree = reference
    scripts = _scripts(tree)
    for name in STATIC:
        source = (TEMPLATE_FILES / name).read_text()
        assert not re.search(r"\{[{%#]", source), f"{name} must not contain Jinja syntax"
        installed = [body for key, body in scripts.items() if key.endswith("/" + name.rsplit(".", 1)[0])]
        assert installed and all(body == source for body in installed), name


def test_shell_scripts_parse_and_pass_shellcheck(reference, tmp_path: Path) -> None:
    _cluster, _plan, tree = reference
    shells = {k: v for k, v in _scripts(tree).items() if v.startswith("#!/bin/bash")}
    assert {k.split(":")[1] for k in shells} == {
        "/usr/local/sbin/hkgen-node-setup", "/usr/local/sbin/hkgen-microk8s-join", "/usr/local/sbin/hkgen-prepare-disk",
        "/usr/local/sbin/hkgen-microk8s-upgrade", "/usr/local/sbin/hkgen-gitops-bootstrap",
        "/usr/local/sbin/hkgen-microk8s-after-join", "/usr/local/sbin/hkgen-microk8s-reclaim",
        "/usr/local/sbin/hkgen-dqlite-membership"}
    files = []
    for i, (_key, body) in enumerate(sorted(shells.items())):
        f = tmp_path / f"{i}.sh"
        f.write_text(body)
        subprocess.run(["bash", "-n", str(f)], check=True, timeout=30)
        files.append(str(f))
    need_programs("shellcheck", reason="apt-get install shellcheck; bash -n passed")
    done = subprocess.run(["shellcheck", "-S", "style", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_python_scripts_run_on_the_oldest_supported_node_python(reference) -> None:
    _cluster, _plan, tree = reference
    body = _scripts(tree)["cp1:/usr/local/sbin/hkgen-microk8s-watchdog"]
    assert body.startswith("#!/usr/bin/python3\n")
    ast.parse(body, feature_version=(3, 10))  # Ubuntu 22.04 ships Python 3.10


def _tool(name: str) -> Path:
    return REPO / "templates" / "cloud-init" / "files" / name


def _image(tmp_path: Path, name: str, size_mb: int = 16) -> Path:
    image = tmp_path / name
    with image.open("wb") as fh:
        fh.truncate(size_mb * 1024 * 1024)
    return image


def _blkid(image: Path) -> dict[str, str]:
    done = subprocess.run(["blkid", "-p", "-o", "export", str(image)], capture_output=True, text=True, check=False)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


needs_mkfs = tools("mkfs.ext4", "blkid", reason="e2fsprogs/util-linux")


@needs_mkfs
def test_prepare_disk_formats_a_blank_disk_once(tmp_path: Path) -> None:
    disk = _image(tmp_path, "blank.img")
    first = subprocess.run(["bash", str(_tool("hkgen-prepare-disk.sh")), str(disk), "longhorn"],
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "is blank; creating an ext4 filesystem" in first.stdout
    probe = _blkid(disk)
    assert probe["TYPE"] == "ext4" and probe["LABEL"] == "longhorn"
    again = subprocess.run(["bash", str(_tool("hkgen-prepare-disk.sh")), str(disk), "longhorn"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "keeping the existing ext4 filesystem" in again.stdout
    assert _blkid(disk)["UUID"] == probe["UUID"]  # not formatted a second time


@needs_mkfs
def test_prepare_disk_never_wipes_existing_data(tmp_path: Path) -> None:
    ext4 = _image(tmp_path, "ext4.img")
    subprocess.run(["mkfs.ext4", "-q", "-L", "olddata", str(ext4)], check=True, timeout=60)
    before = _blkid(ext4)
    kept = subprocess.run(["bash", str(_tool("hkgen-prepare-disk.sh")), str(ext4), "longhorn"],
                          capture_output=True, text=True, timeout=60)
    assert kept.returncode == 0 and _blkid(ext4) == before  # same UUID, same label: untouched

    table = _image(tmp_path, "dos.img")
    mbr = bytearray(512)
    mbr[446:462] = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (8192).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    with table.open("r+b") as fh:
        fh.write(mbr)
    raw = table.read_bytes()
    refused = subprocess.run(["bash", str(_tool("hkgen-prepare-disk.sh")), str(table), "longhorn"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "refusing to touch" in refused.stderr and "dos partition table" in refused.stderr
    assert table.read_bytes() == raw

    if shutil.which("mkswap"):
        swap = _image(tmp_path, "swap.img")
        subprocess.run(["mkswap", str(swap)], check=True, capture_output=True, timeout=60)
        raw = swap.read_bytes()
        other = subprocess.run(["bash", str(_tool("hkgen-prepare-disk.sh")), str(swap), "longhorn"],
                               capture_output=True, text=True, timeout=60)
        assert other.returncode == 2 and "a swap signature" in other.stderr and swap.read_bytes() == raw

    missing = subprocess.run(["bash", str(_tool("hkgen-prepare-disk.sh")), str(tmp_path / "nope"), "longhorn"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 3


# The join logic, with stand-ins for `microk8s` and `snap`: each peer's behaviour is scripted.
FAKE_MICROK8S = """#!/bin/bash
echo "$*" >>"$FAKE_LOG"
case $1 in
  status) exit "${FAKE_STATUS:-0}" ;;
  join)
    peer=${2%%:*}
    answer=$(sed -n "s/^$peer //p" "$FAKE_PEERS")
    case $answer in
      accept) echo "Successfully joined the cluster."; exit 0 ;;
      refuse) echo "invalid token (500)."; exit 6 ;;
      *) echo "Please ensure the master node is reachable. [Errno 113] No route to host"; exit 1 ;;
    esac ;;
esac
"""
FAKE_SNAP = """#!/bin/bash
echo "snap $*" >>"$FAKE_LOG"
[ "$1" = list ] && exit "${FAKE_INSTALLED:-0}"
exit 0
"""
TOKEN = "0123456789abcdefghijklmnopqrstuv"  # noqa: S105 - test value


def _join_world(tmp_path: Path, role: str, peers: dict[str, str], token: str = TOKEN,
                cas: dict[str, str] | None = None, openssl: str | None = None,
                port: int = 25000) -> tuple[Path, dict[str, str]]:
    """A node's join configuration with scripted peers; `cas`: each peer's CA (default: its own)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    cas = cas if cas is not None else {ip: f"CA-OF-{ip}" for ip in peers}
    (tmp_path / "cas").write_text("".join(f"{ip} {ca}\n" for ip, ca in cas.items()))
    for name, body in (("microk8s", FAKE_MICROK8S), ("snap", FAKE_SNAP), ("openssl", FAKE_OPENSSL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "launcher").mkdir()
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "addons.yaml").write_text("version: 0.2.0\n")
    (tmp_path / "token.yaml").write_text("version: 0.2.0\n")
    (tmp_path / "peers").write_text("".join(f"{ip} {answer}\n" for ip, answer in peers.items()))
    (tmp_path / "lock").write_text("")
    conf = {
        "role": role, "peers": " ".join(peers), "channel": "1.34/stable", "token_file": str(tmp_path / "token"),
        "launcher_dir": str(tmp_path / "launcher"),
        "addons_config": str(tmp_path / "addons.yaml") if role == "bootstrap" else "",
        "token_config": str(tmp_path / "token.yaml") if role != "worker" else "",
        "state_file": str(tmp_path / "state" / "joined"), "join_lock": str(tmp_path / "lock"),
        "form_anyway": str(tmp_path / "form-anyway") if role == "bootstrap" else "",
        "microk8s": str(bin_dir / "microk8s"), "snap": str(bin_dir / "snap"),
        "openssl": openssl or str(bin_dir / "openssl"), "agent_port": str(port),
    }
    (tmp_path / "join.conf").write_text("".join(f"{k}='{v}'\n" for k, v in conf.items()))
    env = {"PATH": os.environ["PATH"], "FAKE_LOG": str(tmp_path / "log"), "FAKE_PEERS": str(tmp_path / "peers"),
           "FAKE_CAS": str(tmp_path / "cas")}
    return tmp_path / "join.conf", env


def _join(conf: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(_tool("hkgen-microk8s-join.sh")), str(conf)], env=env, capture_output=True,
                          text=True, timeout=60)


def _launcher(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "launcher").iterdir())


def test_fresh_cluster_bootstrap_forms_only_when_every_peer_refuses(tmp_path: Path) -> None:
    conf, env = _join_world(tmp_path, "bootstrap", {"10.0.0.12": "refuse", "10.0.0.13": "refuse"})
    done = _join(conf, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _launcher(tmp_path) == ["hkgen-addons.yaml", "hkgen-token.yaml"]
    assert "formed the cluster" in (tmp_path / "state" / "joined").read_text()
    log = (tmp_path / "log").read_text()
    assert f"join 10.0.0.12:25000/{TOKEN}\n" in log and f"join 10.0.0.13:25000/{TOKEN}\n" in log
    assert TOKEN not in done.stdout + done.stderr  # the token never reaches the journal
    assert not (tmp_path / "lock").exists()  # MicroK8s' stale join lock is cleaned up
    again = _join(conf, env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert (tmp_path / "log").read_text() == log  # no second attempt


def test_reflashed_bootstrap_joins_the_live_cluster(tmp_path: Path) -> None:
    conf, env = _join_world(tmp_path, "bootstrap", {"10.0.0.12": "refuse", "10.0.0.13": "accept"})
    done = _join(conf, env)
    assert done.returncode == 0, done.stdout
    assert _launcher(tmp_path) == ["hkgen-token.yaml"]  # no addons, no second cluster
    assert "joined the cluster through 10.0.0.13 as bootstrap" in (tmp_path / "state" / "joined").read_text()


def test_bootstrap_waits_while_a_peer_does_not_answer(tmp_path: Path) -> None:
    conf, env = _join_world(tmp_path, "bootstrap", {"10.0.0.12": "refuse", "10.0.0.13": "down"})
    done = _join(conf, env)
    assert done.returncode == 75
    assert _launcher(tmp_path) == [] and not (tmp_path / "state").exists()
    assert "microk8s remove-node" not in done.stdout  # no hand needed: hkgen-microk8s-reclaim does it
    # The admin decides the missing peers are gone for good.
    (tmp_path / "form-anyway").write_text("")
    done = _join(conf, env)
    assert done.returncode == 0 and "forming the cluster although not every peer answered" in done.stdout
    assert _launcher(tmp_path) == ["hkgen-addons.yaml", "hkgen-token.yaml"]


def test_bootstrap_never_forms_beside_a_cluster_that_refuses_its_token(tmp_path: Path) -> None:
    """JOIN_TOKEN changed in the secrets file, the running members kept the old one."""
    peers = {"10.0.0.12": "refuse", "10.0.0.13": "refuse", "10.0.0.14": "refuse"}
    conf, env = _join_world(tmp_path, "bootstrap", peers,
                            cas={"10.0.0.12": "FRESH-A", "10.0.0.13": "CLUSTER", "10.0.0.14": "CLUSTER"})
    done = _join(conf, env)
    assert done.returncode == 75
    assert "10.0.0.13 and 10.0.0.14 already form a cluster (one CA) but refuse this node's token" in done.stdout
    assert _launcher(tmp_path) == [] and not (tmp_path / "state").exists()


def _tls_peer(tmp_path: Path, name: str, ca: str, address: str, port: int) -> Any:
    """A TLS server at address:port presenting a certificate signed by CA `ca` (made with openssl)."""
    import socket
    import ssl
    import threading

    def sh(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60, cwd=tmp_path)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    if not (tmp_path / f"{ca}.crt").exists():
        sh("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-subj", "/CN=10.152.183.1", "-days", "2")
    # As MicroK8s' csr.conf.template: the server certificate names its CA's key.
    (tmp_path / "v3.cnf").write_text("[v3_ext]\nauthorityKeyIdentifier=keyid,issuer:always\n")
    sh("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=127.0.0.1")
    sh("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
       "-out", f"{name}.crt", "-days", "2", "-extfile", "v3.cnf", "-extensions", "v3_ext")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    listener = socket.create_server((address, port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return stop, listener, thread


@tools("openssl")
def test_peer_ca_probe_with_real_openssl_and_tls(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a free port, the same on every loopback address
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = [_tls_peer(tmp_path, "p2", "fresh2", "127.0.0.2", port),
               _tls_peer(tmp_path, "p3", "cluster", "127.0.0.3", port),
               _tls_peer(tmp_path, "p4", "cluster", "127.0.0.4", port)]
    try:
        world = tmp_path / "node"
        peers = {"127.0.0.2": "refuse", "127.0.0.3": "refuse", "127.0.0.4": "refuse"}
        conf, env = _join_world(world, "bootstrap", peers, openssl=shutil.which("openssl"), port=port)
        done = _join(conf, env)
        assert done.returncode == 75, done.stdout + done.stderr
        assert "127.0.0.3 and 127.0.0.4 already form a cluster" in done.stdout
        # Three fresh nodes: three CAs, so the bootstrap node forms the cluster.
        fresh = tmp_path / "fresh"
        conf, env = _join_world(fresh, "bootstrap", {"127.0.0.2": "refuse", "127.0.0.3": "refuse"},
                                openssl=shutil.which("openssl"), port=port)
        done = _join(conf, env)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        for stop, listener, thread in servers:
            stop.set()
            thread.join(timeout=5)
            listener.close()


def test_other_control_planes_and_workers_never_form(tmp_path: Path) -> None:
    conf, env = _join_world(tmp_path / "cp", "control-plane", {"10.0.0.11": "refuse", "10.0.0.13": "refuse"})
    (tmp_path / "cp" / "form-anyway").write_text("")  # only ever read on the bootstrap node
    assert _join(conf, env).returncode == 75 and _launcher(tmp_path / "cp") == []
    conf, env = _join_world(tmp_path / "w", "worker", {"10.0.0.11": "down", "10.0.0.12": "accept"})
    done = _join(conf, env)
    assert done.returncode == 0, done.stdout
    assert _launcher(tmp_path / "w") == []  # workers never accept joins: no token part
    assert f"join 10.0.0.12:25000/{TOKEN} --worker" in (tmp_path / "w" / "log").read_text()


def test_join_refuses_a_seed_without_the_real_token(tmp_path: Path) -> None:
    conf, env = _join_world(tmp_path, "bootstrap", {}, token="${JOIN_TOKEN}")  # noqa: S106 - a placeholder
    done = _join(conf, env)
    assert done.returncode == 75 and "hkgen boot-media" in done.stdout
    assert "join" not in (tmp_path / "log").read_text().replace("status", "")


def test_join_installs_microk8s_when_cloud_init_could_not(tmp_path: Path) -> None:
    conf, env = _join_world(tmp_path, "bootstrap", {})
    done = _join(conf, {**env, "FAKE_INSTALLED": "1"})
    assert done.returncode == 0, done.stdout
    log = (tmp_path / "log").read_text()
    assert "snap install microk8s --classic --channel=1.34/stable" in log
    assert "snap refresh --hold microk8s" in log


# --- the stall watchdog -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def watchdog() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hkgen_watchdog", _tool("hkgen-microk8s-watchdog.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CFG = {"node": "cp1", "max_restarts_per_hour": 3, "api_failures": 3, "stale_lease_seconds": 140,
       "leader_stale_seconds": 180, "boot_grace_seconds": 600, "escalate_within_seconds": 900}


def _obs(**kw: Any) -> dict[str, Any]:
    return {"uptime": 10_000, "api_ok": True, "lease_ages": {}, "leader": "cp2", "leader_age": 5} | kw


def test_watchdog_restarts_after_consecutive_api_failures_and_escalates(watchdog: Any) -> None:
    state: dict[str, Any] = {}
    now = 1_000_000.0
    for i in range(2):
        services, reason, state = watchdog.decide(CFG, state, _obs(api_ok=False), now + 60 * i)
        assert services == [] and state["api_failures"] == i + 1
    services, reason, state = watchdog.decide(CFG, state, _obs(api_ok=False), now + 120)
    assert services == ["microk8s.daemon-kubelite"] and "failed 3 checks" in reason
    for i in range(3):
        services, _reason, state = watchdog.decide(CFG, state, _obs(api_ok=False), now + 180 + 60 * i)
    assert services == ["microk8s.daemon-k8s-dqlite", "microk8s.daemon-kubelite"]  # again within 15 min


def test_watchdog_restarts_a_stalled_lifecycle_only_from_the_leader(watchdog: Any) -> None:
    stale = {"w3": 400.0, "w1": 3.0}
    services, reason, _ = watchdog.decide(CFG, {}, _obs(lease_ages=stale, leader="cp2"), 1e6)
    assert services == []  # cp2 leads and runs its own watchdog
    services, reason, _ = watchdog.decide(CFG, {}, _obs(lease_ages=stale, leader="cp1"), 1e6)
    assert services == ["microk8s.daemon-kubelite"] and "w3 (400 s)" in reason and "w1" not in reason
    services, _reason, _ = watchdog.decide(CFG, {}, _obs(lease_ages=stale, leader="cp3", leader_age=600), 1e6)
    assert services == ["microk8s.daemon-kubelite"]  # the leader is gone and nobody took over
    services, _reason, _ = watchdog.decide(CFG, {}, _obs(uptime=100, api_ok=False), 1e6)
    assert services == []  # booting


def test_watchdog_is_capped_per_hour(watchdog: Any) -> None:
    state: dict[str, Any] = {"api_failures": 0, "restarts": []}
    now = 1_000_000.0
    restarts = 0
    for minute in range(60):
        services, reason, state = watchdog.decide(CFG, state, _obs(lease_ages={"w3": 999.0}, leader="cp1"),
                                                  now + 60 * minute)
        restarts += bool(services)
    assert restarts == 3 and "NOT restarting: 3 restarts in the last hour (cap)" in reason
    services, _reason, state = watchdog.decide(CFG, state, _obs(lease_ages={"w3": 999.0}, leader="cp1"), now + 3600 + 1)
    assert services == ["microk8s.daemon-kubelite"]  # the first restart left the window


def test_watchdog_lease_ages_from_api_objects(watchdog: Any) -> None:
    nodes = {"items": [
        {"metadata": {"name": "w1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "w2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
    ]}
    leases = {"items": [{"metadata": {"name": "w1"}, "spec": {"renewTime": "2026-11-25T09:00:00.123456Z"}},
                        {"metadata": {"name": "w2"}, "spec": {"renewTime": "2026-11-25T09:00:00Z"}}]}
    now = watchdog.parse_time("2026-11-25T09:05:00Z")
    ages = watchdog.observe_nodes(nodes, leases, now)
    assert list(ages) == ["w1"] and abs(ages["w1"] - 299.876544) < 1e-3


def test_watchdog_command_restarts_through_snap_and_keeps_state(watchdog: Any, tmp_path: Path) -> None:
    kubectl = tmp_path / "microk8s"
    kubectl.write_text("#!/bin/sh\necho \"$*\" >>\"$0.log\"\nexit 1\n")  # the API server never answers
    snap = tmp_path / "snap"
    snap.write_text("#!/bin/sh\necho \"$*\" >>\"$0.log\"\n")
    for tool in (kubectl, snap):
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "joined").write_text("x")
    cfg = CFG | {"boot_grace_seconds": 0, "api_failures": 2, "max_restarts_per_hour": 1,
                 "state_file": str(tmp_path / "state" / "watchdog.json"), "joined_file": str(tmp_path / "joined"),
                 "microk8s": str(kubectl), "snap": str(snap)}
    config = tmp_path / "watchdog.json"
    config.write_text(json.dumps(cfg))
    script = str(_tool("hkgen-microk8s-watchdog.py"))
    runs = [subprocess.run([sys.executable, script, "--config", str(config)], capture_output=True, text=True,
                           timeout=60) for _ in range(5)]
    assert [r.returncode for r in runs] == [0] * 5
    assert (tmp_path / "snap.log").read_text() == "restart microk8s.daemon-kubelite\n"  # once: the cap is 1
    assert "NOT restarting" in runs[-1].stdout
    assert json.loads((tmp_path / "state" / "watchdog.json").read_text())["api_failures"] >= 2
