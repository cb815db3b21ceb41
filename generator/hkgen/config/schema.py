"""The cluster schema as hkgen uses it: the core file plus each catalogue app's settings schema
and the known version pins, composed once per process; and the schema's defaults applied to data.

`schemas/cluster.schema.json` in the repository is this composition written out
(`hkgen schema --write`), so editors complete app settings too; a test keeps it in sync.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from ..core.resources import data_dir, package_dir

# versions.yaml groups cluster.yaml cannot override: versions that go with checksums.
PINNED_GROUPS = frozenset({"engines"})

__all__ = ["PINNED_GROUPS", "apply_defaults", "apps_key", "cluster_schema", "composed_schema_text", "default_versions"]


@cache
def default_versions() -> dict[str, dict[str, str]]:
    """hkgen's pinned chart and image versions (versions.yaml), as strings."""
    from .doccache import own_data
    from .load import load_generated

    # libyaml, as for cluster.yaml itself: `hkgen validate` does not import ruamel at all (nor
    # PyYAML, once the loaded file is cached).
    path = package_dir() / "versions.yaml"
    data = own_data(path.read_bytes(), lambda: load_generated(path.read_text("utf-8"), str(path)).data)
    return {group: {k: str(v) for k, v in pins.items()} for group, pins in data.items()}


@cache
def apps_key() -> str:
    """sha256 of hkgen's app catalogue folder (every file's name and bytes), once per process: the
    key caches of what the catalogue shapes include (with `code_hash` for hkgen's own code).
    """
    from ..core.fingerprint import files_hash

    return files_hash(data_dir("apps"))


@cache
def cluster_schema() -> dict[str, Any]:
    """The full cluster schema: core + app settings + version override keys.

    Kept composed in the cache folder (`doccache.own_data`), keyed by the core schema file's bytes
    and `apps_key` (versions.yaml is part of hkgen's code): validate of an unchanged file then
    loads no app catalogue at all.
    """
    from ..core.resources import cache_dir
    from .doccache import own_data

    path = data_dir("schemas") / "cluster.schema.json"
    if cache_dir() is None:  # library use: no cache folder
        return _composed()
    composed: dict[str, Any] = own_data(b"composed cluster schema\0" + apps_key().encode() + b"\0"
                                        + path.read_bytes(), _composed)
    return composed


def _composed() -> dict[str, Any]:
    from .catalogue import load_catalogue, settings_schema

    schema: dict[str, Any] = json.loads((data_dir("schemas") / "cluster.schema.json").read_text("utf-8"))
    apps = schema["properties"]["apps"]
    apps["properties"] = {name: settings_schema(spec) for name, spec in sorted(load_catalogue().items())}
    versions = schema["properties"]["versions"]
    versions["properties"] = {
        group: {
            "description": f"Overrides of pinned {group} versions.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {
                    "description": f"Version of {name} (default {pin}).",
                    "type": "string",
                    "pattern": "^v?[0-9]+(\\.[0-9]+){1,3}([-+.][A-Za-z0-9.]+)?$",
                }
                for name, pin in sorted(pins.items())
            },
        }
        for group, pins in sorted(default_versions().items())
        if group not in PINNED_GROUPS
    }
    return schema


def composed_schema_text() -> str:
    """The composed schema as the JSON text committed at schemas/cluster.schema.json."""
    return json.dumps(cluster_schema(), indent=2, ensure_ascii=True) + "\n"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        resolved: dict[str, Any] = root["definitions"][ref.rsplit("/", 1)[1]]
        return resolved
    return schema


def apply_defaults(data: Any, schema: dict[str, Any] | None = None, root: dict[str, Any] | None = None) -> Any:
    """A copy of schema-valid `data` with every `default` filled in.

    An object whose schema says `"default": {}` is created when missing and then filled, so
    `os.upgrades`, `microk8s.failover` and the like always exist in the model's input.
    """
    root = root or cluster_schema()
    schema = _resolve(schema if schema is not None else root, root)
    if isinstance(data, dict) and schema.get("type") == "object":
        out = dict(data)
        for key, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, root)
            if key not in out:
                if "default" not in sub:
                    continue
                out[key] = copy.deepcopy(sub["default"])
            out[key] = apply_defaults(out[key], sub, root)
        return out
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"], root) for item in data]
    return data
