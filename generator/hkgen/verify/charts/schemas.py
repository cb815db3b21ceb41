"""Schemas for rendered manifests: CRDs the tree and the charts install (structural schemas), else
Kubernetes' and hkgen's own checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ...config.load import PathKey
from ...core.errors import UsageError

_MAX_ERRORS_PER_DOCUMENT = 10

# --------------------------------------------------------------------------------------------
# Manifest schemas

class ManifestSchemas:
    """Schemas for rendered documents, in this order: the CRDs the tree itself installs (plain
    CRD files, every chart's `crds/`, CRDs charts render from templates: the exact versions the
    cluster gets), `crd_folders` (datree layout, `<group>/<kind>_<version>.json`), then what the
    rest of the tree is checked with (`verify/k8s.validate_object`: Kubernetes' strict schemas of
    the cluster's version and hkgen's own schemas of the kinds it writes).
    """

    def __init__(self, kube_version: str, crd_documents: Sequence[dict[str, Any]] = (),
                 crd_folders: Sequence[Path] = ()) -> None:
        self.kube_version = ".".join(kube_version.removeprefix("v").split(".")[:2])
        self.core = _kubernetes(self.kube_version)
        self.crds: dict[tuple[str, str], dict[str, Any]] = {}
        for doc in crd_documents:
            self.add_crd(doc)
        self.folders = tuple(crd_folders)
        self._validators: dict[tuple[str, str], Any] = {}

    def api_versions(self) -> list[str]:
        """Capabilities for Helm: the built-in group/versions (and /Kind forms) of the cluster's
        Kubernetes version and those of every CRD the tree installs.
        """
        out: set[str] = set()
        for api, kind in (*self.core.builtin, *self.crds):
            out.update((api, f"{api}/{kind}"))
        return sorted(out)

    def add_crd(self, doc: Mapping[str, Any]) -> None:
        """Register the versions of a CustomResourceDefinition document (first one wins)."""
        spec = doc.get("spec")
        if doc.get("kind") != "CustomResourceDefinition" or not isinstance(spec, dict):
            return
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        for version in spec.get("versions") or []:
            if not isinstance(version, dict):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(schema, dict) and group and kind:
                self.crds.setdefault((f"{group}/{version.get('name')}", str(kind)), schema)

    def _own(self, api_version: str, kind: str) -> Any:
        """A cached validator from the tree's CRDs or the CRD folders; None if neither has one."""
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._build(api_version, kind)
        return self._validators[key]

    def _build(self, api_version: str, kind: str) -> Any:
        from jsonschema import Draft202012Validator

        schema = self.crds.get((api_version, kind))
        if schema is None:
            group, _, version = api_version.rpartition("/")
            for folder in self.folders:
                candidate = folder / group / f"{kind.lower()}_{version}.json"
                if group and candidate.is_file():
                    schema = json.loads(candidate.read_text("utf-8"))
                    break
        if schema is None:
            return None
        strict = _structural(schema, top=True)
        props = strict.setdefault("properties", {})
        meta = f"{self.core.definitions_id}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        props["metadata"] = {"$ref": meta}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        return Draft202012Validator(strict, registry=self.core.registry)

    def errors(self, doc: Mapping[str, Any]) -> list[tuple[PathKey, str]] | None:
        """Schema errors of one document (path, message); None when its kind has no schema."""
        validator = self._own(str(doc.get("apiVersion")), str(doc.get("kind")))
        if validator is None:
            from ..k8s import validate_object

            found, errors = validate_object(dict(doc), self.kube_version)
            if not found:
                return None
            return [(tuple(path), _short(message)) for path, message in errors[:_MAX_ERRORS_PER_DOCUMENT]]
        out: list[tuple[PathKey, str]] = []
        for err in validator.iter_errors(doc):
            out.append((tuple(err.absolute_path), _short(err.message)))
            if len(out) >= _MAX_ERRORS_PER_DOCUMENT:
                break
        return out


class _Kubernetes:
    """What the built-in API of one Kubernetes version offers: its group/version/kinds (Helm's
    capabilities) and kubernetes-validate's definitions (ObjectMeta for custom resources).
    """

    def __init__(self, minor: str) -> None:
        import kubernetes_validate
        from referencing import Registry, Resource

        base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
        if not base.is_dir():
            raise UsageError(f"no Kubernetes {minor} schemas in kubernetes-validate {kubernetes_validate.__version__}")
        definitions: dict[str, Any] = json.loads((base / "_definitions.json").read_text("utf-8"))
        self.definitions_id = str(definitions["$id"])
        self.registry: Any = Resource.from_contents(definitions) @ Registry()
        self.builtin: set[tuple[str, str]] = set()
        for schema in definitions["$defs"].values():
            gvks = schema.get("x-kubernetes-group-version-kind") or []
            if len(gvks) == 1:  # meta kinds (DeleteOptions, WatchEvent) list every group
                g = gvks[0]
                self.builtin.add((f"{g['group']}/{g['version']}" if g["group"] else g["version"], g["kind"]))


@cache
def _kubernetes(minor: str) -> _Kubernetes:
    return _Kubernetes(minor)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _structural(node: Any, top: bool = False) -> Any:
    """A CRD's OpenAPI v3 schema as a strict JSON schema: unknown fields are errors unless the CRD
    preserves them; int-or-string and nullable honoured; Go-only regexes made Python-readable.
    """
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions", "$defs"):  # maps of schemas
            out[key] = {k: _structural(v) for k, v in value.items()} if isinstance(value, dict) else value
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _structural(value)
        elif key == "pattern" and isinstance(value, str):
            fixed = _python_regex(value)
            if fixed is not None:
                out[key] = fixed
        elif key in ("format", "description", "example", "externalDocs"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        out.pop("anyOf", None)  # the integer/string alternatives again, one error instead of two
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if isinstance(out.get("enum"), list):
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-embedded-resource") and isinstance(out.get("properties"), dict):
        for name in ("apiVersion", "kind", "metadata"):
            out["properties"].setdefault(name, {})
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if top:
        out.setdefault("type", "object")
    return out


def _python_regex(pattern: str) -> str | None:
    for candidate in (pattern, re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", pattern)):
        try:
            re.compile(candidate)
        except re.error:
            continue
        return candidate
    return None  # a Go-only construct: dropped rather than guessed
