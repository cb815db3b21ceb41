"""Upstream schemas, read from ../shared (never from the project): the CRDs of the pinned chart and
Flux releases, the datree catalogue copies and cloud-init's cloud-config schema. Used by the tests
that prove hkgen's own schemas (schemas/kinds/, schemas/cloud-config.schema.json) against upstream,
and by bench/schemas.py.

`SHARED` is absent on a machine without the shared folder: callers skip then.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHARTS = SHARED / "charts"
DATREE = SHARED / "schemas" / "crds"
CLOUD_CONFIG = SHARED / "schemas" / "cloud-init" / "schema-cloud-config-v1.json"
FLUX = SHARED / "vendor" / "flux-v2.7.5" / "gotk-components.yaml"

# Where the CRDs of each pinned release are (versions as in generator/hkgen/versions.yaml and the
# Flux release hkgen bootstraps). Chart CRDs are Helm templates: see `_detemplate`.
CRD_SOURCES: tuple[Path, ...] = (
    CHARTS / "argo-cd-10.1.1" / "templates" / "crds",
    CHARTS / "cert-manager-1.19.1" / "templates",
    CHARTS / "plugin-barman-cloud-0.5.0" / "templates" / "crds",
    CHARTS / "prometheus-operator-crds-31.0.1" / "charts" / "crds" / "templates",
    CHARTS / "longhorn-1.12.1" / "templates" / "crds.yaml",
    CHARTS / "cloudnative-pg-0.29.0" / "templates" / "crds" / "crds.yaml",
    FLUX,
)

_HELM_SPLIT = re.compile(r"(?:^|\s*\n)---\s*")  # Helm's own document splitter (charts README pitfall 5)
_ACTION = re.compile(r"\{\{.*?\}\}")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML reading a bare `=` (AlertmanagerConfig's matchType enum) as a string (pitfall 6)."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)


def _detemplate(text: str) -> str:
    """A CRD template as plain YAML: Helm actions dropped. They only wrap the file (`if`), add
    labels or annotations, never touch the schema; a line that was nothing but an action goes.
    """
    out = []
    for line in text.splitlines():
        if "{{" not in line:
            out.append(line)
            continue
        rest = _ACTION.sub("", line)
        if rest.strip():  # `labels: {{ include ... }}`: the key stays (a null, or what follows)
            out.append(rest)
    return "\n".join(out) + "\n"


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.glob("*.yaml") if p.is_file())


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD version of the pinned releases."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for source in CRD_SOURCES:
        for path in _files(source):
            text = path.read_text("utf-8")
            if "CustomResourceDefinition" not in text:
                continue
            for part in _HELM_SPLIT.split(_detemplate(text)):
                doc = yaml.load(part, Loader=_Loader)  # noqa: S506 - a safe loader
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    schema = (version.get("schema") or {}).get("openAPIV3Schema")
                    if isinstance(schema, dict):
                        found[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return found


_GO_FLAGS = re.compile(r"\(\?([a-zA-Z]+)\)")


def _python_patterns(node: Any) -> Any:
    """Go regexes (RE2 allows inline flags mid-pattern, Python only at the start) made readable."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str) and _GO_FLAGS.search(value) and not value.startswith("(?"):
                value = "(?" + "".join(_GO_FLAGS.findall(value)) + ")" + _GO_FLAGS.sub("", value)
            out[key] = _python_patterns(value)
        return out
    if isinstance(node, list):
        return [_python_patterns(v) for v in node]
    return node


@cache
def datree_validator(api_version: str, kind: str) -> Any:
    """A validator for the datree catalogue copy of a kind in ../shared (None without one)."""
    from jsonschema import Draft7Validator

    schema = datree(api_version, kind)
    return None if schema is None else Draft7Validator(_python_patterns(schema))


def datree(api_version: str, kind: str) -> dict[str, Any] | None:
    """The datree CRDs-catalog schema of a kind, when ../shared has one."""
    group, _, version = api_version.rpartition("/")
    path = DATREE / group / f"{kind.lower()}_{version}.json"
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


@cache
def cloud_config() -> dict[str, Any]:
    """cloud-init's cloud-config schema (JSON schema draft 4)."""
    loaded: dict[str, Any] = json.loads(CLOUD_CONFIG.read_text("utf-8"))
    return loaded


@cache
def crd_validator(api_version: str, kind: str) -> Any:
    """A strict validator for the pinned upstream CRD of a kind (unknown fields are errors unless
    the CRD preserves them), built the way `hkgen verify-charts` builds them; None without one.
    """
    from hkgen.verify.charts.schemas import ManifestSchemas

    schemas = ManifestSchemas("1.34", [{"kind": "CustomResourceDefinition", "spec": {
        "group": api_version.rpartition("/")[0], "names": {"kind": kind},
        "versions": [{"name": api_version.rpartition("/")[2], "schema": {"openAPIV3Schema": schema}}]}}
        for (api, k), schema in crds().items() if (api, k) == (api_version, kind)])
    return schemas if (api_version, kind) in schemas.crds else None


def cloud_config_validator() -> Any:
    """cloud-init's schema as cloud-init applies it (draft 4), keys it marks deprecated refused."""
    from collections.abc import Iterator

    from jsonschema import Draft4Validator, ValidationError, validators

    def deprecated(validator: Any, value: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
        if value is True:
            yield ValidationError(f"deprecated since cloud-init {schema.get('deprecated_version', '?')}")

    cls = validators.extend(Draft4Validator, {"deprecated": deprecated})
    return cls(cloud_config(), format_checker=Draft4Validator.FORMAT_CHECKER)
