"""The rendered Mosquitto configuration, ACL and password script, run in the real broker.

A real `mosquitto` (Debian package) listens on 127.0.0.1 on free ports with the rendered
mosquitto.conf (only the /mosquitto paths moved into tmp and the listeners bound to loopback), the
rendered ACL, and a password file built by the rendered passwd.sh with the real mosquitto_passwd.
Its TLS certificate is signed, as cert-manager would sign it, by a CA made by hkgen's own
`secrets` code (ops/pki.py), with the names of the rendered Certificate. Clients are the real
mosquitto_pub / mosquitto_sub. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import tools
from hkgen.areas import workloads
from hkgen.config.load import load_file
from hkgen.config.model import Cluster
from hkgen.core.yamlio import make_yaml
from hkgen.ops.pki import new_ca
from hkgen.render.jinja import render_file
from hkgen.validation.validate import validate_document

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / "clusters" / "home" / "cluster.yaml"
SAFE = YAML(typ="safe", pure=True)
TOOLS = ("mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd", "openssl", "stdbuf")

pytestmark = tools(*TOOLS, reason="Debian mosquitto, mosquitto-clients, openssl, coreutils")


def _cluster(tmp: Path) -> Cluster:
    """The reference cluster plus a monitoring client allowed `$SYS` (and nothing else)."""
    yaml = make_yaml()
    data = yaml.load(HOME.read_text())
    mosq = data["apps"]["mosquitto"]
    mosq["users"].append("mqtt-exporter")
    mosq["access"] = {"mqtt-exporter": {"topics": [], "read": [], "monitor": True}}
    dest = tmp / "cluster.yaml"
    with dest.open("w") as fh:
        yaml.dump(data, fh)
    result = validate_document(load_file(dest))
    assert result.cluster is not None, [p.format() for p in result.errors]
    return result.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rendered(cluster: Cluster) -> list[dict[str, Any]]:
    comp = next(c for c in workloads.components(cluster) if c.name == "mosquitto")
    docs: list[dict[str, Any]] = []
    for f in comp.files:
        text = render_file(f, {"cluster": cluster, "components": (comp,)}, cluster.source).decode()
        docs += [d for d in SAFE.load_all(text) if isinstance(d, dict)]
    return docs


def _openssl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _leaf(tmp: Path, ca_key: Path, ca_cert: Path, name: str, dns: list[str], ips: list[str]) -> tuple[Path, Path]:
    """A server key and certificate signed by the CA, with these subject alternative names."""
    key = tmp / f"{name}.key"
    key.write_text(_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"))
    csr = tmp / f"{name}.csr"
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={dns[0]}", "-out", str(csr))
    ext = tmp / f"{name}.ext"
    sans = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{i}" for i in ips)])
    ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    cert = tmp / f"{name}.crt"
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(cert))
    return key, cert


@dataclass
class Broker:
    plain: int
    tls: int
    ca: Path
    other_ca: Path
    passwords: dict[str, str]
    acl: str
    tmp: Path

    def _auth(self, user: str | None) -> list[str]:
        return [] if user is None else ["-u", user, "-P", self.passwords[user]]

    def pub(self, user: str | None, topic: str, message: str, *, tls: bool = False,
            cafile: Path | None = None) -> subprocess.CompletedProcess[str]:
        port = ["-p", str(self.tls), "--cafile", str(cafile or self.ca), "--insecure"] if tls else \
            ["-p", str(self.plain)]
        return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", *port, *self._auth(user), "-q", "1",
                               "-t", topic, "-m", message], capture_output=True, text=True, timeout=20, check=False)

    def subscribe(self, user: str, topic: str, count: int) -> subprocess.Popen[str]:
        """A subscriber that stops after `count` messages (or 10 s), and has its SUBACK
        (mosquitto_sub -d says so) before this returns."""
        # stdbuf: mosquitto_sub's stdio would hold the SUBACK line in its buffer until it exits.
        proc = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.plain),
                                 *self._auth(user), "-q", "1", "-t", topic, "-v", "-d", "-C", str(count), "-W", "10"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "received suback" in line.lower():
                return proc
        proc.stdout.close()
        raise AssertionError(f"{user} got no SUBACK for {topic}: exit {proc.wait()}")

    @staticmethod
    def messages(proc: subprocess.Popen[str]) -> list[str]:
        """Messages (`topic payload`) the subscriber got before it stopped."""
        assert proc.stdout is not None
        with proc.stdout:  # closed here: an open pipe left to the garbage collector is a ResourceWarning
            rest = proc.stdout.read()
        proc.wait(timeout=20)
        debug = ("Client ", "Subscribed", "Timed out")
        return [line for line in rest.splitlines() if line and not line.startswith(debug)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("mqtt")
    cluster = _cluster(tmp)
    docs = _rendered(cluster)
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    cert_spec = next(d for d in docs if d["kind"] == "Certificate")["spec"]
    for sub in ("config", "auth", "data", "tls"):
        (tmp / sub).mkdir()
    # The CA exactly as `hkgen secrets` makes it; the broker certificate as cert-manager would.
    ca_key_pem, ca_pem = new_ca(cluster)
    (tmp / "ca.key").write_text(ca_key_pem)
    (tmp / "tls" / "ca.crt").write_text(ca_pem)
    key, cert = _leaf(tmp, tmp / "ca.key", tmp / "tls" / "ca.crt", "mosquitto", cert_spec["dnsNames"],
                      cert_spec["ipAddresses"])
    shutil.copy(key, tmp / "tls" / "tls.key")
    shutil.copy(cert, tmp / "tls" / "tls.crt")
    # A stranger's CA: a client trusting only it must not accept the broker.
    other_key = tmp / "other.key"
    other_key.write_text(_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"))
    (tmp / "other.crt").write_text(_openssl("req", "-new", "-x509", "-key", str(other_key), "-subj", "/CN=other",
                                            "-days", "2"))
    plain, tls = _free_port(), _free_port()
    conf = config["mosquitto.conf"].replace("/mosquitto/", f"{tmp}/")
    conf = re.sub(r"^listener 1883$", f"listener {plain} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 8883$", f"listener {tls} 127.0.0.1", conf, flags=re.M)
    assert f"listener {plain} 127.0.0.1" in conf and f"listener {tls} 127.0.0.1" in conf
    if os.geteuid() == 0:
        # Started as root, mosquitto switches to user `mosquitto`, which cannot enter pytest's
        # private tmp; in the pod it runs as uid 1883 from the start and switches nothing.
        conf += "user root\n"
    (tmp / "config" / "mosquitto.conf").write_text(conf)
    (tmp / "config" / "acl").write_text(config["acl"])
    # The password file, built the way the init container builds it.
    users = re.findall(r'mosquitto_passwd -b "\$file" (\S+) "\$(MQTT_PASSWORD_[A-Z0-9_]+)"', config["passwd.sh"])
    passwords = {user: f"pw-{user}-{os.urandom(6).hex()}" for user, _key in users}
    env = {"PATH": os.environ["PATH"], **{key: passwords[user] for user, key in users}}
    script = tmp / "passwd.sh"
    script.write_text(config["passwd.sh"])
    done = subprocess.run(["/bin/sh", str(script), str(tmp / "auth" / "passwd")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    stored = (tmp / "auth" / "passwd").read_text()
    assert all(pw not in stored for pw in passwords.values())  # hashes only
    log = (tmp / "mosquitto.log").open("w")
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp / "config" / "mosquitto.conf")], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", plain), timeout=1).close()
            socket.create_connection(("127.0.0.1", tls), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("mosquitto did not start: " + (tmp / "mosquitto.log").read_text()) from None
            time.sleep(0.1)
    try:
        yield Broker(plain, tls, tmp / "tls" / "ca.crt", tmp / "other.crt", passwords, config["acl"], tmp)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_every_user_has_a_password_and_an_acl_section(broker: Broker) -> None:
    assert set(broker.passwords) == {"homeassistant", "zigbee2mqtt-house", "zigbee2mqtt-garden", "zigbee2mqtt-attic",
                                     "esphome", "node-red-laptop", "mqtt-exporter"}
    sections = re.findall(r"^user (\S+)$", broker.acl, flags=re.M)
    assert sorted(sections) == sorted(broker.passwords)
    # Nothing granted to every user (lines before the first `user` apply to anonymous and all).
    head = broker.acl.split("\nuser ", 1)[0]
    assert not re.search(r"^(topic|pattern) ", head, flags=re.M)


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    anonymous = broker.pub(None, "devices/esphome/x", "1")
    assert anonymous.returncode != 0 and "not authori" in anonymous.stderr.lower()
    wrong = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.plain), "-u", "esphome", "-P",
                            "not-the-password", "-t", "devices/esphome/x", "-m", "1"],
                           capture_output=True, text=True, timeout=20, check=False)
    assert wrong.returncode != 0


def test_home_assistant_drives_a_bridge_which_answers(broker: Broker) -> None:
    # zigbee2mqtt-house takes requests on its own base topic ...
    bridge = broker.subscribe("zigbee2mqtt-house", "zigbee2mqtt/house/bridge/request/#", 1)
    assert broker.pub("homeassistant", "zigbee2mqtt/house/bridge/request/permit_join", "ha-asks").returncode == 0
    assert broker.messages(bridge) == ["zigbee2mqtt/house/bridge/request/permit_join ha-asks"]
    # ... and publishes state and discovery, which Home Assistant reads.
    ha = broker.subscribe("homeassistant", "#", 3)
    assert broker.pub("zigbee2mqtt-house", "zigbee2mqtt/house/lamp", "on").returncode == 0
    assert broker.pub("zigbee2mqtt-house", "homeassistant/light/0x01/light/config", "cfg").returncode == 0
    assert broker.pub("esphome", "devices/esphome/kitchen/temp", "21").returncode == 0
    assert broker.messages(ha) == ["zigbee2mqtt/house/lamp on", "homeassistant/light/0x01/light/config cfg",
                                         "devices/esphome/kitchen/temp 21"]


def test_a_device_cannot_open_a_zigbee_network(broker: Broker) -> None:
    bridge = broker.subscribe("zigbee2mqtt-house", "zigbee2mqtt/house/#", 1)
    # Accepted on the wire (MQTT 3.1.1 has no negative PUBACK) but dropped by the broker's ACL.
    broker.pub("esphome", "zigbee2mqtt/house/bridge/request/permit_join", '{"time":254}')
    broker.pub("node-red-laptop", "zigbee2mqtt/house/bridge/request/device/remove", "lamp")
    broker.pub("esphome", "homeassistant/light/fake/config", "spoofed discovery")
    broker.pub("zigbee2mqtt-garden", "zigbee2mqtt/house/bridge/request/permit_join", "other bridge")
    broker.pub("homeassistant", "zigbee2mqtt/house/marker", "end")
    assert broker.messages(bridge) == ["zigbee2mqtt/house/marker end"]
    ha = broker.subscribe("homeassistant", "homeassistant/#", 1)
    broker.pub("esphome", "homeassistant/light/fake/config", "spoofed discovery")
    broker.pub("zigbee2mqtt-attic", "homeassistant/marker", "end")
    assert broker.messages(ha) == ["homeassistant/marker end"]


def test_a_device_reads_neither_other_devices_nor_the_bridges(broker: Broker) -> None:
    spy = broker.subscribe("esphome", "#", 2)
    broker.pub("node-red-laptop", "devices/node-red-laptop/secret", "laptop-only")
    broker.pub("zigbee2mqtt-garden", "zigbee2mqtt/garden/door", "open")
    broker.pub("homeassistant", "homeassistant/status", "online")
    broker.pub("esphome", "devices/esphome/marker", "end")
    assert broker.messages(spy) == ["homeassistant/status online", "devices/esphome/marker end"]
    # One bridge does not read another's network either.
    garden = broker.subscribe("zigbee2mqtt-garden", "zigbee2mqtt/#", 1)
    broker.pub("zigbee2mqtt-house", "zigbee2mqtt/house/lamp", "on")
    broker.pub("zigbee2mqtt-garden", "zigbee2mqtt/garden/marker", "end")
    assert broker.messages(garden) == ["zigbee2mqtt/garden/marker end"]


def test_only_the_monitoring_user_reads_sys(broker: Broker) -> None:
    for user, allowed in (("mqtt-exporter", True), ("esphome", False), ("homeassistant", False)):
        proc = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.plain), "-u", user, "-P",
                               broker.passwords[user], "-t", "$SYS/broker/version", "-C", "1", "-W", "3"],
                              capture_output=True, text=True, timeout=20, check=False)
        assert ("mosquitto version" in proc.stdout) is allowed, (user, proc.stdout, proc.stderr)


def test_tls_listener_trusts_the_ca_and_refuses_plain_text(broker: Broker) -> None:
    spy = broker.subscribe("esphome", "devices/esphome/#", 1)
    assert broker.pub("esphome", "devices/esphome/tls", "over-tls", tls=True).returncode == 0
    assert broker.messages(spy) == ["devices/esphome/tls over-tls"]
    # mosquitto_pub cannot be pointed at 127.0.0.1 under another name (hence --insecure above):
    # openssl checks the broker's chain and the names LAN clients use, against the CA only.
    for check in (["-verify_hostname", "mqtt.home.arpa"], ["-verify_ip", "192.168.10.200"]):
        hello = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.tls}", "-CAfile",
                                str(broker.ca), "-verify_return_error", *check], input="", capture_output=True,
                               text=True, timeout=20, check=False)
        assert hello.returncode == 0 and "Verify return code: 0 (ok)" in hello.stdout, hello.stdout[-500:]
    wrong = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.tls}", "-CAfile", str(broker.ca),
                            "-verify_return_error", "-verify_hostname", "example.org"], input="",
                           capture_output=True, text=True, timeout=20, check=False)
    assert wrong.returncode != 0
    # Plain MQTT on the TLS port, and a client trusting another CA: no session.
    plain = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.tls), "-u", "esphome", "-P",
                            broker.passwords["esphome"], "-t", "devices/esphome/x", "-m", "1"],
                           capture_output=True, text=True, timeout=20, check=False)
    assert plain.returncode != 0
    stranger = broker.pub("esphome", "devices/esphome/x", "1", tls=True, cafile=broker.other_ca)
    assert stranger.returncode != 0
    # TLS does not bypass the login.
    assert broker.pub(None, "devices/esphome/x", "1", tls=True).returncode != 0


def test_the_ca_certifies_only_the_house(broker: Broker, tmp_path: Path) -> None:
    """The CA's name constraints: a certificate for a public name, signed with a copy of its key,
    fails verification; the broker's own certificate passes."""
    ca = broker.tmp / "tls" / "ca.crt"
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(broker.tmp / "tls" / "tls.crt")],
                        capture_output=True, text=True, timeout=20, check=False)
    assert ok.returncode == 0, ok.stderr
    _key, bad = _leaf(tmp_path, broker.tmp / "ca.key", ca, "bank", ["www.example-bank.com"], [])
    refused = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(bad)], capture_output=True, text=True,
                             timeout=20, check=False)
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr


