"""The configuration reference (docs/configuration.md), generated from the composed cluster schema.

Every property of `schema.cluster_schema()` becomes one row: its path in cluster.yaml, type,
default, what values are allowed (enum, range, length, pattern with its meaning in words) and its
description. Patterns are explained from `PATTERNS`, so a reader need not decode regular
expressions; a pattern without an explanation is reported by `unexplained_patterns` (a test keeps
the list empty). The committed file is kept equal to `reference()` by a test and rewritten with
`hkgen docs --write`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

__all__ = [
    "PATTERNS",
    "REFERENCE_PATH",
    "Row",
    "json_type",
    "reference",
    "reference_file",
    "rows",
    "unexplained_patterns",
]

REFERENCE_PATH = "docs/configuration.md"

_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"({_OCTET}\.){{3}}{_OCTET}"
_ONE_LINE = "[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\ufeff]"
_DNS_LABEL = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"

# Regular expressions of the schema in words. Keyed by the exact pattern text; a new pattern in
# the schema needs a line here (tests/test_readme.py lists the missing ones).
PATTERNS: dict[str, str] = {
    f"^{_ONE_LINE}*$": "any text on one line (no control characters or line breaks)",
    "^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$": "lowercase name: a letter, then letters, digits or `-`, not ending in `-`",
    f"^(?=.{{1,253}}$){_DNS_LABEL}(\\.{_DNS_LABEL})*$": "DNS name: dot-separated labels of lowercase letters, digits and `-`, e.g. home.arpa",
    "^(UTC|[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){1,2})$": "IANA time-zone name such as Europe/Berlin, or UTC",
    "^(C\\.UTF-8|[a-z]{2,3}_[A-Z]{2}\\.UTF-8)$": "C.UTF-8 or a UTF-8 locale such as `en_US.UTF-8`",
    f"^{_IPV4}/([0-9]|[12][0-9]|3[0-2])$": "IPv4 network in CIDR notation, e.g. 192.168.10.0/24",
    f"^{_IPV4}$": "IPv4 address, e.g. 192.168.10.11",
    f"^{_IPV4}-{_IPV4}$": "IPv4 address range FIRST-LAST, e.g. 192.168.10.200-192.168.10.220",
    "^[a-z_][a-z0-9_-]{0,31}$": "Linux user name: a lowercase letter or `_`, then letters, digits, `_` or `-`",
    "^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|"
    f"sk-ecdsa-sha2-nistp256@openssh\\.com) [A-Za-z0-9+/]+={{0,3}}( {_ONE_LINE}{{0,200}})?$": "one OpenSSH public key line: key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, "
    "sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com), base64 key, optional comment",
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "time of day HH:MM, 24-hour clock",
    "^1\\.(2[89]|3[0-9])/(stable|candidate)$": "MicroK8s snap channel 1.28/stable to 1.39/stable (or /candidate)",
    '^[^"\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\ufeff]*$': "one line of text without double quotes or control characters",
    "^/var/lib/longhorn[a-z0-9-]*$": "/var/lib/longhorn, optionally followed by lowercase letters, digits or `-`",
    "^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$": "http:// or https:// URL: host, optional port and path, no query",
    "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$": "S3 bucket name: 3-63 lowercase letters, digits, `.` and `-`",
    "^[a-z0-9-]{1,32}$": "lowercase letters, digits and `-`, e.g. eu-central-1",
    "^[a-z0-9][a-z0-9-]{0,62}$": "lowercase letters, digits and `-`, starting with a letter or digit",
    "^([0-9*/,-]+ ){4}[0-9*/,-]+$": "cron schedule: five fields (minute hour day month weekday)",
    "^(https://|ssh://)[A-Za-z0-9@._~:/+-]+$": "https:// or ssh:// Git URL",
    "^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$": "Git branch name: letters, digits, `.`, `_`, `/` and `-`",
    "^[0-9]+(s|m|h)$": "duration in seconds, minutes or hours, e.g. 10m",
    "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\\.sops\\.ya?ml$": "file name in the cluster folder ending in .sops.yaml",
    "^age1[02-9ac-hj-np-z]{58}$": "age public key (age1 followed by 58 bech32 characters)",
    "^v?[0-9]+(\\.[0-9]+){1,3}([-+.][A-Za-z0-9.]+)?$": "version number such as 1.12.1 or v2.14.3, optional suffix",
    "^[1-9][0-9]{0,2}[hd]$": "duration in hours or days, e.g. 3d",
    "^[1-9][0-9]{0,3}d$": "duration in days, e.g. 90d",
    "^[1-9][0-9]{0,2}s$": "duration in seconds, e.g. 30s",
    "^[1-9][0-9]{0,3}(s|m|h)$": "duration in seconds, minutes or hours, e.g. 30s, 5m or 12h",
    "^[A-Za-z0-9.-]+:[0-9]{1,5}$": "host name and port, e.g. smtp.example.com:587",
    "^[^@\\s\"'$\\\\,]+@[A-Za-z0-9.-]+$": "e-mail address (no spaces, quotes, `$`, `\\` or `,`)",
    "^[^\\s\"'$\\\\]+$": "one word: no spaces, quotes, `$` or `\\`",
    "^https?://[A-Za-z0-9@._~:/+%-]+$": "http:// or https:// URL without query or fragment",
    "^notify\\.[a-z0-9_]{1,80}$": "Home Assistant notify service, e.g. notify.mobile_app_anna_phone",
    "^[a-z][a-z0-9-]{0,31}$": "lowercase name: a letter, then letters, digits or `-`",
    f"^{_DNS_LABEL}$": "DNS label: lowercase letters, digits and `-`, not starting or ending with `-`",
    "^([0-9a-f]{2}:){5}[0-9a-f]{2}$": "MAC address in lowercase hex, e.g. dc:a6:32:10:00:11",
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$": "Kubernetes label key: optional DNS-name prefix and `/`, then a name of letters, digits, `-`, `_` and `.`",
    "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$": "Kubernetes label value: empty, or letters, digits, `-`, `_` and `.`, starting and ending alphanumeric",
    "^[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,199}$": "device id as in /dev/disk/by-id or /dev/serial/by-id: letters, digits and `._:+@=-`",
    "^[A-Z]{2}$": "two-letter country code in capitals, e.g. DE",
    "^[A-Za-z0-9][A-Za-z0-9_/-]{0,63}$": "MQTT topic: letters, digits, `_`, `-` and `/`",
    "^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]{1,128}|@sha256:[a-f0-9]{64})$": "container image with registry and a pinned tag or digest, e.g. ghcr.io/org/app:1.2.3",
    "^(/[A-Za-z0-9._-]+)+$": "absolute path of letters, digits, `.`, `_` and `-`",
    "^[A-Z_][A-Z0-9_]{0,63}$": "environment variable name: capitals, digits and `_`",
    "^[A-Z][A-Z0-9_]{0,63}$": "secret key name in secrets.sops.yaml: capitals, digits and `_`",
    "^(#|(\\+|[^#+$/\\s][^#+/\\s]*)(/(\\+|[^#+/\\s]*))*(/#)?)$": "MQTT topic filter: levels separated by `/`, "
    "`+` for one whole level, `#` only as the last level, no spaces, not starting with `$`",
    "^(?!homeassistant$)(?!zigbee2mqtt)[a-z][a-z0-9-]{0,31}$": "lowercase name: a letter, then letters, digits or "
    "`-`; not `homeassistant` and not starting with `zigbee2mqtt` (those users are hkgen's own)",
    "^[A-Za-z0-9.\\[\\]:-]+:[0-9]{1,5}$": "host:port, e.g. 203.0.113.53:53",
    "^[A-Za-z0-9._-]{1,100}$": "letters, digits, `.`, `_` and `-`",
    "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$": "e-mail address",
}

_FORMATS = {
    "ipv4": "IPv4 address",
    "ipv6": "IPv6 address",
    "hostname": "host name",
    "uri": "URI",
    "email": "e-mail address",
    "date-time": "RFC 3339 date and time",
}


@dataclass(frozen=True)
class Row:
    """One documented property."""

    path: str  # as written in cluster.yaml: `nodes[].disks[].sizeGB`, `nodes[].labels.<key>`
    section: str  # the top-level key it belongs to ("" for top-level scalars)
    required: bool
    type: str
    default: str
    allowed: str
    description: str


def _resolve(
    node: dict[str, Any], root: dict[str, Any], seen: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node, seen
    if not ref.startswith("#/definitions/"):
        raise ValueError(f"cannot document schema reference {ref!r}")
    if ref in seen:
        raise ValueError(f"schema reference {ref!r} is recursive")
    target: dict[str, Any] = root["definitions"][ref.removeprefix("#/definitions/")]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged, (*seen, ref)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _type(node: dict[str, Any], root: dict[str, Any], seen: tuple[str, ...]) -> str:
    node, seen = _resolve(node, root, seen)
    kind = node.get("type")
    if kind is None and "enum" in node:
        kinds = sorted({json_type(v) for v in node["enum"]})
        if kinds == ["integer", "number"]:
            kinds = ["number"]
        kind = kinds[0] if len(kinds) == 1 else kinds
    if kind is None and "const" in node:
        kind = json_type(node["const"])
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        items = node.get("items")
        return f"list of {_plural(_type(items, root, seen))}" if isinstance(items, dict) else "list"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        return f"map of {_plural(_type(node['additionalProperties'], root, seen))}"
    return str(kind) if kind else "any"


def json_type(value: Any) -> str:
    """The JSON Schema type name of a plain value (validate words it for YAML users)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "any"


