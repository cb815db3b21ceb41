"""The app catalogue: `apps/<name>/` folders read into `AppSpec`s, the conditions their files and
workloads carry, and app workloads resolved against a cluster.

An app folder holds `app.yaml` (metadata, checked against `apps/app.schema.json`),
`settings.schema.json` (the schema of its settings in cluster.yaml) and `templates/`. Folders
whose name starts with `_` hold templates shared by several apps and are not apps. Numbers and
switches in app.yaml may refer to settings (`memoryMiB: settings.memoryMiB`,
`when: settings.recorder == postgres`), so a user's override flows into the planner's arithmetic
and into the rendered files without Python changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, Problem
from ..core.resources import data_dir
from .load import load_generated

__all__ = [
    "CUSTOM_NAMESPACE",
    "EACH_KINDS",
    "AppSpec",
    "Container",
    "FileSpec",
    "ReleaseSpec",
    "Volume",
    "Workload",
    "app_workloads",
    "holds",
    "load_catalogue",
    "resolve",
    "settings_schema",
]

# What a file or workload may be repeated for; workloads.py supplies the items.
EACH_KINDS = ("zigbee",)
# The namespace of every `customApps` entry (catalogue apps name their own in app.yaml).
CUSTOM_NAMESPACE = "apps"
_CONDITION = re.compile(
    r"^(?P<neg>not )?(?P<scope>settings|cluster)\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?: (?P<op>==|!=|>=|<=|>|<) (?P<lit>[A-Za-z0-9_.-]+))?$"
)


@dataclass(frozen=True)
class Volume:
    """A persistent volume of a workload."""

    name: str
    size_gib: int
    backup_class: str

    @property
    def storage_class(self) -> str:
        """The Longhorn StorageClass of the volume's backup class (created by the platform)."""
        return f"longhorn-{self.backup_class}"


@dataclass(frozen=True)
class Container:
    """Requests of one container of a workload's pods (the first one is the main container)."""

    name: str
    cpu_millis: int
    memory_mib: int


@dataclass(frozen=True)
class Workload:
    """One pod group of an app as it will run: replicas, requests per pod, volumes.

    `cpu_millis` and `memory_mib` are what one pod asks the scheduler for: the main container
    plus its sidecars (listed in `containers`).
    """

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
    containers: tuple[Container, ...] = ()
    item: str | None = None  # the Zigbee network (or other `each` item) this instance serves

    @property
    def stateful(self) -> bool:
        """True when the workload keeps data on volumes."""
        return bool(self.volumes)

    @property
    def main(self) -> Container:
        """The main container's requests."""
        return self.containers[0] if self.containers else Container(self.name, self.cpu_millis, self.memory_mib)

    def container(self, name: str) -> Container:
        """Requests of the container called `name` (KeyError if the workload has none)."""
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no container {name!r}")

    def volume(self, name: str) -> Volume:
        """The volume called `name` (KeyError if the workload has none)."""
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(f"{self.name} has no volume {name!r}")


@dataclass(frozen=True)
class FileSpec:
    """One manifest template of an app and where its output goes inside the component folder."""

    template: str  # loader name, e.g. "apps/mosquitto/templates/statefulset.yaml.j2"
    output: str  # may hold "{name}" when `each` is set
    when: tuple[str, ...]
    each: str | None
    format: str
    params: tuple[tuple[str, Any], ...]  # `with:` values, settings references unresolved


@dataclass(frozen=True)
class ReleaseSpec:
    """A Helm release of an app: the chart key in `charts:` and the values template."""

    name: str
    chart: str
    values: str  # loader name of the values template
    timeout: str
    when: tuple[str, ...]


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
    files: tuple[FileSpec, ...] = ()
    releases: tuple[ReleaseSpec, ...] = ()


def _template_name(app: str, path: str) -> str:
    # "_common/x.j2" is a template shared by several apps; anything else lives in the app's own folder.
    if path.startswith("_"):
        folder, _, rest = path.partition("/")
        return f"apps/{folder}/templates/{rest}"
    return f"apps/{app}/templates/{path}"


