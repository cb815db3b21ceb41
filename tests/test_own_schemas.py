"""hkgen's own schemas (schemas/kinds/, schemas/cloud-config.schema.json) against upstream (issue 18).

hkgen ships a schema per custom resource kind and one cloud-config schema, written from the API
facts: exactly the fields hkgen emits, unknown fields refused. Here they are proven against the
upstream schemas of the pinned releases, read from ../shared (never from the project):

* every document of the reference render (Flux), its Argo CD variant and every valid example case
  passes hkgen's schema and the upstream schemas (the pinned release's CRD, and the datree
  catalogue copy where ../shared has one); every user-data passes cloud-init's own schema with its
  deprecated keys refused;
* every property path of hkgen's schemas exists upstream, and hkgen's types, enums, patterns and
  bounds are no looser than upstream's (our schema never allows what upstream rejects);
* no file of the project is byte-identical to, or a trimmed copy of, a file under ../shared.

These tests skip only when ../shared is absent (CI has it).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import upstream
from conftest import need_path
from hkgen.areas.blueprint import build_blueprint
from hkgen.config.load import load_file, load_generated_all
from hkgen.render.jinja import render_blueprint
from hkgen.validation.validate import validate_document
from hkgen.verify import k8s as k8s_check
from hkgen.verify.tree import build_roots, kustomize_roots

REPO = Path(__file__).resolve().parents[1]
KINDS = REPO / "schemas" / "kinds"
CLOUD_CONFIG = REPO / "schemas" / "cloud-config.schema.json"
MINOR = "1.34"

needs_shared = pytest.mark.usefixtures("shared_upstream")


@pytest.fixture
def shared_upstream() -> None:
    """The upstream files in ../shared (CI has them: missing fails there, skips elsewhere)."""
    need_path(upstream.SHARED, "the upstream files (../shared)")


# --- the renders ---------------------------------------------------------------------------------------


def _render(cluster_file: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """(every Kubernetes object, every user-data document) of one cluster's render."""
    result = validate_document(load_file(cluster_file))
    assert result.cluster is not None, result.problems
    blueprint = build_blueprint(result.cluster)
    tree = render_blueprint(blueprint)
    built, problems = build_roots(blueprint, tree)
    assert not problems, problems
    objects = [doc for b in built for doc in b.documents]
    roots = kustomize_roots(tree)
    formats = {f.path: f.format for f in blueprint.files}
    user_data = []
    for path in sorted(tree):
        if formats.get(path) == "yaml" and not any(r == path.parent or r in path.parents for r in roots):
            objects += [d for d in load_generated_all(tree[path].decode()) if isinstance(d, dict) and "kind" in d]
        if path.name == "user-data":
            user_data.append((path, load_generated_all(tree[path].decode())[0]))
    return objects, user_data


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[dict[str, Any]], list[Any]]]:
    """The reference cluster (Flux), its Argo CD variant and every valid example case."""
    argo = tmp_path_factory.mktemp("argocd") / "cluster.yaml"
    text = (REPO / "clusters" / "home" / "cluster.yaml").read_text()
    assert "  engine: flux\n" in text
    argo.write_text(text.replace("  engine: flux\n", "  engine: argocd\n"))
    files = {"home": REPO / "clusters" / "home" / "cluster.yaml", "home-argocd": argo}
    files.update({f.stem: f for f in sorted((REPO / "tests" / "cases" / "valid").glob("*.yaml"))})
    return {name: _render(f) for name, f in files.items()}


