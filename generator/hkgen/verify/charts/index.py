"""Local chart folders: finding a chart at a pinned version (directories and .tgz), its values
defaults, subcharts and the keys its templates read.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ...config.load import PathKey
from ...core.errors import ToolError, UsageError
from .sdk import helm_sdk

# --------------------------------------------------------------------------------------------
# Local charts

@dataclass(frozen=True)
class ChartEntry:
    """A chart found in the chart folders."""

    name: str
    version: str
    path: Path  # a chart directory or a .tgz


def _same_version(a: str, b: str) -> bool:
    return a == b or a.removeprefix("v") == b.removeprefix("v")


class ChartIndex:
    """Charts under the folders given by the user: chart directories (any name; Chart.yaml says
    which chart and version) and packaged `.tgz` charts, up to three folder levels deep.
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = tuple(folders)
        self.entries: list[ChartEntry] = []
        for folder in self.folders:
            if not folder.is_dir():
                raise UsageError(f"{folder}: no such chart folder")
            self._scan(folder, 0)

    def _scan(self, folder: Path, depth: int) -> None:
        meta = _chart_yaml(folder / "Chart.yaml")
        if meta:
            self.entries.append(ChartEntry(meta[0], meta[1], folder))
            return
        if depth > 3:
            return
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                self._scan(child, depth + 1)
            elif child.name.endswith((".tgz", ".tar.gz")):
                meta = _tgz_chart_yaml(child)
                if meta:
                    self.entries.append(ChartEntry(meta[0], meta[1], child))

    def find(self, name: str, version: str) -> ChartEntry | None:
        """The chart `name` at exactly `version` (a leading 'v' is not significant)."""
        for entry in self.entries:
            if entry.name == name and _same_version(entry.version, version):
                return entry
        return None

    def versions(self, name: str) -> list[str]:
        """Versions of `name` that are present."""
        return sorted({e.version for e in self.entries if e.name == name})


def _chart_meta(text: str) -> tuple[str, str] | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(data, dict) and data.get("name") and data.get("version") is not None:
        return str(data["name"]), str(data["version"])
    return None


def _chart_yaml(path: Path) -> tuple[str, str] | None:
    return _chart_meta(path.read_text("utf-8")) if path.is_file() else None


def _tgz_chart_yaml(path: Path) -> tuple[str, str] | None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    handle = tar.extractfile(member)
                    return _chart_meta(handle.read().decode("utf-8")) if handle else None
    except (OSError, tarfile.TarError, UnicodeDecodeError):
        return None
    return None


@dataclass(frozen=True)
class _Level:
    """What a chart says about one level of values: its values.yaml defaults there, the
    template-read trie there, and the chart itself when this is a chart's top level.
    """

    defaults: Any
    reads: Any
    chart: _ChartTree | None


@dataclass
class _ChartTree:
    """A chart's own defaults and its subcharts, as far as the values check needs them."""

    name: str
    version: str
    path: Path  # the directory Helm loads (a temp copy when the schema had to be made local)
    defaults: dict[str, Any]
    metadata: dict[str, Any]
    subcharts: dict[str, _ChartTree]  # values key (alias or name) -> subchart
    libraries: list[_ChartTree]
    schema_note: str  # why the schema cannot be checked offline ('' if it can)
    reads: dict[str, Any]  # values paths the chart's own templates read, as a trie ({} = read whole)

    def roots(self) -> list[_Level]:
        """Reference levels for this chart's top-level keys: itself and its library subcharts
        (a library's templates run in the parent's context and read the parent's values).
        """
        return [_Level(self.defaults, self.reads, self),
                *(_Level(lib.defaults, lib.reads, None) for lib in self.libraries)]

    def globals(self) -> _Level:
        """The union of the `global` maps (values.yaml and template reads) of the whole chart tree."""
        defaults: dict[str, Any] = {}
        reads: dict[str, Any] = {}
        for tree in self.walk():
            for source, into in ((tree.defaults, defaults), (tree.reads, reads)):
                g = source.get("global")
                if isinstance(g, dict):
                    _union_into(into, g)
        return _Level(defaults, reads, None)

    def walk(self) -> Iterator[_ChartTree]:
        """Yield this chart and every chart below it."""
        yield self
        for sub in self.subcharts.values():
            yield from sub.walk()

    def find_key(self, name: str) -> PathKey | None:
        """The values path of the subchart Helm calls `name` (alias or name), () for this chart."""
        if name == self.name:
            return ()
        for key, sub in self.subcharts.items():
            found = sub.find_key(name) if key != name else ()
            if found is not None:
                return (key, *found)
        return None


def _union_into(out: dict[str, Any], data: dict[str, Any]) -> None:
    for k, v in data.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            _union_into(out[k], v)
        elif k not in out or isinstance(v, dict):
            out[k] = v


# Temporary copies (expanded archives, schema-localised charts) live as long as the process.
_TEMP_DIRS: list[tempfile.TemporaryDirectory[str]] = []


def _temp_dir() -> Path:
    holder = tempfile.TemporaryDirectory(prefix="hkgen-charts-")
    _TEMP_DIRS.append(holder)
    return Path(holder.name)


@cache
def _chart_tree(path: Path) -> _ChartTree:
    """Load a chart (directory or .tgz) once per process, as a directory whose subcharts are
    directories too (packaged charts carry them as .tgz) and whose schemas need no network.
    """
    helm = helm_sdk()
    owned = False
    if path.is_file():
        path, owned = _expand(helm, path, _temp_dir()), True
    if any((path / "charts").rglob("*.tgz")) if (path / "charts").is_dir() else False:
        if not owned:
            copy_to = _temp_dir() / path.name
            shutil.copytree(path, copy_to, symlinks=False)
            path, owned = copy_to, True
        _expand_subcharts(helm, path)
    path, note = _local_schemas(path, owned)
    return _tree_at(helm, path, note)


