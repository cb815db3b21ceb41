"""Verification of the Pi seeds: every file a node or satellite boots from, checked before it is written.

* `user-data`: starts with `#cloud-config`, loads cleanly, and is valid against hkgen's own
  cloud-config schema (schemas/cloud-config.schema.json: exactly the modules and keys hkgen's
  seeds emit, unknown keys refused; tests prove it against cloud-init's schema of the pinned
  release, none of whose deprecated keys it allows). Every MicroK8s launch configuration
  it writes (`seeds.is_launch_config`) is valid against schemas/microk8s-launch-config.schema.json,
  which refuses unknown keys (MicroK8s itself only warns about them). A node's seed must write
  /etc/microk8s.yaml before the snap step (not deferred) and install and hold a pinned channel.
* `network-config`: Netplan v2 checked structurally against hkgen's own schema (cloud-init's
  network v2 schema has no `wifis`), plus the rules a schema cannot say (gateway on the LAN).
* `meta-data`: has an instance id and a local host name.
* the kernel command line: one line, with the memory cgroup enabled on cluster nodes.
* secret placeholders `${KEY}` name keys the secrets file holds (`secrets.required_keys`).

Problems are located in the rendered file (`clusters/<name>/nodes/<host>/user-data:LINE:COL`),
with the JSON path of the value; problems inside a launch configuration point at the line of
the user-data that holds it. `hkgen boot-media` runs the same checks on the files it writes.
Compiled validators are cached per process; the cloud-config schema is applied key by key with the
errors of each (key, value) cached, since the seeds of a large cluster share almost every value.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import PurePosixPath
from typing import Any

from ..areas.parts import Blueprint
from ..config.load import Document, PathKey, json_path, load_generated
from ..core.errors import ConfigError, Problem
from ..render.jinja import Rendered
from .tree import Built

__all__ = [
    "SEED_FILES",
    "check",
    "check_seed_file",
    "placeholders",
    "seed_file_kind",
]

SEED_FILES = ("user-data", "network-config", "meta-data", "cmdline.txt")
# Every seed file is checked on its own: verify may give parts of a large tree to two processes.
PER_FILE = True
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
MAX_CMDLINE = 2048  # COMMAND_LINE_SIZE of arm64 kernels


def seed_file_kind(path: PurePosixPath) -> str | None:
    """'user-data', 'network-config', 'meta-data' or 'cmdline.txt' for a seed file of the tree."""
    parts = path.parts
    if len(parts) >= 3 and parts[0] in ("nodes", "satellites") and path.name in SEED_FILES:
        return path.name
    return None


def placeholders(text: str) -> set[str]:
    """Names of the `${KEY}` secret placeholders in `text`."""
    return set(PLACEHOLDER.findall(text))


# --- validators (compiled once) --------------------------------------------------------------


def _schema(name: str) -> dict[str, Any]:
    from ..core.resources import data_dir

    loaded: dict[str, Any] = json.loads((data_dir("schemas") / name).read_text("utf-8"))
    return loaded


CLOUD_CONFIG_SCHEMA = "cloud-config.schema.json"
NETWORK_CONFIG_SCHEMA = "network-config.schema.json"


@cache
def _cloud_config_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema(CLOUD_CONFIG_SCHEMA), format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _launch_config_validator() -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(_schema("microk8s-launch-config.schema.json"))


@cache
def _network_validator() -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(_schema(NETWORK_CONFIG_SCHEMA))


# --- schema errors -> located problems ------------------------------------------------------------


def _specific(err: Any) -> Any:
    """The most telling error of a oneOf/anyOf failure (cloud-init's schema nests many).

    Branches the value cannot be meant for (it fails their type right at the top) are dropped,
    so `users: [{..., lock-passwd: true}]` reports the deprecated key, not "is not a string".
    """
    from jsonschema.exceptions import best_match

    while err.context:
        branches: dict[Any, list[Any]] = {}
        for inner in err.context:
            branches.setdefault(inner.relative_schema_path[0] if inner.relative_schema_path else None, []).append(inner)
        viable = [errs for errs in branches.values()
                  if not any(e.validator == "type" and not e.relative_path for e in errs)]
        candidates = [e for errs in viable for e in errs] or list(err.context)
        best = best_match(candidates)
        if best is None:
            break
        err = best
    return err


def _schema_problems(doc: Document, validator: Any, prefix: str = "") -> list[Problem]:
    """Schema errors of `doc`'s data as problems at their source positions."""
    return _located(doc, (((), err) for err in validator.iter_errors(doc.data)), prefix)


def _located(doc: Document, errors: Iterable[tuple[PathKey, Any]], prefix: str = "") -> list[Problem]:
    """Schema errors (each with the path of the value it was validated at) as located problems."""
    problems: list[Problem] = []
    for base, raw in errors:
        err = _specific(raw)
        path: PathKey = (*base, *err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed and not _pattern_allows(err.schema, k)]
            for key in extra:
                match = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{match[0]}'?" if match else ""
                problems.append(doc.problem((*path, key), f"{prefix}unknown key '{key}'", hint=hint, key=True))
            if extra:
                continue
        if "propertyNames" in err.absolute_schema_path:
            key = str(err.instance)
            choices = [str(c) for c in err.schema.get("enum", [])]
            match = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
            message = f"unknown key '{key}'" if choices else f"key '{key}' is not allowed here: {_shorten(err.message)}"
            problems.append(doc.problem((*path, key), prefix + message,
                                        hint=f"did you mean '{match[0]}'?" if match else "", key=True))
            continue
        problems.append(doc.problem(path, prefix + _shorten(err.message)))
    return problems


# --- the cloud-config schema, validated key by key ------------------------------------------------
#
# A 1,000-node cluster has 1,000 user-data files that share almost every value. hkgen's
# cloud-config schema is one object of independent `properties` (no rule across keys), so a
# document's errors are the union of the errors of its keys taken one by one: those are cached
# per (key, value), and the per-node `write_files` list is checked item by item against its item
# schema. `_decomposable` proves that shape when the schema loads; a schema of another shape
# is validated whole.

# Root keywords that constrain nothing across keys (annotations, and the per-key rules themselves).
_ROOT_KEYS = frozenset({"$schema", "$id", "title", "description", "type", "properties", "additionalProperties"})


def _decomposable(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """(write_files item schema, {key: that key's schema}) when the cloud-config schema splits
    by key, else None.
    """
    if not set(schema) <= _ROOT_KEYS or schema.get("type", "object") != "object":
        return None
    if not isinstance(schema.get("additionalProperties", True), bool):
        return None
    by_key = schema.get("properties")
    if not isinstance(by_key, dict) or not all(isinstance(v, dict) for v in by_key.values()):
        return None
    # write_files: an array schema whose only list-level rule a non-empty list meets.
    rule = by_key.get("write_files")
    if not isinstance(rule, dict) or not set(rule) <= {"type", "items", "minItems", "description"}:
        return None
    if rule.get("type") != "array" or rule.get("minItems", 1) > 1 or not isinstance(rule.get("items"), dict):
        return None
    return rule["items"], by_key


@cache
def _split_validators() -> tuple[Any, dict[str, Any]] | None:
    """(write_files item validator, {key: validator of {key: value}}), or None.

    A key no schema property names gets the whole schema (it is an error, and the message
    names the unknown key with the closest known one).
    """
    split = _decomposable(_schema(CLOUD_CONFIG_SCHEMA))
    if split is None:
        return None
    items, by_key = split
    whole = _cloud_config_validator()
    validators = {key: whole.evolve(schema={"type": "object", "properties": {key: rule}})
                  for key, rule in by_key.items()}
    return whole.evolve(schema=items), validators


# ("key", name, repr of the value) or ("item", repr of the item) -> its errors; bounded, since
# tests render many clusters in one process.
_ERRORS: dict[tuple[str, ...], tuple[Any, ...]] = {}
_ERRORS_MAX = 16384


def _cached_errors(validator: Any, token: tuple[str, ...], instance: Any) -> tuple[Any, ...]:
    found = _ERRORS.get(token)
    if found is None:
        if len(_ERRORS) >= _ERRORS_MAX:
            _ERRORS.clear()
        found = _ERRORS[token] = tuple(validator.iter_errors(instance))
    return found


def _cloud_config_errors(data: Any) -> Iterator[tuple[PathKey, Any]]:
    """Schema errors of a user-data document, each with the path it was found under."""
    split = _split_validators()
    if split is None or not isinstance(data, dict):
        yield from (((), err) for err in _cloud_config_validator().iter_errors(data))
        return
    items, by_key = split
    for key, value in data.items():
        if key == "write_files" and isinstance(value, list) and value:
            for index, item in enumerate(value):
                for err in _cached_errors(items, ("item", repr(item)), item):
                    yield ("write_files", index), err
        else:
            token = ("key", str(key), repr(value))
            validator = by_key.get(str(key)) or _cloud_config_validator()
            yield from (((), err) for err in _cached_errors(validator, token, {key: value}))


def _pattern_allows(schema: dict[str, Any], key: str) -> bool:
    return any(re.search(p, key) for p in schema.get("patternProperties", {}))


def _shorten(message: str, limit: int = 300) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _load(label: str, text: str) -> tuple[Document | None, list[Problem]]:
    try:
        # hkgen's own output: the fast libyaml loader (verify.reparse already checked the YAML).
        return load_generated(text, label), []
    except ConfigError as err:
        return None, list(err.problems)


# --- user-data ------------------------------------------------------------------------------------


def _content_block(text: str, doc: Document, path: PathKey) -> tuple[int, int]:
    """(line index of the first content line, indentation) of a block scalar at `path`."""
    lines = text.splitlines()
    start, _col = doc.where(path)  # the line with the block indicator (1-based)
    for index in range(start, len(lines)):  # 0-based: the line after the indicator
        line = lines[index]
        if line.strip():
            return index, len(line) - len(line.lstrip(" "))
    return start, 0


def _launch_problems(label: str, text: str, doc: Document, index: int, target: str, content: str) -> list[Problem]:
    """Problems of one launch configuration written by user-data `write_files[index]`."""
    path: PathKey = ("write_files", index, "content")
    problems: list[Problem] = []
    lines = content.splitlines(keepends=True)
    starts = [0] + [i + 1 for i, line in enumerate(lines) if line.rstrip() == "---"]
    ends = [i for i, line in enumerate(lines) if line.rstrip() == "---"] + [len(lines)]
    parts = 0
    for begin, end in zip(starts, ends, strict=True):
        part_text = "".join(lines[begin:end])
        if all(not ln.strip() or ln.lstrip().startswith("#") for ln in part_text.splitlines()):
            continue  # MicroK8s skips empty parts
        parts += 1
        prefix = f"MicroK8s launch configuration {target}" + (f" (part {parts})" if parts > 1 else "")
        part, load_problems = _load(label, part_text)
        found = load_problems if part is None else _schema_problems(part, _launch_config_validator())
        if found:  # positions only when there is something to point at: finding them reparses
            first_line, indent = _content_block(text, doc, path)
        for p in found:
            inner = p.path if p.path != "$" else ""
            message = f"{prefix}: {inner + ': ' if inner else ''}{p.message}"
            line = first_line + begin + max(p.line, 1)
            problems.append(Problem(label, line, indent + max(p.col, 1), json_path(path), message, p.hint))
    if parts == 0:
        problems.append(doc.problem(path, f"MicroK8s launch configuration {target} is empty"))
    return problems


def _node_rules(doc: Document, data: dict[str, Any]) -> list[Problem]:
    """What every cluster node's user-data must do for MicroK8s to come up as intended."""
    from ..areas.seeds import LAUNCH_CONFIG

    problems: list[Problem] = []
    files = data.get("write_files") or []
    launch = [i for i, f in enumerate(files) if isinstance(f, dict) and f.get("path") == LAUNCH_CONFIG]
    if not launch:
        problems.append(doc.problem(("write_files",), f"a node seed must write {LAUNCH_CONFIG} (MicroK8s would "
                                    "apply its bundled defaults instead)", key=True))
    for i in launch:
        if files[i].get("defer") is True:
            problems.append(doc.problem(("write_files", i, "defer"), f"{LAUNCH_CONFIG} must be written before the "
                                        "snap step installs MicroK8s, not deferred to the final stage"))
    commands = (data.get("snap") or {}).get("commands") or []
    if isinstance(commands, dict):
        commands = list(commands.values())
    argvs = [c if isinstance(c, list) else str(c).split() for c in commands]
    installs = [a for a in argvs if a[:2] == ["install", "microk8s"]]
    if not installs or not any(str(x).startswith("--channel=") for x in installs[0]):
        problems.append(doc.problem(("snap",), "a node seed must install MicroK8s from a pinned channel "
                                    "(snap install microk8s --classic --channel=...)", key=True))
    if not any(a[:3] == ["refresh", "--hold", "microk8s"] for a in argvs):
        problems.append(doc.problem(("snap",), "a node seed must hold MicroK8s refreshes (snap refresh --hold "
                                    "microk8s): a refresh restarts the control plane", key=True))
    return problems


def _user_data_problems(label: str, text: str, node: bool) -> list[Problem]:
    from ..areas.seeds import is_launch_config

    if text.split("\n", 1)[0].rstrip() != "#cloud-config":
        return [Problem(label, 1, 1, "$", "user-data must start with the line '#cloud-config'")]
    doc, problems = _load(label, text)
    if doc is None:
        return problems
    if not isinstance(doc.data, dict):
        return [doc.problem((), "user-data must be a mapping")]
    problems += _located(doc, _cloud_config_errors(doc.data))
    for i, item in enumerate(doc.data.get("write_files") or []):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            continue
        if is_launch_config(str(item.get("path", ""))):
            problems += _launch_problems(label, text, doc, i, str(item["path"]), item["content"])
    if node:
        problems += _node_rules(doc, doc.data)
    return problems


# --- network-config, meta-data, kernel command line ------------------------------------------------


def _network_problems(label: str, text: str) -> list[Problem]:
    doc, problems = _load(label, text)
    if doc is None:
        return problems
    problems = _schema_problems(doc, _network_validator())
    if problems or not isinstance(doc.data, dict):
        return problems
    for kind in ("ethernets", "wifis"):
        for name, dev in (doc.data.get(kind) or {}).items():
            base: PathKey = (kind, name)
            nets = [ipaddress.ip_interface(a).network for a in dev.get("addresses") or []]
            if not dev.get("dhcp4") and not nets:
                problems.append(doc.problem(base, f"{name} has neither dhcp4 nor a static address", key=True))
            # netplan copies SSID and passphrase into wpa_supplicant.conf between double quotes,
            # unescaped; wpa_supplicant then reads a '"' as the end of the value.
            for ssid, ap in (dev.get("access-points") or {}).items():
                if '"' in ssid:
                    problems.append(doc.problem((*base, "access-points", ssid), "a Wi-Fi network name with '\"' "
                                                "breaks the wpa_supplicant configuration netplan writes", key=True))
                if '"' in str((ap or {}).get("password", "")):
                    problems.append(doc.problem((*base, "access-points", ssid, "password"), "the Wi-Fi passphrase "
                                                "contains '\"', which breaks the wpa_supplicant configuration netplan "
                                                "writes; choose a passphrase without it"))
            for j, route in enumerate(dev.get("routes") or []):
                via = ipaddress.ip_address(route["via"])
                if nets and not any(via in n for n in nets):
                    problems.append(doc.problem((*base, "routes", j, "via"),
                                                f"gateway {via} is not on {', '.join(map(str, nets))}"))
    return problems


def _meta_problems(label: str, text: str) -> list[Problem]:
    doc, problems = _load(label, text)
    if doc is None:
        return problems
    if not isinstance(doc.data, dict):
        return [doc.problem((), "meta-data must be a mapping")]
    out = []
    for key in ("instance-id", "local-hostname"):
        value = doc.data.get(key)
        if not isinstance(value, str) or not value:
            out.append(doc.problem((key,) if key in doc.data else (), f"meta-data needs a non-empty '{key}'",
                                   key=key not in doc.data))
    return out


def _cmdline_problems(label: str, text: str, node: bool) -> list[Problem]:
    body = text[:-1] if text.endswith("\n") else text
    if not body.strip():
        return [Problem(label, 1, 1, "$", "the kernel command line is empty")]
    if "\n" in body or "\r" in body:
        return [Problem(label, 2, 1, "$", "the kernel command line must be a single line "
                                          "(the firmware reads only the first)")]
    problems = []
    if len(body) > MAX_CMDLINE:
        problems.append(Problem(label, 1, MAX_CMDLINE + 1, "$", f"longer than {MAX_CMDLINE} characters"))
    tokens = body.split()
    if not any(t.startswith("root=") for t in tokens):
        problems.append(Problem(label, 1, 1, "$", "no root= parameter: the Pi would not find its root filesystem"))
    if node:
        for needed in ("cgroup_enable=memory", "cgroup_memory=1"):
            if needed not in tokens:
                problems.append(Problem(label, 1, len(body) + 1, "$", f"missing {needed}: Raspberry Pi kernels disable "
                                        "the memory cgroup Kubernetes needs"))
    return problems


# --- entry points -------------------------------------------------------------------------------------


def _placeholder_problems(label: str, text: str, known: Iterable[str]) -> list[Problem]:
    allowed = set(known)
    problems = []
    for match in PLACEHOLDER.finditer(text):
        if match.group(1) not in allowed:
            line = text.count("\n", 0, match.start()) + 1
            col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            problems.append(Problem(label, line, col, "$", f"unknown secret placeholder {match.group(0)}: the secrets "
                                    f"file has no key {match.group(1)}"))
    return problems


def check_seed_file(label: str, kind: str, text: str, *, node: bool,
                    secret_keys: Iterable[str] | None = None) -> list[Problem]:
    """Problems of one seed file. `kind` is one of SEED_FILES; `node` is False for satellites.

    With `secret_keys`, every `${KEY}` placeholder must name one of them.
    """
    if kind == "user-data":
        problems = _user_data_problems(label, text, node)
    elif kind == "network-config":
        problems = _network_problems(label, text)
    elif kind == "meta-data":
        problems = _meta_problems(label, text)
    elif kind == "cmdline.txt":
        problems = _cmdline_problems(label, text, node)
    else:
        raise ValueError(f"not a seed file kind: {kind}")
    if secret_keys is not None:
        problems += _placeholder_problems(label, text, secret_keys)
    return problems


def check(blueprint: Blueprint, tree: Rendered, built: list[Built]) -> list[Problem]:
    """Every seed file of the rendered tree (called by verify)."""
    from ..config.secrets import required_keys

    keys = [k.name for k in required_keys(blueprint.cluster)]
    problems: list[Problem] = []
    for path in sorted(tree):
        kind = seed_file_kind(path)
        if kind is None:
            continue
        label = f"clusters/{blueprint.cluster.name}/{path}"
        text = tree[path].decode("utf-8")
        problems += check_seed_file(label, kind, text, node=path.parts[0] == "nodes", secret_keys=keys)
    return problems
