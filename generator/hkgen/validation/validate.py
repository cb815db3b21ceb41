"""Stage 2, validate: the schema, then the cluster-wide rules a schema cannot say.

Every problem is collected before anything is reported, located at the YAML line and column it
concerns and phrased for a person (with a fix hint where one exists). Warnings (a single point
of failure, for instance) are reported too but do not make the file invalid.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..config.load import Document, PathKey
from ..config.model import Cluster, Node, Satellite, build_model
from ..core.errors import Problem, shown

__all__ = ["BOARD_MEMORY", "STARTER_SSH_KEY", "Validation", "starter_placeholders", "validate_document"]

_IPV4 = "((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# Human names for the schema's patterns, so a message says what was expected.
_PATTERN_NAMES = {
    f"^{_LABEL}$": "a lowercase name of letters, digits and '-' (at most 63, no '-' at either end)",
    "^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$": "a lowercase name starting with a letter (letters, digits, '-', at most 32)",
    f"^(?=.{{1,253}}$){_LABEL}(\\.{_LABEL})*$": "a lowercase DNS name like home.arpa",
    "^(UTC|[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){1,2})$": "an IANA time zone like Europe/Berlin",
    "^(C\\.UTF-8|[a-z]{2,3}_[A-Z]{2}\\.UTF-8)$": "a UTF-8 locale like en_US.UTF-8",
    f"^{_IPV4}$": "an IPv4 address like 192.168.10.11",
    f"^{_IPV4}/([0-9]|[12][0-9]|3[0-2])$": "a network like 192.168.10.0/24",
    f"^{_IPV4}-{_IPV4}$": "an address range FIRST-LAST like 192.168.10.200-192.168.10.220",
    "^[a-z_][a-z0-9_-]{0,31}$": "a Linux user name (lowercase, at most 32 characters)",
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "a time of day HH:MM like 03:30",
    "^([0-9a-f]{2}:){5}[0-9a-f]{2}$": "a MAC address like dc:a6:32:01:02:03 (lowercase)",
    "^([0-9*/,-]+ ){4}[0-9*/,-]+$": "a 5-field cron expression like '30 2 * * *'",
    "^[0-9]+(s|m|h)$": "a duration like 10m",
    "^[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,199}$": "a device id as listed in /dev/disk/by-id or /dev/serial/by-id (no '/')",
    "^age1[02-9ac-hj-np-z]{58}$": "an age public key (age1 followed by 58 characters)",
    "^[A-Z]{2}$": "a two-letter country code like DE",
    "^v?[0-9]+(\\.[0-9]+){1,3}([-+.][A-Za-z0-9.]+)?$": "a version like 1.2.3",
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$":
        "a Kubernetes label key like example.com/room",
    "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$":
        "a Kubernetes label value (letters, digits, '-', '_', '.', at most 63)",
    "^[A-Z_][A-Z0-9_]{0,63}$": "an environment variable name like MY_SETTING",
}
_SSH_KEY_PREFIX = "^(ssh-ed25519|"
_FREE_TEXT = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\ufeff]*$"
_YAML11_BOOLS = {"on", "off", "yes", "no", "y", "n", "On", "Off", "Yes", "No", "ON", "OFF", "YES", "NO"}
_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "null"}
BOARD_MEMORY = {"rpi4": {2, 4, 8}, "rpi5": {2, 4, 8, 16}, "cm4": {2, 4, 8}}

# What `hkgen init` writes where only the user knows the value (scaffold.starter_layout). They are
# valid, so a new repository validates and renders, but a Pi flashed with them is unreachable:
# netplan matches the network port by MAC, and nobody holds the placeholder key's private half.
# A well-formed ed25519 public key whose 32 key bytes spell "REPLACE-WITH-YOUR-OWN-PUBLIC-KEY".
STARTER_SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFJFUExBQ0UtV0lUSC1ZT1VSLU9XTi1QVUJMSUMtS0VZ "
                   "replace-with-your-key")
STARTER_MAC_PREFIX = "02:00:00:00:"  # locally administered, never a Raspberry Pi's own
STARTER_MARK = "REPLACE"  # in the starter's disk and device ids
STARTER_REPO_URL = "ssh://git@github.com/your-account/home-ops.git"
# Where a person might paste a credential by mistake: values there are never shown in messages.
_PRIVATE = (("os", "admins", "*", "sshKeys", "*"), ("secrets", "ageRecipients", "*"),
            ("gitops", "repository", "url"), ("storage", "backup", "s3", "endpoint"),
            ("customApps", "*", "env", "*"), ("customApps", "*", "secretEnv", "*"))


@dataclass(frozen=True)
class Validation:
    """Outcome of validating one cluster file."""

    problems: tuple[Problem, ...]
    cluster: Cluster | None

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems that make the file invalid."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """Findings worth a look that do not make the file invalid."""
        return tuple(p for p in self.problems if p.severity == "warning")


def _private(path: PathKey, value: Any) -> bool:
    """True when the value at `path` may be a credential, so messages must not repeat it."""
    for pattern in _PRIVATE:
        if len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path, strict=True)):
            return True
    return isinstance(value, str) and _looks_secret(value)


def _looks_secret(text: str) -> bool:
    return "AGE-SECRET-KEY-" in text.upper() or "PRIVATE KEY" in text.upper()


def _value(path: PathKey, value: Any) -> str:
    """`value` as a message shows it, or a placeholder where it may be a secret."""
    return "(value not shown)" if _private(path, value) and not isinstance(value, dict | list) else shown(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _type_of(value: Any) -> str:
    """The JSON type of `value` in the words of YAML users (mapping, list)."""
    from ..config.schemadoc import json_type

    kind = json_type(value)
    return {"object": "mapping", "array": "list"}.get(kind, kind)


def _suggest(word: str, choices: Iterable[str]) -> str:
    import difflib  # only a problem needs a suggestion

    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {shown(match[0])}?" if match else ""


@cache
def _validator_class() -> Any:
    """Draft-07 with two strictnesses the renderer relies on.

    JSON Schema calls 4.0 an integer and lets 4.0 match `enum: [4]`; templates would then print
    `4.0` where a port or a size belongs. Here an integer is an int, and an enum member matches
    only a value of its own type.
    """
    from jsonschema import Draft7Validator, ValidationError, validators

    def is_integer(_checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    def strict_enum(_validator: Any, enums: Any, instance: Any, _schema: Any) -> Iterator[Any]:
        if not any(type(instance) is type(e) and instance == e for e in enums):
            yield ValidationError(f"{instance!r} is not one of {enums!r}")

    checker = Draft7Validator.TYPE_CHECKER.redefine("integer", is_integer)
    return validators.extend(  # type: ignore[no-untyped-call]  # jsonschema leaves extend() unannotated
        Draft7Validator, validators={"enum": strict_enum}, type_checker=checker)


def _schema_problems(doc: Document, schema: dict[str, Any]) -> Iterator[Problem]:
    from jsonschema import Draft7Validator

    validator = _validator_class()(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    for err in validator.iter_errors(doc.data):
        path: PathKey = tuple(err.absolute_path)
        yield from _translate(doc, err, path)


def _translate(doc: Document, err: Any, path: PathKey) -> Iterator[Problem]:
    kind, sub, value = err.validator, err.schema, err.instance
    if "propertyNames" in err.relative_schema_path:
        # The error is about a key of the mapping at `path`, not about a value.
        what = _PATTERN_NAMES.get(sub.get("pattern", ""), "")
        message = f"key {shown(value)} is not allowed here"
        if kind == "pattern":
            message = f"key {shown(value)} does not match the expected form"
        elif kind == "maxLength":
            message = f"key {shown(value)} is longer than {err.validator_value} characters"
        yield doc.problem((*path, value), message, f"expected {what}" if what else _described(sub.get("pattern", "")),
                          key=True)
        return
    if kind == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        for key in extra:
            hint = _suggest(key, allowed) or (f"allowed keys: {', '.join(allowed)}" if allowed else "")
            yield doc.problem((*path, key), f"unknown key {shown(key)}", hint, key=True)
        return
    if kind == "required":
        for key in err.validator_value:
            if isinstance(value, dict) and key not in value:
                yield doc.problem(path, f"missing required key {shown(key)}", key=True)
        return
    if kind == "type":
        expected = sub["type"] if isinstance(sub["type"], list) else [sub["type"]]
        want = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in expected)
        got = _type_of(value)
        message = f"expected {want}, got {got}"
        if not isinstance(value, dict | list) and value is not None:
            message += f" {_value(path, value)}"
        hint = ""
        if "boolean" in expected and value in _YAML11_BOOLS:
            hint = "write true or false; on/off/yes/no are plain strings in YAML 1.2"
        elif "integer" in expected and isinstance(value, float) and value.is_integer():
            hint = f"write {int(value)} without a decimal point"
        elif ("integer" in expected or "number" in expected) and isinstance(value, str) and _numeric(value):
            hint = "write it without quotes: it is a number"
        elif "string" in expected and isinstance(value, int | float) and not isinstance(value, bool):
            hint = "quote the value"
        elif "string" in expected and isinstance(value, bool):
            hint = "quote the value ('true' and 'false' are booleans)"
        yield doc.problem(path, message, hint)
        return
    if kind == "enum":
        options = ", ".join(shown(o) for o in sub["enum"])
        hint = ""
        if isinstance(value, float) and value.is_integer() and int(value) in sub["enum"]:
            hint = f"write {int(value)} without a decimal point"
        elif isinstance(value, str) and any(not isinstance(o, str) and str(o) == value for o in sub["enum"]):
            hint = "write it without quotes: it is a number"
        elif not isinstance(value, str | bool) and any(isinstance(o, str) and o == str(value) for o in sub["enum"]):
            hint = f"quote it: '{value}' (unquoted it is a number)"
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            hint = _suggest(str(value), [str(o) for o in sub["enum"]])
            if value in _YAML11_BOOLS and any(isinstance(o, bool) for o in sub["enum"]):
                hint = "write true or false; on/off/yes/no are plain strings in YAML 1.2"
        yield doc.problem(path, f"{_value(path, value)} is not one of {options}", hint)
        return
    if kind == "const":
        current = sub["const"]
        if path == ("version",) and isinstance(value, int) and not isinstance(value, bool) and value != current:
            if value < current:
                yield doc.problem(path, f"format {value} is older than the format {current} this hkgen reads",
                                  f"upgrade the file in place, keeping its comments: hkgen migrate {doc.file}")
            else:
                yield doc.problem(path, f"format {value} is newer than the format {current} this hkgen reads",
                                  "upgrade hkgen")
            return
        yield doc.problem(path, f"must be {shown(current)}, got {_value(path, value)}")
        return
    if kind == "pattern":
        yield _pattern_problem(doc, path, sub, value)
        return
    if kind == "format":
        yield doc.problem(path, f"{_value(path, value)} is not a valid {sub['format']} value")
        return
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = "at least" if "inimum" in kind else "at most"
        yield doc.problem(path, f"{_value(path, value)} is out of range: must be {word} {err.validator_value}")
        return
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        yield doc.problem(path, f"needs {word} {err.validator_value} item(s), has {len(value)}")
        return
    if kind in ("minLength", "maxLength"):
        word = "at least" if kind == "minLength" else "at most"
        yield doc.problem(path, f"must be {word} {err.validator_value} character(s) long, is {len(value)}")
        return
    if kind in ("maxProperties", "minProperties"):
        word = "at least" if kind == "minProperties" else "at most"
        yield doc.problem(path, f"needs {word} {err.validator_value} key(s), has {len(value)}")
        return
    if kind == "uniqueItems":
        seen: set[str] = set()
        for i, item in enumerate(value):
            marker = repr(item)
            if marker in seen:
                yield doc.problem((*path, i), f"duplicate item {_value((*path, i), item)}")
            seen.add(marker)
        return
    # A keyword this translation does not know yet: name it, never echo jsonschema's message
    # (it embeds the whole value, which may be huge or private).
    yield doc.problem(path, f"does not satisfy the schema's {shown(str(kind))} rule")


def _described(pattern: str) -> str:
    """The schema reference's words for a pattern this module has no sentence of its own for."""
    from ..config.schemadoc import PATTERNS

    return f"expected {PATTERNS[pattern]}" if pattern in PATTERNS else ""