def _custom(renders: dict[str, tuple[list[dict[str, Any]], list[Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, (objects, _ud) in renders.items():
        for doc in objects:
            group = doc["apiVersion"].rpartition("/")[0]
            if not k8s_check._is_core(group):
                yield name, doc


def _own_files() -> list[Path]:
    return sorted(KINDS.glob("*/*.json"))


def _own(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


def _gvk(schema: dict[str, Any]) -> tuple[str, str]:
    return schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"]


# --- hkgen's schemas on their own (no ../shared needed) ---------------------------------------------


def test_every_rendered_custom_resource_kind_has_an_own_schema(renders: dict[str, Any]) -> None:
    rendered = {(d["apiVersion"], d["kind"]) for _n, d in _custom(renders)}
    shipped = {_gvk(_own(p)) for p in _own_files()}
    assert rendered <= shipped, rendered - shipped
    assert {("helm.toolkit.fluxcd.io/v2", "HelmRelease"), ("argoproj.io/v1alpha1", "Application"),
            ("postgresql.cnpg.io/v1", "Cluster"), ("longhorn.io/v1beta2", "RecurringJob")} <= rendered


@pytest.mark.parametrize("path", _own_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_own_kind_schema_is_strict_and_named_by_its_kind(path: Path) -> None:
    from jsonschema import Draft202012Validator

    schema = _own(path)
    Draft202012Validator.check_schema(schema)
    api, kind = _gvk(schema)
    assert k8s_check.crd_schema_path(api, kind) == path
    # Every object that lists its fields refuses others; a free-form object says why it is one.
    for where, node in _nodes(schema):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path.name}: {where} allows unknown fields"
        elif node.get("type") == "object" and "additionalProperties" not in node and where != "metadata":
            assert node.get("description"), f"{path.name}: {where} is free-form without saying why"


def _nodes(schema: dict[str, Any], where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield where or "$", schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, f"{where}.{key}".lstrip("."))
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{where}.*")


def test_every_rendered_document_passes_hkgens_schemas(renders: dict[str, Any]) -> None:
    failures = []
    for name, doc in _custom(renders):
        found, errors = k8s_check.validate_object(doc, MINOR)
        assert found, (doc["apiVersion"], doc["kind"])
        failures += [(name, doc["kind"], doc["metadata"]["name"], e) for e in errors]
    validator = _own_cloud_config()
    for name, (_objects, user_data) in renders.items():
        for path, data in user_data:
            failures += [(name, str(path), list(e.absolute_path), e.message) for e in validator.iter_errors(data)]
    assert failures == []


def _own_cloud_config() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_own(CLOUD_CONFIG), format_checker=Draft202012Validator.FORMAT_CHECKER)


# --- against upstream -----------------------------------------------------------------------------------


@needs_shared
def test_every_rendered_document_passes_the_upstream_schemas(renders: dict[str, Any]) -> None:
    failures = []
    checked: set[tuple[str, str]] = set()
    seen: set[str] = set()
    for name, doc in _custom(renders):
        text = json.dumps(doc, sort_keys=True)
        if text in seen:
            continue  # the cases share most objects
        seen.add(text)
        gvk = (doc["apiVersion"], doc["kind"])
        schemas = upstream.crd_validator(*gvk)
        assert schemas is not None, f"no pinned upstream CRD for {gvk}"
        failures += [(name, "crd", doc["kind"], doc["metadata"]["name"], e) for e in schemas.errors(doc)]
        datree = upstream.datree_validator(*gvk)
        if datree is not None:
            failures += [(name, "datree", doc["kind"], list(e.absolute_path), e.message)
                         for e in datree.iter_errors(doc)]
        checked.add(gvk)
    cloud_init = upstream.cloud_config_validator()
    for name, (_objects, user_data) in renders.items():
        assert user_data or name != "home"
        for path, data in user_data:
            failures += [(name, str(path), list(e.absolute_path), e.message[:200])
                         for e in cloud_init.iter_errors(data)]
    assert failures == []
    assert len(checked) >= 10


def _types(node: dict[str, Any]) -> set[str] | None:
    """The JSON types a schema node allows (None: any)."""
    if "const" in node:
        return {_json_type(node["const"])}
    if "enum" in node and "type" not in node:
        return {_json_type(v) for v in node["enum"]}
    if node.get("x-kubernetes-int-or-string"):
        types = {"integer", "string"}
    elif "type" in node:
        raw = node["type"]
        types = set(raw if isinstance(raw, list) else [raw])
    else:
        return None
    if node.get("nullable"):
        types.add("null")
    if "number" in types:
        types.add("integer")
    return types


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", list: "array",
            dict: "object"}[type(value)]


_LOWER = ("minLength", "minimum", "minItems", "minProperties")
_UPPER = ("maxLength", "maximum", "maxItems", "maxProperties")


def _no_looser(ours: dict[str, Any], up: dict[str, Any], where: str, found: list[str]) -> None:
    """Problems where `ours` (hkgen's schema node) allows what `up` (the upstream CRD node) refuses."""
    if up.get("x-kubernetes-preserve-unknown-fields") and "properties" not in up:
        return  # free-form upstream: anything of ours is within it
    our_types, up_types = _types(ours), _types(up)
    if up_types is not None and (our_types is None or not our_types <= up_types):
        found.append(f"{where}: types {our_types} not within upstream {up_types}")
    values = ours.get("enum", [ours["const"]] if "const" in ours else None)
    if "enum" in up and (values is None or not set(values) <= set(up["enum"])):
        found.append(f"{where}: enum {values} not within upstream {up['enum']}")
    if "pattern" in up and ours.get("pattern") != up["pattern"] and not (
            values and all(re.search(up["pattern"], str(v)) for v in values)):
        found.append(f"{where}: upstream pattern {up['pattern']!r} not kept (ours {ours.get('pattern')!r})")
    for key in _LOWER:
        if key in up and not ours.get(key, float("-inf")) >= up[key]:
            found.append(f"{where}: {key} {ours.get(key)} is looser than upstream {up[key]}")
    for key in _UPPER:
        if key in up and not ours.get(key, float("inf")) <= up[key]:
            found.append(f"{where}: {key} {ours.get(key)} is looser than upstream {up[key]}")
    if "properties" in ours and not set(up.get("required", [])) <= set(ours.get("required", [])):
        found.append(f"{where}: upstream requires {up.get('required')}, ours {ours.get('required')}")
    up_props = up.get("properties") or {}
    up_extra = up.get("additionalProperties")
    for key, sub in (ours.get("properties") or {}).items():
        if where == "$" and key == "metadata":
            continue  # checked against Kubernetes' ObjectMeta by verify
        if key in up_props:
            _no_looser(sub, up_props[key], f"{where}.{key}", found)
        elif isinstance(up_extra, dict):
            _no_looser(sub, up_extra, f"{where}.{key}", found)
        elif not up.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f"{where}.{key}: no such field upstream")
    if isinstance(ours.get("additionalProperties"), dict):
        if isinstance(up_extra, dict):
            _no_looser(ours["additionalProperties"], up_extra, f"{where}.*", found)
        elif not up.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f"{where}: ours allows any key, upstream does not")
    elif (ours.get("type") == "object" and "properties" not in ours and ours.get("additionalProperties") is not False
          and not up.get("x-kubernetes-preserve-unknown-fields")):
        found.append(f"{where}: ours is free-form, upstream is not")
    if isinstance(ours.get("items"), dict):
        if isinstance(up.get("items"), dict):
            _no_looser(ours["items"], up["items"], f"{where}[]", found)
        else:
            found.append(f"{where}[]: upstream has no items here")


@needs_shared
@pytest.mark.parametrize("path", _own_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_own_kind_schema_is_within_the_pinned_upstream_crd(path: Path) -> None:
    ours = _own(path)
    up = upstream.crds().get(_gvk(ours))
    assert up is not None, f"no pinned upstream CRD for {_gvk(ours)}"
    found: list[str] = []
    _no_looser(ours, up, "$", found)
    assert found == []


def test_the_upstream_walk_finds_a_looser_schema() -> None:
    up = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string", "enum": ["x", "y"]}, "n": {"type": "integer", "maximum": 5},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}}}
    good = {"type": "object", "required": ["a"], "additionalProperties": False, "properties": {
        "a": {"type": "string", "enum": ["x"]}, "n": {"type": "integer", "maximum": 3},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}}}
    found: list[str] = []
    _no_looser(good, up, "$", found)
    assert found == []
    bad = json.loads(json.dumps(good))
    bad.pop("required")
    bad["properties"].update(a={"type": "string", "enum": ["x", "z"]}, n={"type": ["integer", "string"]},
                             b={"type": "string"}, m={"type": "object"})
    _no_looser(bad, up, "$", found)
    assert [f.split(":")[0] for f in found] == ["$", "$.a", "$.n", "$.n", "$.m", "$.b"], found


# --- the cloud-config schema against cloud-init's ---------------------------------------------------


def _resolve(node: Any, root: dict[str, Any]) -> list[dict[str, Any]]:
    """The plain alternatives of a draft-4 node: $ref followed, allOf/oneOf/anyOf flattened."""
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve(target, root) + ([rest] if set(rest) - {"description"} else [])
    out = [node]
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in node.get(key, []):
            out += _resolve(sub, root)
    return out


def _cc_no_looser(ours: dict[str, Any], ups: list[dict[str, Any]], where: str, root: dict[str, Any],
                  found: list[str]) -> None:
    our_types = _types(ours) or set()
    fitting = [u for u in ups if _types(u) is None or our_types & (_types(u) or set())]
    typed = [u for u in ups if _types(u) is not None]
    if typed and not any(our_types <= (_types(u) or set()) for u in typed):
        found.append(f"{where}: types {our_types} not allowed by cloud-init")
    if fitting and all(u.get("deprecated") or u.get("changed") for u in fitting if _types(u) is not None):
        found.append(f"{where}: cloud-init deprecates this form")
    enums = [u["enum"] for u in fitting if "enum" in u]
    values = ours.get("enum", [True, False] if our_types == {"boolean"} else [None])
    if enums and not set(values) <= {v for e in enums for v in e}:
        found.append(f"{where}: enum {ours.get('enum')} not within cloud-init's {enums}")
    for key, sub in (ours.get("properties") or {}).items():
        children = [c for u in fitting for c in _resolve((u.get("properties") or {}).get(key), root)]
        children += [c for u in fitting for pattern, s in (u.get("patternProperties") or {}).items()
                     if re.search(pattern, key) for c in _resolve(s, root)]
        if not children:
            found.append(f"{where}.{key}: not a key cloud-init knows here")
            continue
        _cc_no_looser(sub, children, f"{where}.{key}", root, found)
    if isinstance(ours.get("items"), dict):
        children = [c for u in fitting if isinstance(u.get("items"), dict) for c in _resolve(u["items"], root)]
        if not children:
            found.append(f"{where}[]: cloud-init has no list here")
        else:
            _cc_no_looser(ours["items"], children, f"{where}[]", root, found)


@needs_shared
def test_own_cloud_config_schema_is_within_cloud_inits() -> None:
    root = upstream.cloud_config()
    found: list[str] = []
    _cc_no_looser(_own(CLOUD_CONFIG), _resolve(root, root), "$", root, found)
    assert found == []


# --- nothing upstream in the project --------------------------------------------------------------------

_MIN_FILE = 256  # below this, equal bytes say nothing (empty files, one-line stubs)
_MIN_DESCRIPTION = 40
_MIN_SUBTREE = 400  # characters of canonical JSON


def _project_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / p for p in listed.decode().split("\0") if p and (REPO / p).is_file()]


