"""The app catalogue: `apps/<name>/` folders read into `AppSpec`s, and app workloads resolved.

An app folder holds `app.yaml` (metadata), `settings.schema.json` (the schema of its settings in
cluster.yaml) and `templates/`. Workload sizes in app.yaml may refer to settings
(`memoryMiB: settings.memoryMiB`), so a user's override flows into the planner's arithmetic
without Python changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem
from .load import load_file
from .resources import data_dir

__all__ = ["AppSpec", "Volume", "Workload", "app_workloads", "load_catalogue"]


@dataclass(frozen=True)
class Volume:
    """A persistent volume of a workload."""

    name: str
    size_gib: int
    backup_class: str


@dataclass(frozen=True)
class Workload:
    """One pod group of an app as it will run: replicas, requests, volumes."""

    app: str
    name: str
    kind: str
    replicas: int
    cpu_millis: int
    memory_mib: int
    per_node: bool
    termination_grace_seconds: int
    volumes: tuple[Volume, ...]
    pinned_to: str | None = None

    @property
    def stateful(self) -> bool:
        """True when the workload keeps data on volumes."""
        return bool(self.volumes)


@dataclass(frozen=True)
class AppSpec:
    """A catalogue app as described by its folder."""

    name: str
    description: str
    namespace: str
    priority_class: str
    depends_on: tuple[str, ...]
    images: tuple[tuple[str, str], ...]
    charts: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str, int], ...]
    expose: tuple[tuple[str, Any], ...]
    workloads: tuple[dict[str, Any], ...]
    folder: Path
    settings_schema: str  # JSON text; parsed on demand to keep the spec hashable


@cache
def load_catalogue(root: Path | None = None) -> dict[str, AppSpec]:
    """Every app folder under `root` (default: hkgen's own apps/), by name."""
    base = root or data_dir("apps")
    specs: dict[str, AppSpec] = {}
    problems: list[Problem] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        meta_path = folder / "app.yaml"
        schema_path = folder / "settings.schema.json"
        if not meta_path.is_file() or not schema_path.is_file():
            problems.append(Problem(str(folder), 0, 0, "$", "app folder needs app.yaml and settings.schema.json"))
            continue
        meta = load_file(meta_path).data
        if meta.get("name") != folder.name:
            problems.append(Problem(str(meta_path), 1, 1, "$.name", "name must equal the folder name"))
            continue
        specs[folder.name] = AppSpec(
            name=meta["name"],
            description=meta["description"],
            namespace=meta["namespace"],
            priority_class=meta["priorityClass"],
            depends_on=tuple(meta.get("dependsOn", ())),
            images=tuple(sorted(meta.get("images", {}).items())),
            charts=tuple(sorted((k, v["repository"]) for k, v in meta.get("charts", {}).items())),
            ports=tuple((p["name"], p["port"]) for p in meta.get("ports", ())),
            expose=tuple(sorted(meta.get("expose", {}).items())),
            workloads=tuple(meta.get("workloads", ())),
            folder=folder,
            settings_schema=schema_path.read_text(encoding="utf-8"),
        )
    if problems:
        raise ConfigError(problems)
    return specs


def settings_schema(spec: AppSpec) -> dict[str, Any]:
    """The app's settings schema as a dict (without its `$schema` key, for embedding)."""
    schema: dict[str, Any] = json.loads(spec.settings_schema)
    schema.pop("$schema", None)
    return schema


def _value(raw: Any, settings: dict[str, Any]) -> Any:
    if isinstance(raw, str) and raw.startswith("settings."):
        return settings[raw.removeprefix("settings.")]
    return raw


def app_workloads(spec: AppSpec, settings: dict[str, Any], *, node_count: int,
                  zigbee: tuple[tuple[str, str | None], ...] = ()) -> list[Workload]:
    """The workloads an enabled app runs, with settings references resolved.

    `zigbee` lists (network name, node it is pinned to or None) for per-network apps.
    """
    out: list[Workload] = []
    for raw in spec.workloads:
        if "when" in raw and not _value(raw["when"], settings):
            continue
        volumes = tuple(
            Volume(v["name"], int(_value(v["sizeGiB"], settings)), str(_value(v["backupClass"], settings)))
            for v in raw.get("volumes", ())
        )
        base = {
            "app": spec.name,
            "kind": raw["kind"],
            "cpu_millis": int(_value(raw["cpuMillis"], settings)),
            "memory_mib": int(_value(raw["memoryMiB"], settings)),
            "per_node": bool(raw.get("perNode", False)),
            "termination_grace_seconds": int(raw.get("terminationGraceSeconds", 30)),
            "volumes": volumes,
        }
        replicas = node_count if raw.get("perNode") else int(_value(raw.get("replicas", 1), settings))
        if raw.get("perZigbeeNetwork"):
            for net, pinned in zigbee:
                out.append(Workload(name=f"{raw['name']}-{net}", replicas=replicas, pinned_to=pinned, **base))
        else:
            out.append(Workload(name=raw["name"], replicas=replicas, **base))
    return out
