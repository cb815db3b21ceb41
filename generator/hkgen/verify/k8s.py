"""Verification checker: every Kubernetes object of the rendered tree against its schema.

Objects are what the kustomization roots build to, plus the objects of files no root covers (the
Flux entry folder, which Flux builds itself). Built-in kinds are checked against the strict
Kubernetes JSON schemas that PyPI `kubernetes-validate` ships, for the Kubernetes minor of the
cluster's MicroK8s channel; custom resources against hkgen's own schema of that kind
(`schemas/kinds/<group>/<kind>-<version>.json`: exactly the fields hkgen writes, unknown fields
refused, so a template typo fails here; tests prove each against the pinned upstream CRD), and
their metadata against the Kubernetes ObjectMeta schema. An object with no schema is an
error, not a pass. Objects the GitOps engine substitutes (under platform/ and apps/) may hold `$`
only in `${KEY}` placeholders of keys the cluster's secrets file has: Flux would replace anything
else that looks like a variable (with an empty string when unknown).

Problems name the output file, the template it came from, and the line of the offending value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from ..areas.parts import Blueprint
from ..config.load import json_path
from ..core.errors import Problem
from ..render.jinja import Rendered
from .tree import Built, kustomize_roots

__all__ = ["check", "crd_schema_path", "validate_object"]

_MAX_MESSAGE = 240
_PLACEHOLDER = re.compile(r"\$\{([_A-Za-z][_A-Za-z0-9]*)\}")
# What drone/envsubst (Flux's substitution) reads as the start of a variable after a `$`.
_VARIABLE_START = re.compile(r"[A-Za-z0-9_{$]")


# --- schemas --------------------------------------------------------------------------------------

def _is_core(group: str) -> bool:
    # Built-in API groups: the legacy core group, unqualified groups (apps, batch, ...) and *.k8s.io.
    return group == "" or "." not in group or group.endswith(".k8s.io")


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


@cache
def _k8s_dir(minor: str) -> Path | None:
    from importlib.util import find_spec

    # The package's folder without importing it: importing kubernetes_validate imports its
    # validation helpers (about 0.1 s) and hkgen only reads its schema files.
    spec = find_spec("kubernetes_validate")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        return None
    base = Path(folders[0]) / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    return base if base.is_dir() else None


@cache
def _registry(minor: str) -> Any:
    from referencing import Registry, Resource

    base = _k8s_dir(minor)
    assert base is not None  # noqa: S101 - callers check
    definitions = json.loads((base / "_definitions.json").read_text("utf-8"))
    return Resource.from_contents(definitions) @ Registry()


@cache
def _core_validator(minor: str, api_version: str, kind: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Resource

    base = _k8s_dir(minor)
    if base is None:
        return None
    group, version = _split(api_version)
    stem = kind.lower() + (f"-{group.split('.')[0]}" if group else "") + f"-{version}"
    path = base / f"{stem}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text("utf-8"))
    # Files also exist for nested types (ServiceSpec, ...): only a top-level kind with this exact
    # group/version/kind counts.
    gvks = schema.get("x-kubernetes-group-version-kind") or []
    if not any(g.get("group", "") == group and g.get("version") == version and g.get("kind") == kind for g in gvks):
        return None
    return Draft202012Validator(schema, registry=Resource.from_contents(schema) @ _registry(minor))


@cache
def _metadata_validator(minor: str) -> Any:
    from jsonschema import Draft202012Validator

    if _k8s_dir(minor) is None:
        return None
    schema = {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
              "$id": "https://kubernetes.io/api/objectmeta"}
    return Draft202012Validator(schema, registry=_registry(minor))


def crd_schema_path(api_version: str, kind: str) -> Path:
    """Where hkgen keeps its own JSON schema of a custom resource kind (one file per kind and version)."""
    from ..core.resources import data_dir

    group, version = _split(api_version)
    return data_dir("schemas") / "kinds" / group / f"{kind.lower()}-{version}.json"


def _schema_label(api_version: str, kind: str) -> str:
    group, version = _split(api_version)
    return f"schemas/kinds/{group}/{kind.lower()}-{version}.json"


@cache
def _crd_validator(api_version: str, kind: str) -> Any:
    from jsonschema import Draft202012Validator

    path = crd_schema_path(api_version, kind)
    if not path.is_file():
        return None
    return Draft202012Validator(json.loads(path.read_text("utf-8")))


def _unknown_fields(err: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """An additionalProperties error as one finding per unknown field, at the field's own path
    (so the problem points at its line), with the closest allowed name as a hint.
    """
    import difflib

    allowed = sorted(err.schema.get("properties") or {})
    out = []
    for key in err.instance:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        known = ", ".join(allowed) if allowed else "none"
        out.append(((*err.absolute_path, key), f"unknown field '{key}' ({hint}fields hkgen writes here: {known})"))
    return out


def validate_object(doc: dict[str, Any], minor: str) -> tuple[bool, list[tuple[tuple[str | int, ...], str]]]:
    """Check one object: (schema found, [(json path, message)])."""
    api_version, kind = str(doc.get("apiVersion")), str(doc.get("kind"))
    group, _ = _split(api_version)
    if _is_core(group):
        validator = _core_validator(minor, api_version, kind)
        meta = None
    else:
        validator = _crd_validator(api_version, kind)
        meta = _metadata_validator(minor)
    if validator is None:
        return False, []
    found: list[tuple[tuple[str | int, ...], str]] = []
    for err in validator.iter_errors(doc):
        if meta is not None and err.validator == "additionalProperties" and isinstance(err.instance, dict):
            found += _unknown_fields(err)
        else:
            found.append((tuple(err.absolute_path), err.message))
    if meta is not None and isinstance(doc.get("metadata"), dict):
        found += [(("metadata", *e.absolute_path), e.message) for e in meta.iter_errors(doc["metadata"])]
    return True, sorted(found, key=lambda x: [str(p) for p in x[0]])


# --- where an object came from --------------------------------------------------------------------

def _identity(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)  # noqa: S101
    return (str(doc.get("apiVersion")), str(doc.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


class _Sources:
    """Rendered YAML files parsed with positions, to point a problem at its line (built lazily)."""

    def __init__(self, blueprint: Blueprint, tree: Rendered) -> None:
        self.blueprint = blueprint
        self.tree = tree
        self.templates = {f.path: f.template for f in blueprint.files}
        self.formats = {f.path: f.format for f in blueprint.files}
        self._docs: dict[PurePosixPath, list[Any]] | None = None

    def plain(self, path: PurePosixPath) -> list[Any]:
        """The documents of a rendered file as YAML 1.2 reads them, as plain data.

        libyaml (C) reads them when no plain scalar means something else in YAML 1.1 than in 1.2
        (the check verify.reparse makes), which is every file hkgen renders; otherwise, and for
        a file libyaml refuses, ruamel's YAML 1.2 reader decides, as Flux would read it.
        """
        import yaml

        from ..config.load import load_generated_all
        from .tree import _plain_ambiguities

        text = self.tree[path].decode("utf-8")
        try:
            events = yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            if next(_plain_ambiguities(events), None) is None:
                return [d for d in load_generated_all(text) if isinstance(d, dict)]
        except yaml.YAMLError:
            pass
        return [json.loads(json.dumps(d)) for d in self.docs(path)]

    def docs(self, path: PurePosixPath) -> list[Any]:
        if self._docs is None:
            self._docs = {}
        if path not in self._docs:
            import io

            from ruamel.yaml import YAML

            try:
                text = self.tree[path].decode("utf-8")
                loaded = YAML(typ="rt", pure=True).load_all(io.StringIO(text))
                self._docs[path] = [d for d in loaded if isinstance(d, dict)]
            except Exception:  # unparsable files are reported by verify.reparse, with their line
                self._docs[path] = []
        return self._docs[path]

    def find(self, doc: dict[str, Any], root: PurePosixPath | None) -> tuple[PurePosixPath | None, Any]:
        """The rendered file (preferably under `root`) that holds `doc`, and its node there."""
        want = _identity(doc)
        for path in sorted(self.tree):
            if self.formats.get(path) != "yaml" or (root is not None and root not in path.parents):
                continue
            for node in self.docs(path):
                have = _identity(node)
                if have == want or (have[:2] == want[:2] and have[3] == want[3] and not have[2]):
                    return path, node
        return None, None

    def label(self, path: PurePosixPath) -> str:
        return f"clusters/{self.blueprint.cluster.name}/{path}"

    def template(self, path: PurePosixPath) -> str:
        return self.templates.get(path, "?")


def _position(node: Any, path: tuple[str | int, ...]) -> tuple[int, int]:
    """1-based line and column of the deepest part of `path` present in the ruamel `node`."""
    line, col = (node.lc.line + 1, node.lc.col + 1) if hasattr(node, "lc") else (0, 0)
    for part in path:
        lc: Any = getattr(node, "lc", None)
        try:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                pos = lc.item(part)
            elif isinstance(node, dict) and part in node:
                pos = lc.key(part)
            else:
                break
        except (AttributeError, KeyError, IndexError, TypeError):
            break
        line, col = pos[0] + 1, pos[1] + 1
        node = node[part]
    return line, col


# --- checks ---------------------------------------------------------------------------------------

def _strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield (*path, k), str(k)
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _substitution_problems(doc: dict[str, Any], keys: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
    from ..areas.gitops import SUBSTITUTE_ANNOTATION

    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)  # noqa: S101
    for field in ("annotations", "labels"):
        marks = meta.get(field)
        if isinstance(marks, dict) and marks.get(SUBSTITUTE_ANNOTATION) == "disabled":
            return []
    found = []
    for path, text in _strings(doc):
        i = text.find("$")
        while i >= 0:
            match = _PLACEHOLDER.match(text, i)
            if match:
                if match.group(1) not in keys:
                    found.append((path, f"placeholder {match.group(0)} names no key of the cluster's secrets file; "
                                        "Flux would substitute an empty string"))
                i = text.find("$", match.end())
                continue
            if _VARIABLE_START.match(text, i + 1):
                snippet = text[i:i + 12].split("\n")[0]
                found.append((path, f"{snippet!r} would be replaced by Flux's variable substitution; only ${{KEY}} "
                                    f"placeholders of cluster secrets may appear here (or annotate the object "
                                    f"{SUBSTITUTE_ANNOTATION}: disabled)"))
                break
            i = text.find("$", i + 1)
    return found


def _objects(blueprint: Blueprint, tree: Rendered, built: list[Built], sources: _Sources) -> Iterator[
        tuple[dict[str, Any], PurePosixPath | None, PurePosixPath | None]]:
    """(object, kustomization root or None, file when known without lookup)."""
    for b in built:
        for doc in b.documents:
            yield doc, b.root, None
    # Files no kustomization root covers (Flux's entry folder): their objects are checked as written.
    # Each folder is looked up once, by its ancestors in a set: testing every file against every
    # root was O(files x roots) (137k pathlib calls at 1,000 nodes).
    roots = set(kustomize_roots(tree))
    covered: dict[PurePosixPath, bool] = {}
    for path in sorted(tree):
        folder = path.parent
        if folder not in covered:
            covered[folder] = folder in roots or any(p in roots for p in folder.parents)
        if sources.formats.get(path) != "yaml" or covered[folder]:
            continue
        if b"apiVersion" not in tree[path] or b"kind" not in tree[path]:
            continue  # not a Kubernetes manifest (a seed's network-config, meta-data): no need to parse it
        # Plain data from libyaml (verify.reparse proves every plain scalar reads the same in YAML
        # 1.1 and 1.2); the ruamel round trip with positions is only loaded for a problem to locate.
        for doc in sources.plain(path):
            if "apiVersion" in doc and "kind" in doc:
                yield doc, None, path


# validate_object's results for the objects `prepare` checked ahead: (minor, canonical JSON) -> result.
_EARLY: dict[tuple[str, str], tuple[bool, list[tuple[tuple[str | int, ...], str]]]] = {}


def prepare(blueprint: Blueprint, tree: Rendered) -> None:
    """The share of `check` that needs no kustomize output, done while kustomize builds: the
    validators and schemas, and the objects of files no root covers (`check` finds them again).
    """
    minor = blueprint.cluster.kubernetes_minor
    if _k8s_dir(minor) is None:
        return
    _metadata_validator(minor)
    sources = _Sources(blueprint, tree)
    for doc, _root, _file in _objects(blueprint, tree, [], sources):
        if isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str):
            _EARLY[(minor, json.dumps(doc, sort_keys=True))] = validate_object(doc, minor)


def _validated(doc: dict[str, Any], minor: str, early: bool) -> tuple[bool, list[tuple[tuple[str | int, ...], str]]]:
    found = _EARLY.get((minor, json.dumps(doc, sort_keys=True))) if early else None
    return found if found is not None else validate_object(doc, minor)


def check(blueprint: Blueprint, tree: Rendered, built: list[Built]) -> list[Problem]:
    """Schema and substitution problems of every object in the rendered tree."""
    from ..areas.gitops import SUBSTITUTED_FOLDERS
    from ..config.secrets import required_keys

    cluster = blueprint.cluster
    minor = cluster.kubernetes_minor
    if _k8s_dir(minor) is None:
        return [Problem(cluster.source, 0, 0, "$.microk8s.channel",
                        f"the installed kubernetes-validate has no schemas for Kubernetes {minor}",
                        "upgrade kubernetes-validate (pip install -U kubernetes-validate)")]
    keys = {k.name for k in required_keys(cluster)}
    sources = _Sources(blueprint, tree)
    problems: set[Problem] = set()
    seen: set[tuple[Any, ...]] = set()
    for doc, root, file in _objects(blueprint, tree, built, sources):
        substituted = root is not None and bool(root.parts) and root.parts[0] in SUBSTITUTED_FOLDERS
        ident = (*_identity(doc), substituted)
        if ident in seen:
            continue
        seen.add(ident)
        findings: list[tuple[tuple[str | int, ...], str]] = []
        if not isinstance(doc.get("apiVersion"), str) or not isinstance(doc.get("kind"), str):
            findings.append(((), "not a Kubernetes object: apiVersion and kind are required"))
        else:
            has_schema, errors = _validated(doc, minor, early=file is not None)
            if not has_schema:
                group, _version = _split(doc["apiVersion"])
                where = (f"the Kubernetes {minor} schemas" if _is_core(group)
                         else _schema_label(doc["apiVersion"], doc["kind"]))
                findings.append(((), f"no schema for {doc['apiVersion']} {doc['kind']} (looked in {where})"))
            findings += errors
        if substituted:
            findings += _substitution_problems(doc, keys)
        if not findings:
            continue
        if file is None:
            file, node = sources.find(doc, root)
        else:
            node = next((n for n in sources.docs(file) if _identity(n) == _identity(doc)), None)
        if file is None:
            file = (root or PurePosixPath(".")) / "kustomization.yaml"
        name = f"{doc.get('kind')} {_identity(doc)[2] + '/' if _identity(doc)[2] else ''}{_identity(doc)[3]}"
        for path, message in findings:
            line, col = _position(node, path) if node is not None else (0, 0)
            text = message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "..."
            problems.add(Problem(sources.label(file), line, col, json_path(path),
                                 f"{name}: {text} (template {sources.template(file)})"))
    return sorted(problems)