def _pattern_problem(doc: Document, path: PathKey, sub: dict[str, Any], value: Any) -> Problem:
    pattern = sub["pattern"]
    if pattern == _FREE_TEXT:
        return doc.problem(path, "text contains a control character or line break",
                           "keep free text on one line, printable characters only")
    if isinstance(value, str) and _looks_secret(value):
        return doc.problem(path, "this looks like a private key: it must never be in cluster.yaml",
                           "remove it now; if it was ever committed, treat the key as leaked and replace it")
    what = _PATTERN_NAMES.get(pattern, "")
    if pattern.startswith(_SSH_KEY_PREFIX):
        what = "an OpenSSH public key line like 'ssh-ed25519 AAAA... user@host'"
    if _private(path, value):
        # Say what was expected without repeating what was written.
        message = f"not {what}" if what else "does not match the expected form (value not shown)"
    else:
        message = f"{shown(value)} is not {what}" if what else f"{shown(value)} does not match the expected form"
    hint = "" if what else _described(pattern)
    if isinstance(value, str) and not hint:
        if pattern.startswith("^([0-9a-f]{2}:)") and value.lower() != value:
            hint = f"write it in lowercase: {shown(value.lower())}"
        elif value != value.lower() and "a-z" in pattern and "A-Z" not in pattern:
            hint = "use lowercase letters"
        elif "/" in value and pattern in (f"^{_LABEL}$", "^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$"):
            hint = "a name is one path segment: no '/'"
    return doc.problem(path, message, hint)