def _when(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    return (raw,) if isinstance(raw, str) else tuple(raw)


@cache
def _app_validator() -> Any:
    """The app.yaml schema, compiled once per process."""
    from jsonschema import Draft7Validator

    return Draft7Validator(json.loads((data_dir("apps") / "app.schema.json").read_text("utf-8")))


def _check_meta(doc: Any, folder: Path, base: Path) -> list[Problem]:
    """Located problems of one app.yaml: its schema, then what a schema cannot say."""
    problems = [doc.problem(tuple(e.absolute_path), e.message) for e in _app_validator().iter_errors(doc.data)]
    if problems:
        return problems
    meta = doc.data
    if meta["name"] != folder.name:
        problems.append(doc.problem(("name",), "name must equal the folder name"))
    for kind in ("files", "releases"):
        for i, entry in enumerate(meta.get(kind, ())):
            template = entry["template"] if kind == "files" else entry["values"]
            name = _template_name(folder.name, template)
            if not (base / name.removeprefix("apps/")).is_file():
                problems.append(doc.problem((kind, i), f"template {name} does not exist"))
            for cond in _when(entry.get("when")):
                if not _CONDITION.match(cond):
                    problems.append(doc.problem((kind, i, "when"), f"cannot read condition {cond!r}"))
    for i, entry in enumerate(meta.get("releases", ())):
        if entry["chart"] not in meta.get("charts", {}):
            problems.append(doc.problem(("releases", i, "chart"),
                                        f"chart {entry['chart']!r} is not listed under charts"))
    for i, entry in enumerate(meta.get("workloads", ())):
        for cond in _when(entry.get("when")):
            if not _CONDITION.match(cond):
                problems.append(doc.problem(("workloads", i, "when"), f"cannot read condition {cond!r}"))
    return problems


@cache
def load_catalogue(root: Path | None = None) -> dict[str, AppSpec]:
    """Every app folder under `root` (default: hkgen's own apps/), by name.

    hkgen's own catalogue is kept, checked, in the CLI's cache folder, keyed by the hash of every
    file under apps/ (and hkgen's version and location): reading and schema-checking the app folders
    was a tenth of `hkgen validate`, which pre-commit runs on every commit.
    """
    base = root or data_dir("apps")
    cached = _cache_file(base) if root is None else None
    if cached is not None:
        try:
            found: dict[str, AppSpec] = pickle.loads(cached.read_bytes())  # noqa: S301 - hkgen's own cache
            with contextlib.suppress(OSError):
                os.utime(cached)  # in use: another checkout's store keeps it (see STALE_SECONDS)
            return found
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError, ValueError):
            pass  # no cache yet, or one from another hkgen: read the folders
    specs = _read_catalogue(base)
    if cached is not None:
        _store(cached, pickle.dumps(specs, protocol=pickle.HIGHEST_PROTOCOL))
    return specs


def _cache_file(base: Path) -> Path | None:
    """Where the checked catalogue of `base` is cached, or None without a cache folder."""
    from .. import __version__
    from ..core.resources import cache_dir

    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(f"{__version__}\0{base}\0".encode())
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(base).as_posix()}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return folder / "catalogue" / f"{digest.hexdigest()[:40]}.pickle"


# Entries of other catalogues (another checkout, another hkgen) are dropped only once unused this
# long: checkouts sharing ~/.cache/hkgen would otherwise delete each other's entry on every run.
STALE_SECONDS = 86_400