def _plural(kind: str) -> str:
    return kind if kind.startswith(("list", "map")) or " or " in kind else f"{kind}s"


def _range(low: Any, high: Any, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low}–{high}{unit}" if low != high else f"exactly {low}{unit}"
    if low is not None:
        return f"at least {low}{unit}"
    return f"at most {high}{unit}"


def _pattern(pattern: str) -> str:
    # The exact expressions are listed once at the end of the reference ("Patterns").
    meaning = PATTERNS.get(pattern)
    return meaning if meaning else f"matches {_code(pattern)}"


def _allowed(node: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "const" in node:
        out.append(f"exactly {_code(_json(node['const']))}")
    if "enum" in node:
        out.append("one of " + ", ".join(_code(_json(v) if not isinstance(v, str) else v) for v in node["enum"]))
    if "minimum" in node or "maximum" in node:
        out.append(_range(node.get("minimum"), node.get("maximum"), ""))
    if "exclusiveMinimum" in node:
        out.append(f"more than {node['exclusiveMinimum']}")
    if "exclusiveMaximum" in node:
        out.append(f"less than {node['exclusiveMaximum']}")
    if "minLength" in node or "maxLength" in node:
        out.append(_range(node.get("minLength"), node.get("maxLength"), " characters"))
    if isinstance(node.get("format"), str) and not isinstance(node.get("pattern"), str):
        out.append(_FORMATS.get(node["format"], f"format {node['format']}"))
    if isinstance(node.get("pattern"), str):
        out.append(_pattern(node["pattern"]))
    if "minItems" in node or "maxItems" in node:
        out.append(_range(node.get("minItems"), node.get("maxItems"), " items"))
    if node.get("uniqueItems"):
        out.append("no duplicates")
    if "minProperties" in node or "maxProperties" in node:
        out.append(_range(node.get("minProperties"), node.get("maxProperties"), " entries"))
    names = node.get("propertyNames")
    if isinstance(names, dict):
        inner = _allowed(names)
        if inner:
            out.append("keys: " + "; ".join(inner))
    return out


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if value == {} and node.get("properties"):
        return "{} (each key's default)"
    return _code(value if isinstance(value, str) else _json(value))


def _walk(
    node: dict[str, Any], path: str, section: str, required: bool, root: dict[str, Any], seen: tuple[str, ...]
) -> Iterator[Row]:
    """Rows for the property at `path` and everything below it, depth first in schema order."""
    node, seen = _resolve(node, root, seen)
    yield Row(
        path=path,
        section=section,
        required=required,
        type=_type(node, root, seen),
        default=_default(node),
        allowed="; ".join(_allowed(node)),
        description=str(node.get("description", "")),
    )
    yield from _children(node, path, section, root, seen)


def _children(
    node: dict[str, Any], path: str, section: str, root: dict[str, Any], seen: tuple[str, ...]
) -> Iterator[Row]:
    needed = set(node.get("required", ()))
    for key, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}" if path else key, section or key, key in needed, root, seen)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}.<key>", section, False, root, seen)
    items = node.get("items")
    if isinstance(items, dict):
        items, seen_items = _resolve(items, root, seen)
        if items.get("properties") or isinstance(items.get("additionalProperties"), dict):
            yield from _children(items, f"{path}[]", section, root, seen_items)
        elif items.get("type") == "array" or _allowed(items) or items.get("description"):
            yield from _walk(items, f"{path}[]", section, False, root, seen_items)