def _expand(helm: Any, archive: Path, into: Path) -> Path:
    helm.expand(into, archive)
    dirs = [d for d in into.iterdir() if d.is_dir()]
    if len(dirs) != 1:
        raise ToolError(f"{archive}: not a chart archive")
    return dirs[0]


def _expand_subcharts(helm: Any, chart: Path) -> None:
    """Replace every `charts/*.tgz` (at any depth) by its directory, as Helm reads either."""
    folder = chart / "charts"
    if not folder.is_dir():
        return
    for archive in sorted(folder.glob("*.tgz")):
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".expand-"))
        expanded = _expand(helm, archive, staging)
        target = folder / expanded.name
        if target.exists():
            raise ToolError(f"{archive}: its chart folder {target.name} exists next to it")
        expanded.rename(target)
        staging.rmdir()
        archive.unlink()
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and (sub / "Chart.yaml").is_file():
            _expand_subcharts(helm, sub)


def _tree_at(helm: Any, path: Path, note: str) -> _ChartTree:
    chart = helm.Chart.load(path)
    try:
        metadata, defaults = chart.metadata, chart.values
    finally:
        chart.close()
    found: dict[str, _ChartTree] = {}
    sub_dir = path / "charts"
    if sub_dir.is_dir():
        for child in sorted(sub_dir.iterdir()):
            if child.is_dir() and (child / "Chart.yaml").is_file():
                sub = _tree_at(helm, child, note)
            else:
                continue
            found.setdefault(sub.name, sub)
    subcharts: dict[str, _ChartTree] = {}
    libraries: list[_ChartTree] = []
    declared = [d for d in metadata.get("dependencies") or [] if isinstance(d, dict)]
    for dep in declared:
        match = found.get(str(dep.get("name")))
        if match is None:
            continue
        subcharts[str(dep.get("alias") or match.name)] = match
        if match.metadata.get("type") == "library":
            libraries.append(match)
    for name, sub in found.items():
        if not any(s is sub for s in subcharts.values()):
            subcharts[name] = sub
    return _ChartTree(str(metadata.get("name")), str(metadata.get("version")), path, defaults or {}, metadata,
                      subcharts, libraries, note, _template_reads(path / "templates"))


# `.Values.a.b` (also `$.Values`, `$ctx.Values`), `(.Values.a).b` and `index .Values "a" "b"`.
_READ = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\)?)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_INDEX = re.compile(r"index\s+\(?\$?[A-Za-z0-9_]*\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\)?((?:\s+\"[^\"]*\")+)")


def _template_reads(folder: Path) -> dict[str, Any]:
    """Values paths a chart's templates read, as a trie: a key the templates read counts as
    defined even when values.yaml only mentions it in a comment (common in big charts).
    """
    trie: dict[str, Any] = {}
    if not folder.is_dir():
        return trie
    for file in sorted(folder.rglob("*")):
        if not file.is_file():
            continue
        text = file.read_text("utf-8", errors="replace")
        paths = [m.group(1) + (m.group(3) if m.group(2) else "") for m in _READ.finditer(text)]
        paths = [p.strip(".").split(".") for p in paths if p]
        for m in _INDEX.finditer(text):
            paths.append([*(p for p in m.group(1).strip(".").split(".") if p), *re.findall(r'"([^"]*)"', m.group(2))])
        for parts in paths:
            node = trie
            for part in parts:
                node = node.setdefault(part, {})
    return trie


_REMOTE_REF = re.compile(r'"\$ref"\s*:\s*"(https?://[^"#]+)')
_REMOTE_ID = re.compile(r'"\$id"\s*:\s*"https?://')


def _local_schemas(path: Path, owned: bool) -> tuple[Path, str]:
    """Point remote `$ref`s of the chart's JSON schemas at the copies inside the chart.

    Helm validates values.schema.json on every render and fetches remote refs over the network
    (bjw-s app-template refers to its `common` library by URL). A schema inside the chart whose
    `$id` is the referenced URL is that copy: in a temp copy of the chart, the URL's folder is
    replaced by the local folder. Refs that no schema in the chart answers stay, with a note.
    """
    remote: set[str] = set()
    remote_ids = False  # relative refs of a schema with a remote $id are remote too
    for p in path.rglob("*.json"):
        text = p.read_text("utf-8", errors="replace")
        remote.update(_REMOTE_REF.findall(text))
        remote_ids = remote_ids or bool(_REMOTE_ID.search(text))
    if not remote and not remote_ids:
        return path, ""
    dest = path
    if not owned:  # never edit the user's chart folder
        dest = _temp_dir() / path.name
        shutil.copytree(path, dest, symlinks=False)
    ids: dict[str, Path] = {}
    for p in dest.rglob("*.json"):
        try:
            data = json.loads(p.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("$id"), str) and data["$id"].startswith(("http://", "https://")):
            ids[data["$id"]] = p
    swaps = {url.rsplit("/", 1)[0] + "/": local.parent.as_uri() + "/" for url, local in ids.items()}
    missing = sorted(url for url in remote if not any(url.startswith(prefix) for prefix in swaps))
    for p in dest.rglob("*.json"):
        text = p.read_text("utf-8", errors="replace")
        new = text
        for old, local in swaps.items():
            new = new.replace(old, local)
        if new != text:
            p.write_text(new, "utf-8")
    note = f"its schema refers to {missing[0]}, which is not in the chart" if missing else ""
    return dest, note