# --- semantic checks ------------------------------------------------------------------------


class _Checks:
    """Cluster-wide rules over the defaulted data; `data` paths map straight to source lines."""

    def __init__(self, doc: Document, data: dict[str, Any], cluster: Cluster) -> None:
        self.doc, self.data, self.c = doc, data, cluster
        self.out: list[Problem] = []

    def err(self, path: PathKey, message: str, hint: str = "", *, key: bool = False) -> None:
        self.out.append(self.doc.problem(path, message, hint=hint, key=key))

    def warn(self, path: PathKey, message: str, hint: str = "", *, key: bool = False) -> None:
        self.out.append(self.doc.problem(path, message, hint=hint, key=key, severity="warning"))

    def run(self) -> list[Problem]:
        """Run every rule; return the problems found."""
        self.topology()
        self.boards()
        self.uniqueness()
        self.network()
        self.storage()
        self.devices()
        self.zigbee()
        self.apps()
        self.capacity()
        self.timezone()
        self.credentials()
        self.seeds()
        self.survival()
        for path, message, hint in starter_placeholders(self.c):
            self.warn(path, message, hint)
        from .deprecated import deprecated_keys

        for path, message, hint in deprecated_keys(self.doc.data):
            self.warn(path, message, hint, key=True)
        return self.out

    def seeds(self) -> None:
        """Rules of the node seeds (reboot windows, MicroK8s launch-config format), located here too."""
        import re

        from ..areas.seeds import seed_problems

        for problem in seed_problems(self.c):
            path: list[str | int] = []
            for name, index in re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", problem.path):
                path.append(int(index) if index else name)
            (self.warn if problem.severity == "warning" else self.err)(tuple(path), problem.message, problem.hint)

    def survival(self) -> None:
        """topology: ha must survive any one node (the plan's verdict); Wi-Fi nodes need a longer grace."""
        from ..analysis.verdict import survival_problems, wifi_grace_problems

        if any(p.severity == "error" for p in self.out):
            return  # the planner needs a model that is otherwise sound
        for path, message, hint in survival_problems(self.c):
            self.err(path, message, hint, key=True)
        for path, message, hint in wifi_grace_problems(self.c):
            self.warn(path, message, hint)

    def topology(self) -> None:
        cps = self.c.control_planes
        single = self.c.topology == "single-node"
        if not cps:
            self.err(("nodes",), "no control-plane node",
                     "give one node role: control-plane (three for HA)", key=True)
            return
        if single:
            if len(self.c.nodes) > 1:
                self.err(("cluster", "topology"),
                         f"topology single-node declares one node, but {len(self.c.nodes)} are listed",
                         "set topology: ha and list three control planes")
            elif self.c.replicas > 1:
                self.err(("storage", "longhorn", "replicas"),
                         f"a single-node cluster can hold only 1 replica, not {self.c.replicas}",
                         "set storage.longhorn.replicas: 1")
            return
        if len(cps) == 1:
            self.err(("nodes", cps[0].index, "role"), "only one control plane in an HA cluster",
                     "add two more control planes, or declare cluster.topology: single-node")
        elif len(cps) == 2:
            self.err(("nodes", cps[1].index, "role"),
                     "two control planes cannot keep quorum: losing either one stops the cluster",
                     "add a third control plane (dqlite needs three voters)")
        if self.c.replicas == 1:
            self.err(("storage", "longhorn", "replicas"),
                     "volumes with one replica are lost with their node",
                     "set storage.longhorn.replicas to 2 or 3")

    def boards(self) -> None:
        for node in self.c.nodes:
            allowed = BOARD_MEMORY[node.board]
            if node.memory_gib not in allowed:
                *most, largest = [str(m) for m in sorted(allowed)]
                self.err(("nodes", node.index, "memoryGiB"),
                         f"{node.board} boards come with {', '.join(most)} or {largest} GiB, not {node.memory_gib}")
            if node.link == "wifi" and node.wifi is None:
                self.err(("nodes", node.index, "link"), "link is wifi but no wifi settings are given",
                         "add wifi: {ssid: ..., country: ..}")
        for sat in self.c.satellites:
            if sat.link == "wifi" and sat.wifi is None:
                self.err(("satellites", sat.index, "link"), "link is wifi but no wifi settings are given",
                         "add wifi: {ssid: ..., country: ..}")

    def uniqueness(self) -> None:
        seen_names: dict[str, PathKey] = {}
        seen_ips: dict[str, str] = {self.c.gateway: "the gateway"}
        seen_macs: dict[str, str] = {}
        hosts: list[tuple[str, int, str, str, str]] = [
            ("nodes", n.index, n.hostname, n.ip, n.mac) for n in self.c.nodes
        ] + [("satellites", s.index, s.hostname, s.ip, s.mac) for s in self.c.satellites]
        for section, idx, host, ip, mac in hosts:
            label = f"{host}"
            if host in seen_names:
                first = seen_names[host]
                self.err((section, idx, "hostname"), f"host name '{host}' is used twice",
                         f"first used at line {self.doc.where(first)[0]}")
            else:
                seen_names[host] = (section, idx, "hostname")
            if ip in seen_ips:
                self.err((section, idx, "ip"), f"address {ip} is already used by {seen_ips[ip]}")
            else:
                seen_ips[ip] = label
            if mac in seen_macs:
                self.err((section, idx, "mac"), f"MAC address {mac} is already used by {seen_macs[mac]}")
            else:
                seen_macs[mac] = label
        for net in self.c.zigbee:
            if net.host and net.host in seen_ips:
                self.err(("zigbee", "networks", net.index, "coordinator", "host"),
                         f"address {net.host} is already used by {seen_ips[net.host]}")
        names: dict[str, int] = {}
        for net in self.c.zigbee:
            if net.name in names:
                self.err(("zigbee", "networks", net.index, "name"), f"Zigbee network name '{net.name}' is used twice")
            names.setdefault(net.name, net.index)
        topics: dict[str, str] = {}
        for net in self.c.zigbee:
            # Two networks of one name share the default topic too: that is reported once, above.
            if net.base_topic in topics and topics[net.base_topic] != net.name:
                self.err(("zigbee", "networks", net.index, "baseTopic"),
                         f"MQTT base topic '{net.base_topic}' is already used by Zigbee network "
                         f"'{topics[net.base_topic]}'", "give each network a topic of its own")
            topics.setdefault(net.base_topic, net.name)
        catalogue = {a.name for a in self.c.apps}
        platform = self._platform_names() if self.c.custom_apps else set()
        custom_seen: dict[str, int] = {}
        for i, app in enumerate(self.c.custom_apps):
            if app.name in catalogue:
                self.err(("customApps", i, "name"), f"app name '{app.name}' is already taken by the catalogue app",
                         "give the custom app another name")
            elif app.name in platform:
                self.err(("customApps", i, "name"), f"app name '{app.name}' is already taken by a platform component",
                         "give the custom app another name")
            elif app.name in custom_seen:
                self.err(("customApps", i, "name"),
                         f"app name '{app.name}' is already taken by customApps[{custom_seen[app.name]}]")
            custom_seen.setdefault(app.name, i)
        addons: set[str] = set()
        for i, (name, _args) in enumerate(self.c.addons):
            if name in addons:
                self.err(("microk8s", "addons", i, "name"), f"addon '{name}' is listed twice")
            addons.add(name)

    def _platform_names(self) -> set[str]:
        # The planner refuses two components of one name; say so here, at the custom app's name.
        from ..areas.platform import components
        from ..core.errors import HkgenError

        try:
            return {component.name for component in components(self.c)}
        except HkgenError:
            return set()  # the planner reports its own problem when the tree is rendered

    def _net(self, path: PathKey, text: str) -> ipaddress.IPv4Network | None:
        try:
            return ipaddress.IPv4Network(text)
        except ValueError:
            fixed = ipaddress.IPv4Network(text, strict=False)
            self.err(path, f"{text} has host bits set", f"did you mean {fixed}?")
            return None

    def network(self) -> None:
        lan = self._net(("network", "lan"), self.c.lan)
        pod = self._net(("network", "podCidr"), self.c.pod_cidr)
        svc = self._net(("network", "serviceCidr"), self.c.service_cidr)
        ranges = [("LAN", ("network", "lan"), lan), ("pod network", ("network", "podCidr"), pod),
                  ("service network", ("network", "serviceCidr"), svc)]
        for i, (name_a, _pa, a) in enumerate(ranges):
            for name_b, path_b, b in ranges[i + 1:]:
                if a is not None and b is not None and a.overlaps(b):
                    self.err(path_b, f"the {name_b} {b} overlaps the {name_a} {a}",
                             "pick a range that overlaps neither "
                             "(MicroK8s defaults: pods 10.1.0.0/16, services 10.152.183.0/24)")
        if lan is None:
            return

        def in_lan(path: PathKey, ip: str, what: str) -> None:
            addr = ipaddress.IPv4Address(ip)
            if addr not in lan:
                self.err(path, f"{what} {ip} is outside the LAN {lan}")
            elif addr in (lan.network_address, lan.broadcast_address) and lan.prefixlen < 31:
                which = "network" if addr == lan.network_address else "broadcast"
                self.err(path, f"{what} {ip} is the LAN's {which} address", "pick a host address inside the LAN")

        in_lan(("network", "gateway"), self.c.gateway, "gateway")
        for n in self.c.nodes:
            in_lan(("nodes", n.index, "ip"), n.ip, "address")
        for s in self.c.satellites:
            in_lan(("satellites", s.index, "ip"), s.ip, "address")
        first, last = (ipaddress.IPv4Address(x) for x in self.c.lb_pool)
        pool_path: PathKey = ("network", "loadBalancerPool")
        if first > last:
            self.err(pool_path, f"the pool starts at {first} but ends before it, at {last}")
            return
        if first not in lan or last not in lan:
            self.err(pool_path, f"the load-balancer pool {first}-{last} is not inside the LAN {lan}")
            return
        if lan.prefixlen < 31:
            for addr, which in ((lan.network_address, "network"), (lan.broadcast_address, "broadcast")):
                if first <= addr <= last:
                    self.err(pool_path, f"the load-balancer pool holds the LAN's {which} address {addr}",
                             "MetalLB would hand it out; keep the pool to host addresses")
        taken = [(self.c.gateway, "the gateway")] + [(n.ip, n.hostname) for n in self.c.nodes] + \
                [(s.ip, s.hostname) for s in self.c.satellites] + [(d, "a DNS server") for d in self.c.dns]
        for ip, who in taken:
            if first <= ipaddress.IPv4Address(ip) <= last:
                self.err(pool_path, f"the load-balancer pool holds {ip}, used by {who}",
                         "move the pool to addresses nothing else uses (and exclude them from DHCP)")

    def storage(self) -> None:
        storage_nodes = self.c.storage_nodes
        if not any(n.schedulable for n in storage_nodes):
            self.err(("nodes",), "no schedulable node has a disk for Longhorn",
                     "give at least one schedulable node a disk under disks:", key=True)
        if self.c.topology == "ha" and self.c.replicas > len(storage_nodes):
            self.err(("storage", "longhorn", "replicas"),
                     f"{self.c.replicas} replicas need {self.c.replicas} storage nodes, "
                     f"but only {len(storage_nodes)} node(s) have disks",
                     f"lower replicas to {max(len(storage_nodes), 1)} or add disks to more nodes")
        seen: dict[str, str] = {}
        for node in self.c.nodes:
            for j, disk in enumerate(node.disks):
                if disk.id in seen:
                    self.err(("nodes", node.index, "disks", j, "id"),
                             f"disk {shown(disk.id)} is already listed on {seen[disk.id]}")
                seen.setdefault(disk.id, node.hostname)

    def devices(self) -> None:
        for node in self.c.nodes:
            usb_names: set[str] = set()
            for j, usb in enumerate(node.usb_devices):
                if usb.name in usb_names:
                    self.err(("nodes", node.index, "usbDevices", j, "name"),
                             f"device name '{usb.name}' is used twice on {node.hostname}")
                usb_names.add(usb.name)
        for sat in self.c.satellites:
            serial_names: set[str] = set()
            ports: set[int] = set()
            for j, serial in enumerate(sat.serial_devices):
                base = ("satellites", sat.index, "serialDevices", j)
                if serial.name in serial_names:
                    self.err((*base, "name"), f"device name '{serial.name}' is used twice on {sat.hostname}")
                if serial.port in ports:
                    self.err((*base, "port"), f"port {serial.port} is used twice on {sat.hostname}",
                             "each served device needs a TCP port of its own")
                serial_names.add(serial.name)
                ports.add(serial.port)

    def zigbee(self) -> None:
        used: dict[tuple[str, str], str] = {}
        nodes = {n.hostname: n for n in reversed(self.c.nodes)}  # a duplicate name: the first one counts
        sats = {s.hostname: s for s in reversed(self.c.satellites)}
        for net in self.c.zigbee:
            base: PathKey = ("zigbee", "networks", net.index, "coordinator")
            given = [k for k in ("node", "satellite", "host") if getattr(net, k) is not None]
            if len(given) != 1:
                self.err(base, "say where the coordinator is with exactly one of node, satellite or host"
                         + (f" (found {', '.join(given)})" if given else ""), key=True)
                continue
            where = given[0]
            if where == "host":
                if net.port is None:
                    self.err(base, "a network coordinator needs a port", "add port: 6638", key=True)
                if net.device is not None:
                    self.err((*base, "device"), "device belongs with node or satellite, not host", key=True)
                continue
            if net.port is not None:
                self.err((*base, "port"), "port belongs with host; a satellite's port is set on the satellite",
                         key=True)
            if net.device is None:
                self.err(base, f"name the device on the {where}",
                         "add device: <name from usbDevices/serialDevices>", key=True)
                continue
            owner = net.node if where == "node" else net.satellite
            if owner is None:  # unreachable: `where` names a field that is set
                continue
            if where == "node":
                if owner not in nodes:
                    self.err((*base, "node"), f"no node called '{owner}'", _suggest(owner, nodes))
                    continue
                devices = {d.name: d for d in nodes[owner].usb_devices}
                if net.device not in devices:
                    self.err((*base, "device"), f"node {owner} has no USB device called '{net.device}'",
                             _suggest(net.device, devices) or f"add it under nodes[{nodes[owner].index}].usbDevices")
                    continue
                if devices[net.device].kind != "zigbee":
                    self.err((*base, "device"),
                             f"device '{net.device}' on {owner} is a {devices[net.device].kind} device, not zigbee")
                    continue
                self.warn(base,
                          f"zigbee2mqtt-{net.name} is pinned to {owner} by its USB coordinator: "
                          f"if {owner} fails, this Zigbee network stays down until it is back",
                          "move the stick to a satellite Pi or use a network coordinator", key=True)
            else:
                if owner not in sats:
                    self.err((*base, "satellite"), f"no satellite called '{owner}'", _suggest(owner, sats))
                    continue
                serial = {d.name for d in sats[owner].serial_devices}
                if net.device not in serial:
                    self.err((*base, "device"), f"satellite {owner} serves no device called '{net.device}'",
                             _suggest(net.device, serial))
                    continue
            key = (owner, net.device)
            if key in used:
                self.err((*base, "device"),
                         f"device '{net.device}' on {owner} is already the coordinator of Zigbee network '{used[key]}'",
                         "a stick can coordinate one network only")
            used.setdefault(key, net.name)

    def apps(self) -> None:
        first, last = (ipaddress.IPv4Address(x) for x in self.c.lb_pool)
        fixed: dict[str, str] = {}
        wanted: list[tuple[PathKey, str, str]] = [
            (("network", "ingressIP"), self.c.ingress_ip, "the ingress controller")]
        mosq = self.c.app("mosquitto")
        if mosq is not None:
            wanted.append((("apps", "mosquitto", "loadBalancerIP"), mosq.settings["loadBalancerIP"], "mosquitto"))
        if self.c.dns_server_ip is not None:
            wanted.append((("network", "dnsServerIP"), self.c.dns_server_ip, "the DNS server"))
        from .lan import tls_problems  # ACME settings, logins, MQTT access of unknown users

        for path, message, hint in tls_problems(self.c):
            self.err(path, message, hint)
        for i, custom in enumerate(self.c.custom_apps):
            if custom.load_balancer_ip is None:
                continue
            if custom.expose != "loadBalancer":
                self.err(("customApps", i, "loadBalancerIP"), f"{custom.name} is exposed as '{custom.expose}': only "
                         "an app with expose: loadBalancer gets a LAN address", "set expose: loadBalancer, or remove "
                         "loadBalancerIP")
                continue
            wanted.append((("customApps", i, "loadBalancerIP"), custom.load_balancer_ip, custom.name))
        for path, ip, who in wanted:
            if first > last:
                break  # the pool itself is reported; every address would be "outside" it
            if not first <= ipaddress.IPv4Address(ip) <= last:
                self.err(path, f"{ip} is outside the load-balancer pool {first}-{last}",
                         "MetalLB hands out only addresses from network.loadBalancerPool")
            elif ip in fixed:
                self.err(path, f"{ip} is already the address of {fixed[ip]}")
            fixed.setdefault(ip, who)
        from ..config.catalogue import load_catalogue

        catalogue = load_catalogue()
        web = [a.name for a in self.c.apps if a.enabled and dict(catalogue[a.name].expose).get("host")]
        web += [c.name for c in self.c.custom_apps if c.expose == "ingress"]
        if web and "ingress" not in {name for name, _ in self.c.addons}:
            self.err(("microk8s", "addons"), f"{', '.join(web)} {'is' if len(web) == 1 else 'are'} served through "
                     "an ingress, but the ingress addon is not enabled", "add - name: ingress", key=True)
        z2m = self.c.app("zigbee2mqtt")
        if z2m is not None and not self.c.zigbee:
            self.err(("apps", "zigbee2mqtt", "enabled"), "zigbee2mqtt is enabled but no Zigbee network is declared",
                     "add zigbee.networks, or set enabled: false")
        needs_mqtt = [a.name for a in self.c.apps if a.enabled and a.name in ("zigbee2mqtt",)]
        if needs_mqtt and mosq is None:
            self.err(("apps",), f"{', '.join(needs_mqtt)} needs mosquitto, which is not enabled", key=True)
        ha = self.c.app("home-assistant")
        if ha is not None and ha.settings.get("recorder") == "postgres" and self.c.app("grafana") is None:
            pass  # the recorder database gets a CloudNativePG cluster of its own; no dependency on grafana
        needs_backup = [a.name for a in self.c.apps
                        if a.enabled and a.name == "monitoring" and a.settings.get("thanos")]
        if needs_backup and self.c.backup is None:
            self.err(("apps", "monitoring", "thanos"), "Thanos needs an object store: storage.backup.s3 is not set",
                     "configure storage.backup, or set thanos: false")

    def capacity(self) -> None:
        from ..analysis.capacity import all_workloads, allocatable_mib, platform_memory_mib

        schedulable = self.c.schedulable_nodes
        if not schedulable:
            self.err(("nodes",), "no schedulable node: every node is tainted NoSchedule", key=True)
            return
        workloads = all_workloads(self.c)
        need = platform_memory_mib(self.c) + sum(w.memory_mib * w.replicas for w in workloads)
        have = sum(allocatable_mib(n) for n in schedulable)
        if need > have:
            self.err(("apps",), f"enabled apps and the platform request {need} MiB of memory, but the schedulable "
                     f"nodes offer {have} MiB", "disable an app, lower memoryMiB settings or add a node", key=True)
        biggest = max(allocatable_mib(n) for n in schedulable)
        custom = {c.name: i for i, c in enumerate(self.c.custom_apps)}
        for w in workloads:
            if w.memory_mib > biggest:
                path: PathKey = ("customApps", custom[w.app], "memoryMiB") if w.app in custom else ("apps", w.app)
                self.err(path, f"{w.name} requests {w.memory_mib} MiB, more than any node can give ({biggest} MiB)",
                         "lower its memoryMiB or add a node with more memory", key=w.app not in custom)

    def machine(self) -> list[Problem]:
        """The rules that read this machine rather than the file (the tz database): run alone."""
        self.timezone()
        return self.out

    def timezone(self) -> None:
        import zoneinfo

        tz = self.c.timezone
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a name that is a folder of the tz database (America/Argentina).
            self.err(("cluster", "timezone"), f"unknown time zone '{tz}'",
                     _suggest(tz, zoneinfo.available_timezones()))

    def credentials(self) -> None:
        # A token in a clone URL would be copied into the rendered tree (and so into Git).
        from urllib.parse import urlsplit

        for path, url in ((("gitops", "repository", "url"), self.c.repo_url),):
            try:
                parts = urlsplit(url)
            except ValueError:
                continue
            user = parts.username
            if parts.password is not None or (parts.scheme == "https" and user is not None):
                self.err(path, "the URL carries credentials; they would be written into the rendered tree",
                         "use ssh://git@host/... with a deploy key, or an https URL without user and token")