def rows(schema: dict[str, Any] | None = None) -> list[Row]:
    """Every documented property of `schema` (default: the composed cluster schema), in schema order."""
    if schema is None:
        from .schema import cluster_schema

        schema = cluster_schema()
    return list(_children(schema, "", "", schema, ()))


def _patterns(schema: dict[str, Any]) -> list[str]:
    """Every `pattern` keyword's value in `schema`, in order of first appearance."""
    found: dict[str, None] = {}

    def visit(value: Any, parent: str | None) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                # A key called "pattern" inside `properties` is a property name, not the keyword.
                if k == "pattern" and isinstance(v, str) and parent != "properties":
                    found.setdefault(v)
                else:
                    visit(v, k)
        elif isinstance(value, list):
            for v in value:
                visit(v, None)

    visit(schema, None)
    return list(found)


def unexplained_patterns(schema: dict[str, Any] | None = None) -> list[str]:
    """Patterns in `schema` that `PATTERNS` does not explain (each should get a line there)."""
    if schema is None:
        from .schema import cluster_schema

        schema = cluster_schema()
    return sorted(set(_patterns(schema)) - PATTERNS.keys())


def _code(text: str) -> str:
    """`text` as an inline code span that survives a Markdown table cell."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _cell(text: str) -> str:
    """Schema prose (already Markdown) in a table cell: one line, pipes escaped, and `<`/`>` outside
    code spans as entities, so placeholders like <name> are shown instead of read as HTML tags.
    """
    parts = re.split(r"(`+[^`]*`+)", re.sub(r"\s+", " ", text).strip())
    out = [p if p.startswith("`") else p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for p in parts]
    return "".join(out).replace("|", "\\|")


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation except '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _table(items: list[Row]) -> list[str]:
    lines = ["| key | type | default | allowed values | description |", "|---|---|---|---|---|"]
    for r in items:
        key = _code(r.path) + (" **required**" if r.required else "")
        lines.append(
            f"| {key} | {_cell(r.type)} | {r.default or '–'} | {r.allowed or '–'} | {_cell(r.description) or '–'} |"
        )
    return lines


def _below(all_rows: list[Row], path: str) -> list[Row]:
    return [r for r in all_rows if r.path.startswith((f"{path}.", f"{path}[]"))]


def _is_container(row: Row) -> bool:
    return row.type == "object" or row.type == "list of objects"


def _block(head: Row, all_rows: list[Row], level: str) -> list[str]:
    """Heading, description and table(s) of one key and everything below it."""
    lines = ["", f"{level} `{head.path}`", "", _cell(head.description) or "–"]
    notes = [f"Type: {head.type}"] + (["required"] if head.required else [])
    if head.default:
        notes.append(f"default: {head.default}")
    if head.allowed:
        notes.append(f"allowed: {head.allowed}")
    lines += ["", "; ".join(notes) + "."]
    below = _below(all_rows, head.path)
    children = [
        r
        for r in below
        if r.path.count(".") == head.path.count(".") + 1
        and r.path.startswith(f"{head.path}.")
        and "[]" not in r.path.removeprefix(head.path)
    ]
    if level == "##" and children and all(_is_container(c) and _below(all_rows, c.path) for c in children):
        for child in children:
            lines += _block(child, all_rows, "###")
    elif below:
        lines += ["", *_table(below)]
    return lines


def reference(schema: dict[str, Any] | None = None) -> str:
    """The Markdown text of docs/configuration.md for `schema` (default: the composed cluster schema)."""
    if schema is None:
        from .schema import cluster_schema

        schema = cluster_schema()
    all_rows = rows(schema)
    top = [r for r in all_rows if "." not in r.path and "[]" not in r.path]
    scalars = [r for r in top if not _below(all_rows, r.path)]
    blocks = [r for r in top if r not in scalars]
    required = ", ".join(f"`{r.path}`" for r in top if r.required)
    lines = [
        "<!-- Generated by `hkgen docs --write` from the cluster schema - do not edit; "
        "change the schema and run it again. -->",
        "# Configuration reference: `cluster.yaml`",
        "",
        "Every key of `clusters/<name>/cluster.yaml`, generated from the schema that `hkgen validate`",
        "checks (`schemas/cluster.schema.json`; each catalogue app contributes its settings under `apps`).",
        "Start from the reference cluster, `clusters/home/cluster.yaml`, and change what differs.",
        "",
        "How to read it:",
        "",
        "- `a.b` is the key `b` inside the mapping `a`; `nodes[].ip` is `ip` in every item of the list",
        "  `nodes`; `labels.<key>` is any key you choose in the mapping `labels`.",
        "- **required** keys must be present whenever their parent is. Any other key may be left out and",
        "  then takes its default; a mapping whose default is `{}` is created with its keys' defaults.",
        "- No other keys are accepted: a misspelt key is an error, reported with its line and column.",
        "- Secret values never go into this file: they live in `secrets.sops.yaml` next to it (see",
        "  [getting started](getting-started.md)).",
        "",
        f"Required at the top level: {required}.",
        "",
        "## Contents",
        "",
    ]
    if scalars:
        lines.append("- [top level](#top-level)")
    lines += [f"- [`{r.path}`](#{_anchor(r.path)})" for r in blocks]
    lines.append("- [Patterns](#patterns)")
    if scalars:
        lines += ["", "## top level", "", *_table(scalars)]
    for head in blocks:
        lines += _block(head, all_rows, "##")
    explained = [p for p in _patterns(schema) if p in PATTERNS]
    if explained:
        lines += [
            "",
            "## Patterns",
            "",
            "The exact regular expressions behind the descriptions above.",
            "",
            "| meaning | regular expression |",
            "|---|---|",
        ]
        lines += [f"| {_cell(PATTERNS[p])} | {_code(p)} |" for p in explained]
    return "\n".join(lines) + "\n"


def reference_file() -> Path:
    """docs/configuration.md of the source checkout hkgen runs from (the docs are not in the wheel)."""
    from ..core.resources import data_dir

    root = data_dir("schemas").parent
    docs = root / "docs"
    if not (root / "pyproject.toml").is_file() or not docs.is_dir():
        raise UsageError(
            f"the configuration reference lives in a source checkout; {root} is not one "
            "(run `hkgen docs` to print it instead)"
        )
    return root / REFERENCE_PATH
