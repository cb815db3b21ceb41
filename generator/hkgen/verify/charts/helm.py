"""Rendering one release with Helm's own engine, Helm's log lines, splitting its output into manifests,
and Flux post-renderers.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .index import _ChartTree
from .releases import Release, _map
from .schemas import _short
from .sdk import helm_sdk
from .yamlpos import _helm_documents, _load_all

# --------------------------------------------------------------------------------------------
# Rendering

@dataclass(frozen=True)
class Manifest:
    """One rendered document: the template it came from and its data."""

    template: str
    data: Mapping[str, Any]

    @property
    def title(self) -> str:
        """`Kind namespace/name` for messages."""
        meta = _map(self.data.get("metadata"))
        ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
        return f"{self.data.get('kind')} {ns}{meta.get('name')}"


_GO_LOG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")
_SCHEMA_LOAD = re.compile(r'failing loading "([^"]+)"')
_SCHEMA_LINE = re.compile(r"^\s*- at '([^']*)': (.*)$")
_ADDITIONAL = re.compile(r"additional propert(?:y|ies) (.+) not allowed")


@contextmanager
def _go_stderr() -> Iterator[list[str]]:
    """Collect what Helm's Go code logs to file descriptor 2 (coalesce warnings), which would
    otherwise land on the terminal: the lines are turned into warnings instead.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(_go_log_records(sink.read().decode("utf-8", errors="replace")))


def _go_log_records(text: str) -> list[str]:
    """Go `log` records (`2006/01/02 15:04:05 message`, continuation lines folded in)."""
    records: list[str] = []
    for line in text.splitlines():
        stamp = _GO_LOG.match(line)
        if stamp:
            records.append(line[stamp.end():].strip())
        elif records and line.strip():
            records[-1] += " " + line.strip()
    return records


def _render(tree: _ChartTree, release: Release, kube_version: str,
            api_versions: Sequence[str]) -> tuple[dict[str, str], list[Mapping[str, str]], list[str]]:
    """`_rendered`, remembered for the same chart, values, names and capabilities."""
    return _rendered(tree.path, json.dumps(release.values, sort_keys=True), release.release_name, release.namespace,
                     kube_version, tuple(api_versions), release.include_crds)


@lru_cache(maxsize=64)
def _rendered(path: Path, values: str, name: str, namespace: str, kube_version: str, api_versions: tuple[str, ...],
              include_crds: bool) -> tuple[dict[str, str], list[Mapping[str, str]], list[str]]:
    """The rendered templates, the `crds/` files Helm would install with them, and what Helm logged.

    The chart is loaded afresh: rendering prunes disabled subcharts from the loaded chart in
    place (so it is never rendered twice), and after the render its `crds` are those of the
    enabled subcharts only, which is what Helm installs.
    """
    helm = helm_sdk()
    chart = helm.Chart.load(path)
    try:
        opts = {"name": name, "namespace": namespace, "kube_version": f"v{kube_version}.0",
                "api_versions": list(api_versions)}
        with _go_stderr() as logged:
            try:
                from helm_python import _native
            except ImportError:  # a future SDK without the private entry point: Helm's fixed capabilities
                rendered: dict[str, str] = chart.render(json.loads(values), name=name, namespace=namespace)
            else:
                rendered = json.loads(_native.call_string("helm_render", chart._raw(), values, json.dumps(opts)))
        return rendered, list(chart.crds) if include_crds else [], logged
    finally:
        chart.close()


def _manifests(rendered: Mapping[str, str], crds: Sequence[Mapping[str, str]]) -> tuple[list[Manifest], list[str]]:
    out: list[Manifest] = []
    bad: list[str] = []
    sources = [(name, text) for name, text in sorted(rendered.items()) if not name.endswith("NOTES.txt")]
    sources += [(str(c.get("filename") or c.get("name")), str(c.get("data") or "")) for c in crds]
    for name, text in sources:
        if not text.strip():
            continue
        try:
            docs = _helm_documents(text)
        except yaml.YAMLError as err:
            bad.append(f"{name}: rendered YAML does not parse: {_short(str(err), 200)}")
            continue
        for data in docs:
            if data is None:
                continue
            if not isinstance(data, dict) or "kind" not in data:
                bad.append(f"{name}: rendered a document without a kind")
                continue
            if data.get("kind") == "List" and isinstance(data.get("items"), list):
                out.extend(Manifest(name, i) for i in data["items"] if isinstance(i, dict))
                continue
            out.append(Manifest(name, data))
    return out, bad


def _post_render(manifests: list[Manifest], post: Sequence[Mapping[str, Any]]) -> tuple[list[Manifest], str]:
    """Flux `postRenderers` (kustomize patches and images), applied with kustomize as Flux does."""
    from ...core.yamlio import dump, dump_all
    from ..kustomize import build

    docs: list[Any] = [dict(m.data) for m in manifests]
    for step in post:
        kustomize = step.get("kustomize")
        if not isinstance(kustomize, dict):
            continue
        with tempfile.TemporaryDirectory(prefix="hkgen-postrender-") as tmp:
            root = Path(tmp)
            (root / "rendered.yaml").write_text(dump_all(docs), "utf-8")
            spec: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                    "resources": ["rendered.yaml"]}
            for key in ("patches", "patchesStrategicMerge", "patchesJson6902", "images"):
                if kustomize.get(key):
                    spec[key] = kustomize[key]
            (root / "kustomization.yaml").write_text(dump(spec), "utf-8")
            result = build(root)
            if not result.ok:
                return manifests, result.error.replace(str(root) + "/", "")
            docs = [d for d in _load_all(result.output) if isinstance(d, dict)]
    by_id = {_identity(m.data): m.template for m in manifests}
    return [Manifest(by_id.get(_identity(d), "postRenderers"), d) for d in docs], ""


def _identity(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = _map(data.get("metadata"))
    return (str(data.get("apiVersion")), str(data.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