@pytest.mark.parametrize(("plaintext", "pods", "lan"), [("cluster", [1883, 8883], [8883]),
                                                         ("lan", [1883, 8883], [1883, 8883]),
                                                         ("off", [8883], [8883])])
def test_plaintext_setting_decides_where_1883_is_open(tmp_path: Path, plaintext: str, pods: list[int],
                                                      lan: list[int]) -> None:
    yaml = make_yaml()
    data = yaml.load(HOME.read_text())
    data["apps"]["mosquitto"]["plaintext"] = plaintext
    dest = tmp_path / "cluster.yaml"
    with dest.open("w") as fh:
        yaml.dump(data, fh)
    result = validate_document(load_file(dest))
    assert result.cluster is not None
    docs = _rendered(result.cluster)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert [p["port"] for p in services["mosquitto"]["spec"]["ports"]] == pods
    assert [p["port"] for p in services["mosquitto-lan"]["spec"]["ports"]] == lan
    conf = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["mosquitto.conf"]
    assert ("listener 1883" in conf.splitlines()) is (plaintext != "off")
    # Without a plain listener the bridges connect with TLS, trusting only the CA (not the broker's key).
    comp = next(c for c in workloads.components(result.cluster) if c.name == "zigbee2mqtt")
    sts = next(f for f in comp.files if str(f.path) == "statefulset-house.yaml")
    spec = SAFE.load(render_file(sts, {"cluster": result.cluster}, "x"))["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    if plaintext == "off":
        assert env["ZIGBEE2MQTT_CONFIG_MQTT_SERVER"] == "mqtts://mosquitto.home-automation.svc:8883"
        assert env["ZIGBEE2MQTT_CONFIG_MQTT_CA"] == "/mqtt-tls/ca.crt"
        tls = next(v for v in spec["volumes"] if v["name"] == "mqtt-tls")
        assert tls["secret"] == {"secretName": "mosquitto-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    else:
        assert env["ZIGBEE2MQTT_CONFIG_MQTT_SERVER"] == "mqtt://mosquitto.home-automation.svc:1883"
    assert env["ZIGBEE2MQTT_CONFIG_FRONTEND_URL"] == "https://zigbee2mqtt-house.home.arpa"
