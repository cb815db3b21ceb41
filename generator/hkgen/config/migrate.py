"""Config format migrations: upgrade an older cluster.yaml in place, keeping its comments.

Each migration takes the ruamel round-trip document of format N and returns notes on what it
changed; `migrate_text` applies them in order up to `CURRENT`. The file is rewritten through the
same round-trip loader, so comments, key order and quoting survive; the result is validated
before anything is written (by the command), and written atomically.

Format history:
- 1: the first format: one Zigbee coordinator as `zigbee: {adapter, channel, coordinator}`; no
  ingress address.
- 2: several Zigbee networks (`zigbee.networks[]`, each with a name and its own zigbee2mqtt);
  `network.ingressIP` (the LAN address the web UIs are served on) is required.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..core.errors import ConfigError, Problem

__all__ = ["CURRENT", "Migration", "migrate_text"]

CURRENT = 2


@dataclass(frozen=True)
class Migration:
    """Result of migrating one file."""

    text: str
    from_version: int
    to_version: int
    notes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """True when the file was not already current."""
        return self.from_version != self.to_version


def _v1_to_v2(doc: Any) -> list[str]:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    notes: list[str] = []
    zigbee = doc.get("zigbee")
    if isinstance(zigbee, dict) and "networks" not in zigbee:
        # The old mapping becomes the network itself, so its comments stay with its keys.
        cast(Any, zigbee).insert(0, "name", "zigbee")
        networks = CommentedSeq([zigbee])
        new = CommentedMap()
        new["networks"] = networks
        doc["zigbee"] = new
        notes.append("zigbee: the single coordinator became zigbee.networks[0] named 'zigbee' "
                     "(its zigbee2mqtt is now zigbee2mqtt-zigbee; MQTT base topic zigbee2mqtt/zigbee)")
    net = doc.get("network")
    if isinstance(net, dict) and "ingressIP" not in net and isinstance(net.get("loadBalancerPool"), str):
        first, _, last = net["loadBalancerPool"].partition("-")
        taken = set()
        mosquitto = (doc.get("apps") or {}).get("mosquitto") or {}
        if isinstance(mosquitto, dict) and mosquitto.get("loadBalancerIP"):
            taken.add(str(mosquitto["loadBalancerIP"]))
        try:
            start, end = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        except ValueError:
            return notes
        address = start
        while address <= end and str(address) in taken:
            address += 1
        if address <= end:
            keys = list(net)
            position = keys.index("loadBalancerPool") + 1
            cast(Any, net).insert(position, "ingressIP", str(address),
                       comment="added by hkgen migrate: the web UIs' address; check it")
            notes.append(f"network.ingressIP: set to {address}, the first free address of the pool (check it)")
    doc["version"] = 2
    return notes


MIGRATIONS: dict[int, Callable[[Any], list[str]]] = {1: _v1_to_v2}


def migrate_text(text: str, name: str) -> Migration:
    """Migrate the text of a cluster file to the current format (no-op if current)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from .load import load_text

    load_text(text, name)  # the same hostile-input checks as every other command, located
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    try:
        doc = yaml.load(io.StringIO(text))
    except YAMLError as err:  # load_text accepted it, so this is unexpected: still no traceback
        raise ConfigError([Problem(name, 1, 1, "$", f"cannot read the file for migration: {err}")]) from err
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CURRENT:
        raise ConfigError([Problem(name, 1, 1, "$.version",
                                   f"unknown format version {version!r}: this hkgen reads 1 to {CURRENT}")])
    start, notes = version, []
    while version < CURRENT:
        notes += MIGRATIONS[version](doc)
        version += 1
    if start == CURRENT:
        return Migration(text, start, start, ())
    out = io.StringIO()
    yaml.dump(doc, out)
    return Migration(out.getvalue(), start, CURRENT, tuple(notes))
