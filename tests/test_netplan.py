"""Every network-config hkgen renders is accepted by the real `netplan generate` (Debian netplan.io).

cloud-init parses the NoCloud network-config (PyYAML) and writes it under a `network:` key to
/etc/netplan/50-cloud-init.yaml; the tests do the same into a scratch root and let netplan
generate the systemd-networkd and wpa_supplicant files from it, then read those back.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from conftest import tools
from hkgen.areas import seeds
from hkgen.render.jinja import render_file
from test_seeds import render_seeds, text, variant

NETPLAN = shutil.which("netplan")
pytestmark = tools("netplan", reason="apt-get install netplan.io; .ci/run installs it")


def _prepare(root: Path, network_config: str) -> list[str]:
    data = yaml.safe_load(network_config)
    target = root / "etc" / "netplan" / "50-cloud-init.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump({"network": data}, sort_keys=False))
    target.chmod(0o600)
    assert NETPLAN is not None
    return [NETPLAN, "generate", "--root-dir", str(root)]


def generate(root: Path, network_config: str) -> subprocess.CompletedProcess[str]:
    """Write `network_config` as cloud-init would and run `netplan generate` on it."""
    return subprocess.run(_prepare(root, network_config), capture_output=True, text=True, timeout=60)


def generate_all(jobs: dict[Path, str]) -> dict[Path, tuple[int, str]]:
    """`generate` for several roots at once (netplan takes a quarter second per run)."""
    running = {root: subprocess.Popen(_prepare(root, body), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for root, body in jobs.items()}
    return {root: (proc.wait(timeout=60), proc.communicate()[1]) for root, proc in running.items()}


def networkd(root: Path, name: str) -> str:
    return (root / "run" / "systemd" / "network" / f"10-netplan-{name}.network").read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[PurePosixPath, bytes]]:
    cluster = variant(tmp_path_factory.mktemp("ref"))
    _plan, tree = render_seeds(cluster)
    return cluster, tree


def test_every_reference_network_config_generates(reference, tmp_path: Path) -> None:
    cluster, tree = reference
    configs = {p: data.decode() for p, data in tree.items() if p.name == "network-config"}
    assert len(configs) == len(cluster.nodes) + len(cluster.satellites)
    results = generate_all({tmp_path / path.parts[1]: body for path, body in configs.items()})
    for path in sorted(configs):
        root = tmp_path / path.parts[1]
        returncode, stderr = results[root]
        assert returncode == 0, f"{path}: {stderr}"
        host = next(h for h in (*cluster.nodes, *cluster.satellites) if h.hostname == path.parts[1])
        if host.link == "ethernet":
            unit = networkd(root, "eth0")
            assert f"PermanentMACAddress={host.mac}" in unit  # the seed only fits its own Pi
            assert f"Address={host.ip}/24" in unit and "Gateway=192.168.10.1" in unit
            assert "DNS=192.168.10.1" in unit and "Domains=home.arpa" in unit
        else:
            unit = networkd(root, "wlan0")
            assert f"Address={host.ip}/24" in unit
            wpa = (root / "run" / "netplan" / "wpa-wlan0.conf").read_text()
            assert 'ssid="home-iot"' in wpa and 'psk="${WIFI_PASSPHRASE_HOME_IOT}"' in wpa


def test_other_lan_shapes_generate(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        data["network"].update({"lan": "10.20.0.0/16", "gateway": "10.20.0.1", "dns": ["10.20.0.1", "9.9.9.9"],
                                "loadBalancerPool": "10.20.9.200-10.20.9.220", "ingressIP": "10.20.9.201",
                                "dnsServerIP": "10.20.9.202"})
        data["network"]["ntp"] = []
        for i, host in enumerate([*data["nodes"], *data["satellites"]]):
            host["ip"] = f"10.20.1.{i + 10}"
        data["apps"]["mosquitto"]["loadBalancerIP"] = "10.20.9.200"
    _plan, tree = render_seeds(variant(tmp_path / "cluster", edit))
    jobs = {tmp_path / host: text(tree, "nodes", host, "network-config") for host in ("cp1", "w6")}
    for root, (returncode, stderr) in generate_all(jobs).items():
        assert returncode == 0, stderr
        unit = networkd(root, "eth0" if root.name == "cp1" else "wlan0")
        assert "/16" in unit and "Gateway=10.20.0.1" in unit and "DNS=10.20.0.1" in unit and "DNS=9.9.9.9" in unit


def test_wifi_node_with_awkward_ssid_and_real_passphrase(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        data["nodes"][3]["link"] = "wifi"
        data["nodes"][3]["wifi"] = {"ssid": "on: the #1 net", "country": "FR"}
    cluster = variant(tmp_path / "cluster", edit)
    passphrase = "p#ss: 'word' with spaces & {braces}"  # noqa: S105 - test value
    files = seeds.host_files(cluster, "w1", {"JOIN_TOKEN": "a" * 32, "WIFI_PASSPHRASE_ON_THE_1_NET": passphrase})
    (net,) = [f for f in files if f.path.name == "network-config"]
    body = render_file(net, {"cluster": cluster, "components": ()}, "x").decode()
    assert yaml.safe_load(body)["wifis"]["wlan0"]["access-points"] == {"on: the #1 net": {"password": passphrase}}
    root = tmp_path / "root"
    done = generate(root, body)
    assert done.returncode == 0, done.stderr
    wpa = (root / "run" / "netplan" / "wpa-wlan0.conf").read_text()
    assert 'ssid="on: the #1 net"' in wpa and f'psk="{passphrase}"' in wpa


def test_netplan_and_the_hkgen_schema_refuse_the_same_mistake(reference, tmp_path: Path) -> None:
    from hkgen.verify.cloudinit import check_seed_file

    _cluster, tree = reference
    broken = text(tree, "nodes", "w2", "network-config").replace("dhcp4: false", "dhcp4: maybe")
    done = generate(tmp_path / "root", broken)
    assert done.returncode != 0 and "maybe" in done.stderr
    problems = [p.format() for p in check_seed_file("n", "network-config", broken, node=True)]
    assert any("$.ethernets.eth0.dhcp4: 'maybe' is not of type 'boolean'" in p for p in problems)