def _fingerprints(node: Any, descriptions: set[str], subtrees: set[str]) -> None:
    """Long description strings and the hashes of large subtrees of a JSON/YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str) and len(value) >= _MIN_DESCRIPTION:
                descriptions.add(value)
            _fingerprints(value, descriptions, subtrees)
    elif isinstance(node, list):
        for value in node:
            _fingerprints(value, descriptions, subtrees)
    if isinstance(node, (dict, list)):
        text = json.dumps(node, sort_keys=True, default=str)
        if len(text) >= _MIN_SUBTREE:
            subtrees.add(hashlib.sha256(text.encode()).hexdigest())


@cache
def _upstream_fingerprints() -> tuple[set[str], set[str]]:
    descriptions: set[str] = set()
    subtrees: set[str] = set()
    for path in upstream.SHARED.rglob("*.json"):
        try:
            _fingerprints(json.loads(path.read_text("utf-8")), descriptions, subtrees)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
    for schema in upstream.crds().values():
        _fingerprints(schema, descriptions, subtrees)
    return descriptions, subtrees


@needs_shared
def test_no_project_file_is_an_upstream_file() -> None:
    shared = {}
    for path in upstream.SHARED.rglob("*"):
        if path.is_file() and path.stat().st_size >= _MIN_FILE:
            shared.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    # The project's own licence is the standard Apache-2.0 text, which charts ship too.
    copies = [(str(p.relative_to(REPO)), str(shared[h]))
              for p in _project_files() if p != REPO / "LICENSE" and p.stat().st_size >= _MIN_FILE
              and (h := hashlib.sha256(p.read_bytes()).hexdigest()) in shared]
    assert copies == []


@needs_shared
def test_no_project_schema_is_a_trimmed_upstream_schema() -> None:
    descriptions, subtrees = _upstream_fingerprints()
    copied = []
    for path in _project_files():
        if path.suffix != ".json" or path.name == ".hkgen-manifest.json":
            continue
        ours_d: set[str] = set()
        ours_s: set[str] = set()
        _fingerprints(json.loads(path.read_text("utf-8")), ours_d, ours_s)
        rel = str(path.relative_to(REPO))
        copied += [(rel, "description", d[:60]) for d in sorted(ours_d & descriptions)]
        copied += [(rel, "subtree", h[:12]) for h in sorted(ours_s & subtrees)]
    assert copied == []


@needs_shared
def test_the_trimmed_copy_check_recognises_one() -> None:
    descriptions, subtrees = _upstream_fingerprints()
    crd = upstream.crds()[("longhorn.io/v1beta2", "RecurringJob")]
    trimmed = {"type": "object", "properties": {"spec": crd["properties"]["spec"]}}
    ours_d: set[str] = set()
    ours_s: set[str] = set()
    _fingerprints(trimmed, ours_d, ours_s)
    assert ours_d & descriptions and ours_s & subtrees


def test_the_wheel_data_holds_no_upstream_schema_folder() -> None:
    # pyproject.toml maps schemas/ into the wheel whole: it must hold only hkgen's own files.
    names = {p.relative_to(REPO / "schemas").parts[0] for p in (REPO / "schemas").rglob("*") if p.is_file()}
    assert names == {"cluster.schema.json", "cloud-config.schema.json", "microk8s-launch-config.schema.json",
                     "network-config.schema.json", "kinds"}
    assert not list((REPO / "schemas").rglob("NOTICE*")) and not list((REPO / "schemas").rglob("LICENSE*"))


# --- a template mistake fails verify, located -----------------------------------------------------------


def test_unknown_custom_resource_field_and_cloud_config_key_fail_verify_located() -> None:
    """What a template typo gives: the rendered reference tree with one custom-resource field and one
    cloud-config key misspelt fails the real verify stage (kustomize builds included), each problem
    at the file, line and column of the misspelt key, naming it and the template."""
    from hkgen.core.errors import VerifyError
    from hkgen.verify.tree import verify

    result = validate_document(load_file(REPO / "clusters" / "home" / "cluster.yaml"))
    assert result.cluster is not None
    blueprint = build_blueprint(result.cluster)
    tree = dict(render_blueprint(blueprint))
    release = next(p for p in sorted(tree) if p.name.startswith("helmrelease-") and p.parts[0] == "platform")
    seed = next(p for p in sorted(tree) if p.name == "user-data")
    edits = {release: ("  maxHistory: 5\n", "  maxHistroy: 5\n"), seed: ("package_upgrade: false\n",
                                                                      "package_upgrades: false\n")}
    where = {}
    for path, (old, new) in edits.items():
        text = tree[path].decode()
        assert text.count(old) == 1, path
        tree[path] = text.replace(old, new).encode()
        where[path] = text[:text.index(old)].count("\n") + 1
    with pytest.raises(VerifyError) as err:
        verify(blueprint, tree)
    lines = [p.format() for p in err.value.problems]
    templates = {f.path: f.template for f in blueprint.files}
    name = yaml_name(tree[release])
    assert (f"clusters/home/{release}:{where[release]}:3: $.spec.maxHistroy: HelmRelease {name}: unknown field "
            f"'maxHistroy' (did you mean 'maxHistory'? fields hkgen writes here: ") in "\n".join(lines), lines
    assert any(line.startswith(f"clusters/home/{release}:{where[release]}:3:")
               and line.endswith(f"(template {templates[release]})") for line in lines), lines
    assert any(line.startswith(f"clusters/home/{seed}:{where[seed]}:1: $.package_upgrades: unknown key "
                               "'package_upgrades'") and "did you mean 'package_upgrade'?" in line
               for line in lines), lines
    assert len(lines) == 2, lines


def yaml_name(text: bytes) -> str:
    doc = load_generated_all(text.decode())[0]
    return f"{doc['metadata']['namespace']}/{doc['metadata']['name']}"