def _store(path: Path, data: bytes) -> None:
    """Write the cache file atomically, dropping entries unused for a day; a read-only cache is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.time()
        for old in path.parent.glob("*.pickle"):
            if old != path and now - old.stat().st_mtime > STALE_SECONDS:
                old.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        pass


def _read_catalogue(base: Path) -> dict[str, AppSpec]:
    specs: dict[str, AppSpec] = {}
    problems: list[Problem] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        meta_path = folder / "app.yaml"
        schema_path = folder / "settings.schema.json"
        if not meta_path.is_file() or not schema_path.is_file():
            problems.append(Problem(str(folder), 0, 0, "$", "app folder needs app.yaml and settings.schema.json"))
            continue
        # hkgen's own data files: libyaml is enough (and 10x faster than the hostile-input loader).
        doc = load_generated(meta_path.read_text("utf-8"), str(meta_path))
        found = _check_meta(doc, folder, base)
        if found:
            problems.extend(found)
            continue
        meta = doc.data
        name = meta["name"]
        files = tuple(
            FileSpec(
                template=_template_name(name, f["template"]),
                output=f.get("output", f["template"].rsplit("/", 1)[-1].removesuffix(".j2")),
                when=_when(f.get("when")), each=f.get("each"), format=f.get("format", "yaml"),
                params=tuple(sorted(f.get("with", {}).items())),
            )
            for f in meta.get("files", ())
        )
        releases = tuple(
            ReleaseSpec(name=r["name"], chart=r["chart"], values=_template_name(name, r["values"]),
                        timeout=r.get("timeout", "10m"), when=_when(r.get("when")))
            for r in meta.get("releases", ())
        )
        specs[name] = AppSpec(
            name=name,
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
            files=files,
            releases=releases,
        )
    for spec in specs.values():
        for dep in spec.depends_on:
            if dep not in specs:
                problems.append(Problem(str(spec.folder / "app.yaml"), 0, 0, "$.dependsOn",
                                        f"{spec.name} depends on {dep!r}, which is not in the catalogue"))
    if problems:
        raise ConfigError(problems)
    return specs


def settings_schema(spec: AppSpec) -> dict[str, Any]:
    """The app's settings schema as a dict (without its `$schema` key, for embedding)."""
    schema: dict[str, Any] = json.loads(spec.settings_schema)
    schema.pop("$schema", None)
    return schema


def resolve(raw: Any, settings: dict[str, Any]) -> Any:
    """`settings.<key>` replaced by that setting; anything else as it is."""
    if isinstance(raw, str) and raw.startswith("settings."):
        return settings[raw.removeprefix("settings.")]
    return raw


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def holds(conditions: tuple[str, ...], settings: dict[str, Any], cluster: Any = None) -> bool:
    """True when every condition holds.

    A condition is `[not ]settings.KEY [OP LITERAL]` or the same with `cluster.ATTR` (an attribute
    of the model, e.g. `cluster.backup`); without an operator the value's truth counts. OP is one
    of == != > >= < <= (the last four compare integers).
    """
    for cond in conditions:
        match = _CONDITION.match(cond)
        if not match:
            raise ValueError(f"cannot read condition {cond!r}")
        key = match["key"]
        value: Any = settings.get(key) if match["scope"] == "settings" else getattr(cluster, key)
        op, lit = match["op"], match["lit"]
        if op is None:
            result = bool(value)
        elif op in ("==", "!="):
            result = (_text(value) == lit) == (op == "==")
        else:
            left, right = int(value), int(lit)
            result = {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
        if result == bool(match["neg"]):
            return False
    return True


def app_workloads(spec: AppSpec, settings: dict[str, Any], cluster: Any) -> list[Workload]:
    """The workloads an enabled app runs in `cluster`, with settings references resolved.

    A workload with `each: zigbee` runs once per Zigbee network (`<name>-<network>`), pinned to
    the network's node when its coordinator is a USB stick there.
    """
    out: list[Workload] = []
    for raw in spec.workloads:
        if not holds(_when(raw.get("when")), settings, cluster):
            continue
        volumes = tuple(
            Volume(v["name"], int(resolve(v["sizeGiB"], settings)), str(resolve(v["backupClass"], settings)))
            for v in raw.get("volumes", ())
        )
        containers = [Container(raw["name"], int(resolve(raw["cpuMillis"], settings)),
                                int(resolve(raw["memoryMiB"], settings)))]
        containers += [
            Container(s["name"], int(resolve(s["cpuMillis"], settings)), int(resolve(s["memoryMiB"], settings)))
            for s in raw.get("sidecars", ()) if holds(_when(s.get("when")), settings, cluster)
        ]
        base = {
            "app": spec.name,
            "kind": raw["kind"],
            "cpu_millis": sum(c.cpu_millis for c in containers),
            "memory_mib": sum(c.memory_mib for c in containers),
            "per_node": bool(raw.get("perNode", False)),
            "termination_grace_seconds": int(raw.get("terminationGraceSeconds", 30)),
            "volumes": volumes,
            "containers": tuple(containers),
        }
        replicas = len(cluster.nodes) if raw.get("perNode") else int(resolve(raw.get("replicas", 1), settings))
        if raw.get("each") == "zigbee":
            for net in cluster.zigbee:
                out.append(Workload(name=f"{raw['name']}-{net.name}", replicas=replicas, pinned_to=net.node,
                                    item=net.name, **base))
        else:
            out.append(Workload(name=raw["name"], replicas=replicas, **base))
    return out