def starter_placeholders(cluster: Cluster) -> list[tuple[PathKey, str, str]]:
    """(path, message, hint) of each value `hkgen init` left for the user to replace."""
    found: list[tuple[PathKey, str, str]] = []
    if cluster.repo_url == STARTER_REPO_URL:
        found.append((("gitops", "repository", "url"), "the starter's placeholder repository: the GitOps engine "
                      "would pull the cluster from a repository that is not yours",
                      "put the URL the engine clones this repository from (`git remote get-url origin`)"))
    key_material = STARTER_SSH_KEY.split()[1]
    for i, admin in enumerate(cluster.admins):
        for j, key in enumerate(admin.ssh_keys):
            if key.split()[1:2] == [key_material]:
                found.append((("os", "admins", i, "sshKeys", j), "the starter's placeholder key: nobody can log in "
                              "to the Pis with it", "put your own public key here (e.g. ~/.ssh/id_ed25519.pub)"))
    # (section, host, [(field, index, device id)]) of every node and satellite.
    hosts: list[tuple[str, Node | Satellite, list[tuple[str, int, str]]]] = [
        ("nodes", n, [("disks", j, d.id) for j, d in enumerate(n.disks)]
         + [("usbDevices", j, u.id) for j, u in enumerate(n.usb_devices)]) for n in cluster.nodes]
    hosts += [("satellites", s, [("serialDevices", j, d.id) for j, d in enumerate(s.serial_devices)])
              for s in cluster.satellites]
    for section, host, devices in hosts:
        # A wired seed finds its network port by this MAC (a Wi-Fi one does not use it).
        if host.mac.lower().startswith(STARTER_MAC_PREFIX) and host.wifi is None:
            found.append(((section, host.index, "mac"), f"the starter's placeholder MAC address: {host.hostname} would "
                          "not configure its network port and stay unreachable",
                          "read the real one on the Pi (cat /sys/class/net/eth0/address) or from your router"))
        for field_name, j, device_id in devices:
            if STARTER_MARK in device_id:
                folder = "/dev/disk/by-id/" if field_name == "disks" else "/dev/serial/by-id/"
                found.append(((section, host.index, field_name, j, "id"), f"the starter's placeholder device id: "
                              f"{host.hostname} would not find this device",
                              f"use its name under {folder}, as `ls {folder}` on the Pi shows it"))
    return found


def validate_document(doc: Document) -> Validation:
    """Schema-check `doc`, then (if it is well-formed) build the model and run the semantic checks."""
    from ..config.schema import apply_defaults, cluster_schema, default_versions

    schema = cluster_schema()
    if not isinstance(doc.data, dict):
        return Validation((doc.problem((), f"expected a mapping at the top level, got {_type_of(doc.data)}"),), None)
    from .verdict import known_clean, record_clean, schema_key

    key = schema_key(doc.data, schema)
    clean = known_clean(key)
    problems = [] if clean else list(_schema_problems(doc, schema))
    if problems:
        return Validation(tuple(sorted(set(problems))), None)
    if not clean:
        record_clean(key)
    data = apply_defaults(doc.data)
    # The catalogue's apps are the schema's `apps` keys (the composed schema has one per app).
    cluster = build_model(data, doc.file, default_versions(), list(schema["properties"]["apps"]["properties"]))
    from .checkcache import checked  # the rules' findings on an unchanged file are not sought again

    problems = checked(doc, data, _Checks(doc, data, cluster).run, lambda: _Checks(doc, data, cluster).machine())
    valid = not any(p.severity == "error" for p in problems)
    return Validation(tuple(sorted(set(problems))), cluster if valid else None)
