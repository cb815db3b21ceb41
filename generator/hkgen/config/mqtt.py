"""Who may do what on the MQTT broker: the users with passwords and each one's topic rights.

Mosquitto denies every topic a user is not granted once an ACL file is configured, so this module
is the whole access policy: Home Assistant gets discovery (`homeassistant/#`), every bridge's base
topic (including `<base>/bridge/request/#`, which can open a Zigbee network to pairing) and every
device's topics; each zigbee2mqtt instance its own base topic and discovery, under a user of its
own (one shared user would let any bridge drive another network); every `mosquitto.users` entry
only the topics it declares (by default `devices/<user>/#`). `$SYS/#` (broker internals: client
counts, versions) is readable only by users marked `monitor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .keys import key_for
from .model import Cluster

__all__ = ["DISCOVERY", "MqttUser", "device_defaults", "mqtt_policy"]

DISCOVERY = "homeassistant"  # Home Assistant's MQTT discovery prefix (its default)
SYS = "$SYS/#"


@dataclass(frozen=True)
class MqttUser:
    """One MQTT user: its name, the secret key of its password, and its topic rights."""

    name: str
    key: str
    readwrite: tuple[str, ...]
    read: tuple[str, ...] = ()
    role: str = "device"  # home-assistant, zigbee2mqtt or device
    instance: str = ""  # the zigbee2mqtt instance (Zigbee network name) of a bridge user


def device_defaults(name: str) -> dict[str, Any]:
    """A device user's rights when cluster.yaml gives only its name."""
    # Reading Home Assistant's birth message tells nothing about the house; devices re-send their
    # discovery when they see it.
    return {"name": name, "topics": [f"devices/{name}/#"], "read": [f"{DISCOVERY}/status"], "monitor": False}


def _devices(cluster: Cluster) -> list[dict[str, Any]]:
    mosq = cluster.app("mosquitto")
    if mosq is None:
        return []
    access = mosq.settings.get("access") or {}
    out = []
    for name in mosq.settings.get("users", []):
        out.append({**device_defaults(name), **dict(access.get(name) or {})})
    return out


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def mqtt_policy(cluster: Cluster) -> list[MqttUser]:
    """Every MQTT user of `cluster` with its rights, in a stable order (apps first, then devices)."""
    devices = _devices(cluster)
    bridges = list(cluster.zigbee) if cluster.app("zigbee2mqtt") else []
    users: list[MqttUser] = []
    if cluster.app("home-assistant"):
        topics = [f"{DISCOVERY}/#", *(f"{net.base_topic}/#" for net in bridges)]
        topics += [t for d in devices for t in d["topics"]]
        users.append(MqttUser("homeassistant", key_for("MQTT_PASSWORD", "homeassistant"), _unique(topics),
                              role="home-assistant"))
    for net in bridges:
        # zigbee2mqtt publishes discovery for its devices and reads the retained discovery topics
        # to remove entries of devices that left; nothing of the other bridges.
        name = f"zigbee2mqtt-{net.name}"
        users.append(MqttUser(name, key_for("MQTT_PASSWORD", name), (f"{net.base_topic}/#", f"{DISCOVERY}/#"),
                              role="zigbee2mqtt", instance=net.name))
    for d in devices:
        read = [*d["read"], *([SYS] if d.get("monitor") else [])]
        users.append(MqttUser(d["name"], key_for("MQTT_PASSWORD", d["name"]), _unique(list(d["topics"])),
                              _unique(read)))
    return users
