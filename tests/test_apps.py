"""The app catalogue (issue 6): the app folders, the components they render for a cluster, and what
those manifests promise (failover, storage, secrets as placeholders, exposure, budgets, sizes).

Components are rendered with the real renderer, written to tmp and built with the real
`kubectl kustomize`; every built object is checked against the Kubernetes JSON schemas shipped in
kubernetes-validate (and CRD schemas where the repository has them). Shell scripts the manifests
carry are run with /bin/sh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import need_module, need_path
from hkgen.analysis.capacity import all_workloads
from hkgen.areas import workloads
from hkgen.config.catalogue import Volume, holds, load_catalogue
from hkgen.config.load import load_file
from hkgen.config.model import Cluster
from hkgen.config.schema import default_versions
from hkgen.config.secrets import required_keys
from hkgen.core.errors import ConfigError
from hkgen.core.yamlio import make_yaml
from hkgen.render.jinja import render_file
from hkgen.validation.validate import validate_document
from hkgen.verify.kustomize import build

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / "clusters" / "home" / "cluster.yaml"
APPS = REPO / "apps"
SAFE = YAML(typ="safe", pure=True)
FIVE = {"home-assistant", "zigbee2mqtt", "mosquitto", "monitoring", "grafana"}
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
NO_SUBSTITUTION = "kustomize.toolkit.fluxcd.io/substitute: disabled"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


# --- helpers ---------------------------------------------------------------------------------------


def load_cluster(path: Path) -> Cluster:
    result = validate_document(load_file(path))
    assert result.cluster is not None, [p.format() for p in result.errors]
    return result.cluster


def edited(tmp_path: Path, edit: Callable[[Any], None]) -> Path:
    """A copy of the reference cluster.yaml changed by `edit` (round-trip, comments kept)."""
    yaml = make_yaml()
    data = yaml.load(HOME.read_text())
    edit(data)
    dest = tmp_path / "cluster.yaml"
    with dest.open("w") as fh:
        yaml.dump(data, fh)
    return dest


def variant(tmp_path: Path, edit: Callable[[Any], None]) -> Cluster:
    return load_cluster(edited(tmp_path, edit))


class Rendered:
    """The app components of a cluster, rendered, written to `root` and built with kustomize."""

    def __init__(self, cluster: Cluster, root: Path) -> None:
        self.cluster = cluster
        self.components = {c.name: c for c in workloads.components(cluster)}
        base = {"cluster": cluster, "components": tuple(self.components.values())}
        self.files: dict[str, dict[str, str]] = {}
        self.docs: dict[str, list[dict[str, Any]]] = {}
        for name, comp in self.components.items():
            folder = root / name
            texts: dict[str, str] = {}
            for f in comp.files:
                data = render_file(f, base, cluster.source)
                dest = folder / f.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                texts[str(f.path)] = data.decode("utf-8")
            self.files[name] = texts
            result = build(folder)
            assert result.ok, f"{name}: kustomize build failed: {result.error}"
            self.docs[name] = [d for d in SAFE.load_all(result.output) if isinstance(d, dict)]

    def all_docs(self) -> Iterator[dict[str, Any]]:
        for docs in self.docs.values():
            yield from docs

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.all_docs() if d["kind"] == kind]

    def values(self, component: str, release: str) -> dict[str, Any]:
        rel = next(r for r in self.components[component].releases if r.name == release)
        plain: dict[str, Any] = json.loads(json.dumps(rel.values, default=_plain))
        return plain


def _plain(value: Any) -> Any:
    return dict(value) if hasattr(value, "keys") else list(value)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(doc)["containers"] if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def configmap_file(rendered: Rendered, configmap: str, key: str) -> str:
    text: str = rendered.get("ConfigMap", configmap)["data"][key]
    return text


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return Rendered(load_cluster(HOME), tmp_path_factory.mktemp("reference"))


# --- Kubernetes and CRD schemas -------------------------------------------------------------------


@cache
def _core_validator(minor: str, api: str, kind: str) -> Any:
    import kubernetes_validate
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
    path = base / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    registry = Resource.from_contents(json.loads((base / "_definitions.json").read_text())) @ Registry()
    schema = json.loads(path.read_text())
    return Draft202012Validator(schema, registry=Resource.from_contents(schema) @ registry)


@cache
def _crd_validator(api: str, kind: str) -> Any:
    from jsonschema import Draft202012Validator

    from hkgen.verify.k8s import crd_schema_path

    path = crd_schema_path(api, kind)
    return Draft202012Validator(json.loads(path.read_text())) if path.is_file() else None


# Custom resources the apps render; checked against hkgen's own schema of the kind once
# schemas/kinds/ holds it (verify's k8s_check does the same for the whole tree).
APP_CRDS = {("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "ScheduledBackup"),
            ("barmancloud.cnpg.io/v1", "ObjectStore"), ("cert-manager.io/v1", "Certificate")}


def schema_problems(cluster: Cluster, docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        api, kind, name = doc["apiVersion"], doc["kind"], doc["metadata"]["name"]
        validator = _core_validator(cluster.kubernetes_minor, api, kind)
        if validator is None:
            assert (api, kind) in APP_CRDS, f"no schema for {api} {kind}"
            validator = _crd_validator(api, kind)
            if validator is None:
                continue
        problems += [f"{kind}/{name}: {list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    return problems


# --- the catalogue itself --------------------------------------------------------------------------


def test_catalogue_holds_the_five_apps() -> None:
    catalogue = load_catalogue()
    assert set(catalogue) == FIVE
    assert {catalogue[a].namespace for a in ("home-assistant", "zigbee2mqtt", "mosquitto")} == {"home-automation"}
    assert {catalogue[a].priority_class for a in ("home-assistant", "zigbee2mqtt", "mosquitto")} == {"home-critical"}
    assert {catalogue[a].priority_class for a in ("monitoring", "grafana")} == {"monitoring"}


def test_every_template_is_used() -> None:
    """No orphan template: each one is a file or values template of an app, or included by one."""
    used = {f.template for spec in load_catalogue().values() for f in spec.files}
    used |= {r.values for spec in load_catalogue().values() for r in spec.releases}
    used |= {"apps/_common/templates/kustomization.yaml.j2"}
    used |= {f"apps/_custom/templates/{n}.j2"
             for n in ("workload.yaml", "service.yaml", "ingress.yaml", "secret.yaml", "login-secret.yaml")}
    included = set()
    for path in APPS.rglob("*.j2"):
        included |= set(re.findall(r'{%-? (?:include|import|from) "(apps/[^"]+)"', path.read_text()))
    everything = {"apps/" + str(p.relative_to(APPS)) for p in APPS.rglob("*.j2")}
    assert everything - used - included == set()
    assert (used | included) - everything == set()


def test_images_and_charts_are_pinned() -> None:
    pins = default_versions()
    for spec in load_catalogue().values():
        for key, _repo in spec.images:
            assert key in pins["images"], f"{spec.name}: image {key} has no pin in versions.yaml"
        for key, _repo in spec.charts:
            assert key in pins["charts"], f"{spec.name}: chart {key} has no pin in versions.yaml"


def test_names_agree_with_the_platform() -> None:
    """Storage and priority class names the apps use are the ones the platform creates."""
    from hkgen.areas import platform

    for backup_class in ("critical", "local", "none"):
        assert Volume("v", 1, backup_class).storage_class == platform.storage_class(backup_class)
    classes = {c["name"] for c in platform.PRIORITY_CLASSES}
    assert {spec.priority_class for spec in load_catalogue().values()} | {workloads.CUSTOM_PRIORITY} <= classes


def test_a_broken_app_folder_gives_located_errors(tmp_path: Path) -> None:
    root = tmp_path / "apps"
    (root / "broken" / "templates").mkdir(parents=True)
    (root / "broken" / "settings.schema.json").write_text('{"type": "object"}')
    (root / "broken" / "app.yaml").write_text(
        "name: broken\ndescription: x\nnamespace: home\npriorityClass: home\nworkloads: []\n"
        "files:\n  - template: missing.yaml.j2\n    when: settings.x ~ y\n")
    (root / "wrong" / "templates").mkdir(parents=True)
    (root / "wrong" / "settings.schema.json").write_text('{"type": "object"}')
    (root / "wrong" / "app.yaml").write_text(
        "name: wrong\ndescription: x\nnamespace: home\npriorityClass: urgent\nworkloads: []\ncolour: red\n")
    with pytest.raises(ConfigError) as err:
        load_catalogue(root)
    text = "\n".join(err.value.lines())
    assert re.search(r"broken/app\.yaml:7:\d+: \$\.files\[0\]: template apps/broken/templates/missing", text)
    assert re.search(r"broken/app\.yaml:8:\d+: \$\.files\[0\]\.when: cannot read condition", text)
    assert re.search(r"wrong/app\.yaml:4:\d+: \$\.priorityClass: 'urgent' is not one of", text)
    assert re.search(r"wrong/app\.yaml:1:1: \$: Additional properties are not allowed \('colour'", text)


def test_conditions() -> None:
    settings = {"on": True, "off": False, "kind": "postgres", "n": 2}

    class Model:
        backup = None
        name = "home"

    assert holds(("settings.on",), settings)
    assert not holds(("settings.off",), settings)
    assert holds(("not settings.off",), settings)
    assert holds(("settings.kind == postgres", "settings.n > 1", "settings.n <= 2"), settings)
    assert not holds(("settings.kind != postgres",), settings)
    assert not holds(("settings.on", "settings.n > 2"), settings)
    assert not holds(("cluster.backup",), settings, Model())
    assert holds(("cluster.name == home", "settings.on == true"), settings, Model())
    with pytest.raises(ValueError, match="cannot read condition"):
        holds(("settings.kind = postgres",), settings)


# --- the reference cluster's components ------------------------------------------------------------


def test_reference_renders_all_five_apps(reference: Rendered) -> None:
    comps = reference.components
    assert set(comps) == FIVE
    assert {c.layer for c in comps.values()} == {"apps"}
    assert comps["zigbee2mqtt"].depends_on == ("mosquitto",)
    assert comps["home-assistant"].depends_on == ("mosquitto",)
    assert comps["grafana"].depends_on == ("monitoring",)
    # One zigbee2mqtt per Zigbee network of the reference cluster.
    bridges = {d["metadata"]["name"] for d in reference.docs["zigbee2mqtt"] if d["kind"] == "StatefulSet"}
    assert bridges == {"zigbee2mqtt-house", "zigbee2mqtt-garden", "zigbee2mqtt-attic"}
    releases = {r.name: r.chart for r in comps["monitoring"].releases}
    assert releases["kube-prometheus-stack"].version == default_versions()["charts"]["kube-prometheus-stack"]
    assert releases["kube-prometheus-stack"].repository == "https://prometheus-community.github.io/helm-charts"
    assert releases["thanos"].repository == "https://stevehipwell.github.io/helm-charts"
    assert all(r.namespace == "monitoring" for r in comps["monitoring"].releases)


def test_every_object_validates(reference: Rendered) -> None:
    assert schema_problems(reference.cluster, list(reference.all_docs())) == []


def test_kustomization_lists_every_manifest(reference: Rendered) -> None:
    for name, files in reference.files.items():
        kustomization = SAFE.load(files["kustomization.yaml"])
        manifests = sorted(p for p in files if p != "kustomization.yaml" and p.endswith(".yaml"))
        assert kustomization["resources"] == manifests, name
        assert kustomization["namespace"] == reference.components[name].namespace


def test_apps_create_no_namespaces_or_classes(reference: Rendered) -> None:
    kinds = {d["kind"] for d in reference.all_docs()}
    assert not kinds & {"Namespace", "StorageClass", "PriorityClass"}
    assert {d["metadata"]["namespace"] for d in reference.all_docs()} == {"home-automation", "monitoring"}


def _pods(rendered: Rendered) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in rendered.all_docs():
        if doc["kind"] in WORKLOAD_KINDS:
            yield doc, pod_spec(doc)


def test_priority_classes_and_fast_failover(reference: Rendered) -> None:
    seconds = reference.cluster.pod_eviction_seconds
    seen = 0
    for doc, spec in _pods(reference):
        seen += 1
        if doc["metadata"]["namespace"] == "home-automation":
            assert spec["priorityClassName"] == "home-critical", doc["metadata"]["name"]
            tolerations = {(t["key"], t["effect"]): t.get("tolerationSeconds") for t in spec["tolerations"]
                           if t.get("key")}
            # a pod pinned to its USB stick's node tolerates that node being down for ever (None):
            # eviction could only leave a Pending copy for the same node
            wait = None if doc["metadata"]["name"] == "zigbee2mqtt-house" else seconds
            assert tolerations == {("node.kubernetes.io/unreachable", "NoExecute"): wait,
                                   ("node.kubernetes.io/not-ready", "NoExecute"): wait}, doc["metadata"]["name"]
        else:
            assert spec["priorityClassName"] == "monitoring", doc["metadata"]["name"]
        assert spec["enableServiceLinks"] is False
    assert seen == 6  # HA, 3 x zigbee2mqtt, mosquitto, grafana
    for pg in reference.kinds("Cluster"):
        assert pg["spec"]["priorityClassName"] == "monitoring"


def test_pod_disruption_budgets_where_replicas_exceed_one(reference: Rendered) -> None:
    pdbs = reference.kinds("PodDisruptionBudget")
    for doc, spec in _pods(reference):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["metadata"]["namespace"] == doc["metadata"]["namespace"]
                    and p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        if doc["spec"]["replicas"] > 1:
            assert len(matching) == 1, doc["metadata"]["name"]
            # ... and the replicas are spread over nodes.
            assert spec["affinity"]["podAntiAffinity"]
        else:
            assert matching == [], f"{doc['metadata']['name']}: a budget on one replica blocks every drain"
    for pg in reference.kinds("Cluster"):
        assert pg["spec"]["enablePDB"] is (pg["spec"]["instances"] > 1)


def test_requests_are_what_the_planner_counts(reference: Rendered) -> None:
    """Manifests ask the scheduler for exactly what validate's RAM check and the planner add up."""
    planned = {w.name: w for w in all_workloads(reference.cluster)}
    checked = set()
    for doc, spec in _pods(reference):
        w = planned[doc["metadata"]["name"]]
        memory = sum(int(c["resources"]["requests"]["memory"].removesuffix("Mi")) for c in spec["containers"])
        cpu = sum(int(c["resources"]["requests"]["cpu"].removesuffix("m")) for c in spec["containers"])
        assert (memory, cpu, doc["spec"]["replicas"]) == (w.memory_mib, w.cpu_millis, w.replicas), w.name
        checked.add(w.name)
    for pg in reference.kinds("Cluster"):
        w = planned[{"grafana-db": "grafana-postgres"}[pg["metadata"]["name"]]]
        requests = pg["spec"]["resources"]["requests"]
        assert (int(requests["memory"].removesuffix("Mi")), pg["spec"]["instances"]) == (w.memory_mib, w.replicas)
        assert pg["spec"]["storage"]["size"] == f"{w.volume('pgdata').size_gib}Gi"
        checked.add(w.name)
    chart_based = {"prometheus", "prometheus-operator", "kube-state-metrics", "node-exporter", "thanos-query",
                   "thanos-store", "thanos-compactor", "alertmanager", "blackbox-exporter", "smartctl-exporter"}
    assert set(planned) - checked == chart_based  # checked against the rendered charts in test_charts_*


def _documents(text: str) -> list[str]:
    return [part for part in re.split(r"^---$", text, flags=re.M) if part.strip()]


def test_secret_values_appear_only_as_placeholders(reference: Rendered) -> None:
    needed = {k.name for k in required_keys(reference.cluster)}
    for name, files in reference.files.items():
        for path, text in files.items():
            for part in _documents(text):
                keys = set(PLACEHOLDER.findall(part))
                assert keys <= needed, f"{name}/{path}: unknown keys {keys - needed}"
                if keys:
                    # Secret values only ever land in Secrets, never in a pod spec or a ConfigMap.
                    assert re.search(r"^kind: Secret$", part, re.M), f"{name}/{path} puts a secret outside a Secret"
    for secret in reference.kinds("Secret"):
        for key, value in {**secret.get("stringData", {}), **secret.get("data", {})}.items():
            if key.endswith(".yml"):
                continue  # a config file with placeholders inside (checked below)
            assert PLACEHOLDER.fullmatch(value) or key == "admin-user", f"{secret['metadata']['name']}/{key}"
    objstore = SAFE.load(reference.get("Secret", "thanos-objstore")["stringData"]["objstore.yml"])
    assert objstore["config"]["access_key"] == "${S3_ACCESS_KEY_ID}"
    assert objstore["config"]["secret_key"] == "${S3_SECRET_ACCESS_KEY}"  # noqa: S105 - a placeholder
    for comp in reference.components.values():
        for release in comp.releases:
            assert "${" not in json.dumps(release.values, default=_plain), f"{release.name} values hold a placeholder"


def test_manifests_survive_the_engines_substitution(reference: Rendered) -> None:
    """Flux's postBuild substitution (drone/envsubst) rewrites `${...}` everywhere and unescapes `$$`
    and backslashes: outside documents that opt out, only secret placeholders may use them."""
    needed = {k.name for k in required_keys(reference.cluster)}
    for name, files in reference.files.items():
        for path, text in files.items():
            for part in _documents(text):
                if NO_SUBSTITUTION in part:
                    continue
                assert "$$" not in part and "\\" not in part, f"{name}/{path}"
                braces = re.findall(r"\$\{[^}]*\}?", part)
                assert all(PLACEHOLDER.fullmatch(b) and b[2:-1] in needed for b in braces), f"{name}/{path}: {braces}"
    for comp in reference.components.values():
        for release in comp.releases:
            text = json.dumps(release.values, default=_plain)
            assert "$$" not in text and "${" not in text and "\\\\" not in text, release.name


def test_web_uis_are_ingresses_under_the_cluster_domain(reference: Rendered) -> None:
    hosts = {}
    for ingress in reference.kinds("Ingress"):
        assert ingress["spec"]["ingressClassName"] == "public"
        rule = ingress["spec"]["rules"][0]
        backend = rule["http"]["paths"][0]["backend"]["service"]
        reference.get("Service", backend["name"])  # points at a real service
        hosts[rule["host"]] = backend["name"]
    assert hosts == {
        "home-assistant.home.arpa": "home-assistant",
        "grafana.home.arpa": "grafana",
        "zigbee2mqtt-house.home.arpa": "zigbee2mqtt-house",
        "zigbee2mqtt-garden.home.arpa": "zigbee2mqtt-garden",
        "zigbee2mqtt-attic.home.arpa": "zigbee2mqtt-attic",
    }
    prometheus = reference.values("monitoring", "kube-prometheus-stack")["prometheus"]["ingress"]
    assert prometheus["ingressClassName"] == "public" and prometheus["hosts"] == ["prometheus.home.arpa"]


# --- Home Assistant ----------------------------------------------------------------------------------


def test_home_assistant_runs_once_on_longhorn_with_host_networking(reference: Rendered) -> None:
    sts = reference.get("StatefulSet", "home-assistant")
    spec = pod_spec(sts)
    assert sts["spec"]["replicas"] == 1
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["terminationGracePeriodSeconds"] == 30  # short: it adds directly to every failover (plan)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "longhorn-critical"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert container(sts, "home-assistant")["volumeMounts"] == [{"name": "config", "mountPath": "/config"}]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def _trusted_proxies(rendered: Rendered) -> list[str]:
    package = configmap_file(rendered, "home-assistant-hkgen", "hkgen.yaml")
    loader = YAML(typ="safe", pure=True)
    loader.constructor.add_constructor("!env_var", lambda _c, node: f"env:{node.value}")
    proxies: list[str] = loader.load(package)["http"]["trusted_proxies"]
    assert loader.load(package)["http"]["use_x_forwarded_for"] is True
    return proxies


def test_trusted_proxies_follow_the_ingress_path(reference: Rendered, tmp_path: Path) -> None:
    """The proxy connects from its pod address; with host networking also from a node's address
    (Calico masquerades pod traffic to other nodes). The LAN as a whole is never trusted."""
    cluster = reference.cluster
    assert _trusted_proxies(reference) == [cluster.pod_cidr] + [f"{n.ip}/32" for n in cluster.nodes]
    pod_network = Rendered(variant(tmp_path, lambda d: d["apps"]["home-assistant"].update(hostNetwork=False)),
                           tmp_path / "out")
    assert _trusted_proxies(pod_network) == [cluster.pod_cidr]
    spec = pod_spec(pod_network.get("StatefulSet", "home-assistant"))
    assert "hostNetwork" not in spec and "dnsPolicy" not in spec


def _run_script(script: str, tmp_path: Path, paths: dict[str, Path], env: dict[str, str] | None = None,
                fakes: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run a script the manifests carry with /bin/sh; absolute paths mapped into tmp, fake programs first on PATH."""
    for old, new in paths.items():
        # Whole paths only: /config must not match inside /hkgen/configuration.yaml.
        script = re.sub(r"(?<![\w./-])" + re.escape(old) + r"(?![\w.-])", str(new), script)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, body in (fakes or {}).items():
        (bindir / name).write_text("#!/bin/sh\n" + body)
        (bindir / name).chmod(0o755)
    path = tmp_path / "script.sh"
    path.write_text(script)
    full_env = {"PATH": f"{bindir}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(["/bin/sh", str(path), *args], env=full_env, capture_output=True, text=True, timeout=30,
                          check=False)


def test_home_assistant_configuration_is_seeded_once(reference: Rendered, tmp_path: Path) -> None:
    cm = reference.get("ConfigMap", "home-assistant-hkgen")["data"]
    hkgen_dir, config = tmp_path / "hkgen", tmp_path / "config"
    hkgen_dir.mkdir()
    config.mkdir()
    for name in ("configuration.yaml", "hkgen.yaml"):
        (hkgen_dir / name).write_text(cm[name])
    paths = {"/hkgen": hkgen_dir, "/config": config}
    first = _run_script(cm["init.sh"], tmp_path, paths)
    assert first.returncode == 0, first.stderr
    assert (config / "configuration.yaml").read_text() == cm["configuration.yaml"]
    assert "!include_dir_named packages" in cm["configuration.yaml"]
    assert (config / "packages" / "hkgen.yaml").read_text() == cm["hkgen.yaml"]
    assert (config / "automations.yaml").read_text() == "[]\n"
    # The user edits the configuration; the next start keeps it and refreshes only hkgen's package.
    (config / "configuration.yaml").write_text("default_config:\nlogger:\n  default: info\n")
    (config / "packages" / "hkgen.yaml").write_text("stale\n")
    second = _run_script(cm["init.sh"], tmp_path, paths)
    assert second.returncode == 0, second.stderr
    assert (config / "configuration.yaml").read_text() == "default_config:\nlogger:\n  default: info\n"
    assert (config / "packages" / "hkgen.yaml").read_text() == cm["hkgen.yaml"]


def test_recorder_on_its_own_postgres(tmp_path: Path) -> None:
    rendered = Rendered(variant(tmp_path, lambda d: d["apps"]["home-assistant"].update(recorder="postgres")),
                        tmp_path / "out")
    db = rendered.get("Cluster", "home-assistant-db")
    assert db["spec"]["instances"] == 2
    assert db["spec"]["priorityClassName"] == "home-critical"
    assert db["spec"]["storage"] == {"size": "5Gi", "storageClass": "longhorn-critical"}
    assert db["spec"]["affinity"]["podAntiAffinityType"] == "required"
    assert db["spec"]["plugins"][0]["parameters"] == {"barmanObjectName": "home-assistant-db-backup"}
    env = env_of(container(rendered.get("StatefulSet", "home-assistant"), "home-assistant"))
    assert env["RECORDER_DB_URL"] == {"secretKeyRef": {"name": "home-assistant-db-app", "key": "uri"}}
    assert "db_url: !env_var RECORDER_DB_URL" in configmap_file(rendered, "home-assistant-hkgen", "hkgen.yaml")
    nightly = rendered.get("ScheduledBackup", "home-assistant-db-nightly")
    assert nightly["spec"]["cluster"]["name"] == "home-assistant-db"
    assert "home-assistant-db" in {w.name for w in all_workloads(rendered.cluster)}
    assert schema_problems(rendered.cluster, list(rendered.all_docs())) == []


# --- zigbee2mqtt -------------------------------------------------------------------------------------


def _bridge(rendered: Rendered, net: str) -> tuple[dict[str, Any], dict[str, Any]]:
    sts = rendered.get("StatefulSet", f"zigbee2mqtt-{net}")
    return sts, env_of(container(sts, "zigbee2mqtt"))


def test_one_bridge_per_network_with_its_own_topic_and_coordinator(reference: Rendered) -> None:
    expected = {
        "house": ("/dev/serial/by-id/usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus_a4c1386e2b47ed11a2d3b7a9-if00-port0",
                  "zstack", "15"),
        "garden": ("tcp://192.168.10.31:6638", "zstack", "20"),
        "attic": ("tcp://192.168.10.32:6638", "ember", "25"),
    }
    client_ids = set()
    for net, (port, adapter, channel) in expected.items():
        _sts, env = _bridge(reference, net)
        assert env["ZIGBEE2MQTT_CONFIG_SERIAL_PORT"] == port
        assert env["ZIGBEE2MQTT_CONFIG_SERIAL_ADAPTER"] == adapter
        assert env["ZIGBEE2MQTT_CONFIG_ADVANCED_CHANNEL"] == channel
        assert env["ZIGBEE2MQTT_CONFIG_MQTT_BASE_TOPIC"] == f"zigbee2mqtt/{net}"
        assert env["ZIGBEE2MQTT_CONFIG_MQTT_SERVER"] == "mqtt://mosquitto.home-automation.svc:1883"
        assert env["ZIGBEE2MQTT_CONFIG_MQTT_USER"] == f"zigbee2mqtt-{net}"  # each bridge its own ACL
        assert env["Z2M_ONBOARD_NO_SERVER"] == "1"
        client_ids.add(env["ZIGBEE2MQTT_CONFIG_MQTT_CLIENT_ID"])
    assert len(client_ids) == 3  # never two sessions with one client id


def test_usb_bridge_is_pinned_and_network_bridges_move_freely(reference: Rendered) -> None:
    house, _env = _bridge(reference, "house")
    spec = pod_spec(house)
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "w1"}
    assert container(house, "zigbee2mqtt")["securityContext"] == {"privileged": True}
    device = "/dev/serial/by-id/usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus_a4c1386e2b47ed11a2d3b7a9-if00-port0"
    volume = next(v for v in spec["volumes"] if v["name"] == "coordinator")
    assert volume["hostPath"] == {"path": device, "type": "CharDevice"}
    for net in ("garden", "attic"):
        sts, _env = _bridge(reference, net)
        spec = pod_spec(sts)
        assert "nodeSelector" not in spec and "affinity" not in spec
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container(sts, "zigbee2mqtt")["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert all(v["name"] != "coordinator" for v in spec["volumes"])


def test_network_coordinator_and_usb_on_a_tainted_control_plane(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        nets = data["zigbee"]["networks"]
        nets[1]["coordinator"] = {"host": "192.168.10.40", "port": 6638}
        data["nodes"][1]["usbDevices"] = [{"name": "zigbee-cp", "id": "usb-dresden_elektronik_ConBee_III-if00-port0",
                                           "kind": "zigbee"}]
        nets[2]["coordinator"] = {"node": "cp2", "device": "zigbee-cp"}

    rendered = Rendered(variant(tmp_path, edit), tmp_path / "out")
    garden, env = _bridge(rendered, "garden")
    assert env["ZIGBEE2MQTT_CONFIG_SERIAL_PORT"] == "tcp://192.168.10.40:6638"
    assert "nodeSelector" not in pod_spec(garden)
    attic, env = _bridge(rendered, "attic")
    assert env["ZIGBEE2MQTT_CONFIG_SERIAL_PORT"] == "/dev/serial/by-id/usb-dresden_elektronik_ConBee_III-if00-port0"
    spec = pod_spec(attic)
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "cp2"}
    # cp2 takes no apps (NoSchedule taint): the pinned bridge tolerates that, nothing else does.
    assert {"operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert {"operator": "Exists", "effect": "NoSchedule"} not in pod_spec(garden)["tolerations"]
    assert schema_problems(rendered.cluster, list(rendered.all_docs())) == []


def test_network_identity_comes_from_the_secrets_file(reference: Rendered) -> None:
    for net in ("house", "garden", "attic"):
        sts, _env = _bridge(reference, net)
        assert container(sts, "zigbee2mqtt")["envFrom"] == [{"secretRef": {"name": f"zigbee2mqtt-{net}"}}]
        key = f"ZIGBEE_{net.upper()}"
        assert reference.get("Secret", f"zigbee2mqtt-{net}")["stringData"] == {
            "ZIGBEE_NETWORK_KEY": f"${{{key}_NETWORK_KEY}}",
            "ZIGBEE_PAN_ID": f"${{{key}_PAN_ID}}",
            "ZIGBEE_EXT_PAN_ID": f"${{{key}_EXT_PAN_ID}}",
            "ZIGBEE2MQTT_CONFIG_MQTT_PASSWORD": f"${{MQTT_PASSWORD_ZIGBEE2MQTT_{net.upper()}}}",
            # The frontend can re-pair and remove devices: it asks for a token from the secrets file.
            "ZIGBEE2MQTT_CONFIG_FRONTEND_AUTH_TOKEN": "${ZIGBEE2MQTT_FRONTEND_TOKEN}",
        }


def test_without_the_frontend_no_token_is_needed(tmp_path: Path) -> None:
    from hkgen.config.secrets import required_keys

    with_frontend = {k.name for k in required_keys(load_cluster(REPO / "clusters/home/cluster.yaml"))}
    cluster = variant(tmp_path, lambda d: d["apps"]["zigbee2mqtt"].update(frontend=False))
    assert "ZIGBEE2MQTT_FRONTEND_TOKEN" in with_frontend
    assert {k.name for k in required_keys(cluster)} == with_frontend - {"ZIGBEE2MQTT_FRONTEND_TOKEN"}


def test_start_script_hands_zigbee2mqtt_its_network_identity(reference: Rendered, tmp_path: Path) -> None:
    """The secrets file holds hex; zigbee2mqtt parses its variables as JSON. Run the real script."""
    script = configmap_file(reference, "zigbee2mqtt-start", "start.sh")
    sts, _env = _bridge(reference, "garden")
    args = tuple(container(sts, "zigbee2mqtt")["args"])
    assert container(sts, "zigbee2mqtt")["command"] == ["/bin/sh", "/hkgen/start.sh"]
    fake = 'env | grep -E "^(ZIGBEE|ZIGBEE2MQTT)_" | sort > "$OUT"\necho "$@" >> "$OUT"\n'
    out = tmp_path / "out.txt"
    done = _run_script(script, tmp_path, {}, env={
        "ZIGBEE_NETWORK_KEY": "00ff10a0b1c2d3e4f5061728394a5b6c", "ZIGBEE_PAN_ID": "1a62",
        "ZIGBEE_EXT_PAN_ID": "dddddddddddddd01", "OUT": str(out)}, fakes={"docker-entrypoint.sh": fake}, args=args)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines[:-1])
    assert json.loads(values["ZIGBEE2MQTT_CONFIG_ADVANCED_NETWORK_KEY"]) == list(
        bytes.fromhex("00ff10a0b1c2d3e4f5061728394a5b6c"))
    assert json.loads(values["ZIGBEE2MQTT_CONFIG_ADVANCED_EXT_PAN_ID"]) == [221] * 7 + [1]
    assert json.loads(values["ZIGBEE2MQTT_CONFIG_ADVANCED_PAN_ID"]) == 0x1A62
    assert not any(k in values for k in ("ZIGBEE_NETWORK_KEY", "ZIGBEE_PAN_ID", "ZIGBEE_EXT_PAN_ID"))
    assert lines[-1] == "/sbin/tini -- node index.js"


# --- Mosquitto ---------------------------------------------------------------------------------------


def test_mosquitto_listens_authenticated_on_a_fixed_address(reference: Rendered) -> None:
    conf = configmap_file(reference, "mosquitto-config", "mosquitto.conf").splitlines()
    for line in ("listener 1883", "allow_anonymous false", "password_file /mosquitto/auth/passwd",
                 "persistence true", "persistence_location /mosquitto/data/"):
        assert line in conf
    # Pods reach the broker at `mosquitto`; the LAN at `mosquitto-lan`, with TLS only by default.
    internal = reference.get("Service", "mosquitto")
    assert internal["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in internal["spec"]["ports"]] == [1883, 8883]
    service = reference.get("Service", "mosquitto-lan")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in service["spec"]["ports"]] == [8883]
    assert service["metadata"]["annotations"] == {"metallb.universe.tf/loadBalancerIPs": "192.168.10.200",
                                                  "coredns.io/hostname": "mqtt"}  # k8s-gateway: mqtt.<domain>
    assert "loadBalancerIP" not in service["spec"]
    sts = reference.get("StatefulSet", "mosquitto")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "longhorn-local"
    auth = next(v for v in pod_spec(sts)["volumes"] if v["name"] == "auth")
    assert auth["emptyDir"]["medium"] == "Memory"  # the password file never touches a disk
    assert set(reference.get("Secret", "mosquitto-users")["stringData"]) == {
        "MQTT_PASSWORD_HOMEASSISTANT", "MQTT_PASSWORD_ZIGBEE2MQTT_HOUSE", "MQTT_PASSWORD_ZIGBEE2MQTT_GARDEN",
        "MQTT_PASSWORD_ZIGBEE2MQTT_ATTIC", "MQTT_PASSWORD_ESPHOME", "MQTT_PASSWORD_NODE_RED_LAPTOP"}


def test_password_file_is_built_from_the_secrets(reference: Rendered, tmp_path: Path) -> None:
    script = configmap_file(reference, "mosquitto-config", "passwd.sh")
    auth = tmp_path / "auth"
    auth.mkdir()
    calls = tmp_path / "calls"
    fake = f'echo "$@" >> {calls}\n'
    env = {"MQTT_PASSWORD_HOMEASSISTANT": "pw-ha", "MQTT_PASSWORD_ZIGBEE2MQTT_HOUSE": "pw z2m",
           "MQTT_PASSWORD_ZIGBEE2MQTT_GARDEN": "pw-g", "MQTT_PASSWORD_ZIGBEE2MQTT_ATTIC": "pw-a",
           "MQTT_PASSWORD_ESPHOME": "pw-esp", "MQTT_PASSWORD_NODE_RED_LAPTOP": "pw-nr"}
    file = auth / "passwd"
    sts = reference.get("StatefulSet", "mosquitto")
    init = next(c for c in pod_spec(sts)["initContainers"] if c["name"] == "passwords")
    assert init["command"] == ["/bin/sh", "/mosquitto/config/passwd.sh", "/mosquitto/auth/passwd"]
    done = _run_script(script, tmp_path, {}, env=env, fakes={"mosquitto_passwd": fake}, args=(str(file),))
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        f"-b {file} homeassistant pw-ha", f"-b {file} zigbee2mqtt-house pw z2m", f"-b {file} zigbee2mqtt-garden pw-g",
        f"-b {file} zigbee2mqtt-attic pw-a", f"-b {file} esphome pw-esp", f"-b {file} node-red-laptop pw-nr"]
    assert file.stat().st_mode & 0o077 == 0


# --- Prometheus, Thanos, Grafana ---------------------------------------------------------------------


def test_prometheus_values_fit_microk8s_and_a_pi(reference: Rendered) -> None:
    values = reference.values("monitoring", "kube-prometheus-stack")
    cps = [n.ip for n in reference.cluster.control_planes]
    assert values["crds"]["enabled"] is False  # the platform's crds layer installs them first
    assert values["grafana"]["enabled"] is False
    # Alertmanager (alerts:): two replicas on distinct nodes, its configuration is hkgen's Secret.
    am = values["alertmanager"]
    assert am["enabled"] is True and am["alertmanagerSpec"]["configSecret"] == "hkgen-alertmanager"
    assert am["alertmanagerSpec"]["useExistingSecret"] is True
    assert (am["alertmanagerSpec"]["replicas"], am["alertmanagerSpec"]["podAntiAffinity"]) == (2, "hard")
    assert values["kubeEtcd"]["enabled"] is False
    assert values["kubeControllerManager"]["endpoints"] == cps == values["kubeScheduler"]["endpoints"]
    assert values["kubeProxy"]["endpoints"] == [n.ip for n in reference.cluster.nodes]
    spec = values["prometheus"]["prometheusSpec"]
    assert (spec["retention"], spec["retentionSize"]) == ("3d", "8GB")
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "longhorn-local" and claim["resources"]["requests"]["storage"] == "10Gi"
    assert spec["thanos"]["objectStorageConfig"]["existingSecret"] == {"name": "thanos-objstore", "key": "objstore.yml"}
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    # The operator's default grace (600 s) would hold a dead node's Prometheus volume for ten
    # minutes; the figure `hkgen plan` uses is the one rendered.
    (prom,) = [w for w in all_workloads(reference.cluster) if w.name == "prometheus"]
    assert spec["terminationGracePeriodSeconds"] == prom.termination_grace_seconds == 120
    thanos = reference.values("monitoring", "thanos")
    assert thanos["objstoreConfig"] == {"create": False, "name": "thanos-objstore", "key": "objstore.yml"}
    assert thanos["additionalEndpoints"] == [
        "dnssrv+_grpc._tcp.kube-prometheus-stack-thanos-discovery.monitoring.svc.cluster.local"]
    assert "--retention.resolution-raw=90d" in thanos["compact"]["extraArgs"]
    objstore = SAFE.load(reference.get("Secret", "thanos-objstore")["stringData"]["objstore.yml"])
    assert objstore["prefix"] == "home/thanos"
    assert objstore["config"]["endpoint"] == "s3.eu-central-1.wasabisys.com"
    assert objstore["config"]["bucket"] == "home-cluster-backups" and objstore["config"]["insecure"] is False


def test_grafana_on_highly_available_postgres(reference: Rendered) -> None:
    deploy = reference.get("Deployment", "grafana")
    assert deploy["spec"]["replicas"] == 2
    anti = pod_spec(deploy)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    env = env_of(container(deploy, "grafana"))
    assert env["GF_DATABASE_TYPE"] == "postgres"
    assert env["GF_DATABASE_HOST"] == "grafana-db-rw.monitoring.svc:5432"
    assert env["GF_DATABASE_PASSWORD"] == {"secretKeyRef": {"name": "grafana-db-app", "key": "password"}}
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "grafana-admin", "key": "admin-password"}}
    db = reference.get("Cluster", "grafana-db")
    assert db["spec"]["instances"] == 3
    assert db["spec"]["affinity"]["enablePodAntiAffinity"] is True
    assert db["spec"]["affinity"]["podAntiAffinityType"] == "required"
    assert db["spec"]["storage"]["storageClass"] == "longhorn-critical"
    # Critical: WAL archiving and nightly base backups to the S3 target.
    assert db["spec"]["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                      "parameters": {"barmanObjectName": "grafana-db-backup"}}]
    store = reference.get("ObjectStore", "grafana-db-backup")["spec"]
    assert store["configuration"]["destinationPath"] == "s3://home-cluster-backups/home/postgres"
    assert store["configuration"]["s3Credentials"]["accessKeyId"] == {"name": "grafana-db-s3", "key": "ACCESS_KEY_ID"}
    assert store["retentionPolicy"] == "14d"
    nightly = reference.get("ScheduledBackup", "grafana-db-nightly")["spec"]
    assert nightly["schedule"] == "0 30 2 * * *" and nightly["method"] == "plugin"


def test_grafana_datasource_and_dashboards(reference: Rendered) -> None:
    sources = SAFE.load(configmap_file(reference, "grafana-provisioning", "datasources.yaml"))["datasources"]
    assert sources == [{"name": "Thanos", "uid": "prometheus", "type": "prometheus", "access": "proxy",
                        "url": "http://thanos-query.monitoring.svc:10902", "isDefault": True, "editable": False,
                        "jsonData": {"timeInterval": "60s", "prometheusType": "Thanos"}}]
    dashboards = reference.get("ConfigMap", "grafana-dashboards")
    assert dashboards["metadata"]["annotations"] == {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}
    titles = {}
    for name, text in dashboards["data"].items():
        board = json.loads(text)
        titles[name] = board["title"]
        assert len(board["panels"]) >= 6
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "prometheus"
            assert all(t["expr"] for t in panel["targets"])
    assert titles == {"nodes.json": "Nodes", "longhorn.json": "Longhorn", "apps.json": "Apps",
                      "home.json": "Is my house OK?"}
    assert "longhorn_volume_robustness" in dashboards["data"]["longhorn.json"]
    assert "namespace=~'home-automation|monitoring'" in dashboards["data"]["apps.json"]


def test_smaller_grafana_without_offsite_backups(tmp_path: Path) -> None:
    rendered = Rendered(variant(tmp_path, lambda d: d["apps"]["grafana"].update(replicas=1, backupClass="local")),
                        tmp_path / "out")
    assert rendered.kinds("PodDisruptionBudget") == []
    assert "affinity" not in pod_spec(rendered.get("Deployment", "grafana"))
    assert rendered.kinds("ObjectStore") == [] and rendered.kinds("ScheduledBackup") == []
    db = rendered.get("Cluster", "grafana-db")
    assert "plugins" not in db["spec"] and db["spec"]["storage"]["storageClass"] == "longhorn-local"


def _chart_dir(name: str, version: str) -> Path:
    path = Path("/work/shared/charts") / f"{name}-{version}"
    return need_path(path, "chart sources")


@pytest.mark.charts
def test_charts_render_with_these_values(reference: Rendered) -> None:
    """The values use the real charts' keys: rendered with the Helm SDK, the objects carry the
    requests, priority and storage hkgen planned, and validate against the Kubernetes schemas."""
    helm = need_module("helm_python")
    planned = {w.name: w for w in all_workloads(reference.cluster)}
    pods: dict[str, dict[str, Any]] = {}
    prometheus: dict[str, Any] = {}
    for release in reference.components["monitoring"].releases:
        values = reference.values("monitoring", release.name)
        with helm.Chart.load(str(_chart_dir(release.chart.name, release.chart.version))) as chart:
            chart.validate_schema(values)
            out = chart.render(values, name=release.name, namespace=release.namespace)
        docs = [d for key, text in sorted(out.items()) if key.endswith(".yaml")
                for d in SAFE.load_all(text) if isinstance(d, dict)]
        core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com")]
        assert schema_problems(reference.cluster, core) == []
        for d in docs:
            if d["kind"] in WORKLOAD_KINDS:
                pods[d["metadata"]["name"]] = d
            if d["kind"] == "Prometheus":
                prometheus = d
    names = {"prometheus-operator": "kube-prometheus-stack-operator",
             "kube-state-metrics": "kube-prometheus-stack-kube-state-metrics",
             "node-exporter": "kube-prometheus-stack-prometheus-node-exporter",
             "thanos-query": "thanos-query", "thanos-store": "thanos-store-gateway",
             "thanos-compactor": "thanos-compact"}
    assert set(pods) == set(names.values())
    for workload, object_name in names.items():
        doc, w = pods[object_name], planned[workload]
        assert pod_spec(doc)["priorityClassName"] == "monitoring"
        requests = pod_spec(doc)["containers"][0]["resources"]["requests"]
        assert requests == {"cpu": f"{w.cpu_millis}m", "memory": f"{w.memory_mib}Mi"}, workload
    spec, w = prometheus["spec"], planned["prometheus"]
    assert spec["priorityClassName"] == "monitoring"
    assert spec["resources"]["requests"] == {"cpu": f"{w.main.cpu_millis}m", "memory": f"{w.main.memory_mib}Mi"}
    assert spec["thanos"]["resources"]["requests"]["memory"] == f"{w.container('thanos-sidecar').memory_mib}Mi"
    operator = pods["kube-prometheus-stack-operator"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--config-reloader-memory-request={w.container('config-reloader').memory_mib}Mi" in operator
    assert spec["storage"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "longhorn-local"
    compact = pods["thanos-compact"]["spec"]["volumeClaimTemplates"][0]["spec"]
    assert compact["storageClassName"] == "longhorn-none"


# --- switching apps off, bad settings ----------------------------------------------------------------


@pytest.mark.parametrize("off", [("grafana",), ("monitoring",), ("home-assistant",), ("zigbee2mqtt",),
                                 ("mosquitto", "zigbee2mqtt", "home-assistant")])
def test_disabling_an_app_removes_its_component(tmp_path: Path, off: tuple[str, ...]) -> None:
    def edit(data: Any) -> None:
        for name in off:
            data["apps"][name]["enabled"] = False

    cluster = variant(tmp_path, edit)
    comps = {c.name: c for c in workloads.components(cluster)}
    assert set(comps) == FIVE - set(off)
    templates = {f.template for c in comps.values() for f in c.files}
    assert not any(t.startswith(tuple(f"apps/{name}/" for name in off)) for t in templates)
    assert not {w.app for w in all_workloads(cluster)} & set(off)
    for comp in comps.values():
        assert not set(comp.depends_on) & set(off)
    if "monitoring" in off:  # Grafana stays, without a datasource to point at
        grafana = Rendered(cluster, tmp_path / "out")
        assert SAFE.load(configmap_file(grafana, "grafana-provisioning", "datasources.yaml"))["datasources"] == []


def _locate(text: str, needle: str) -> tuple[int, int]:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("mosquitto.loadBalancerIP", "192.168.10.50",
     "$.apps.mosquitto.loadBalancerIP: 192.168.10.50 is outside the load-balancer pool 192.168.10.200-192.168.10.220"),
    ("grafana.replicas", 7, "$.apps.grafana.replicas: 7 is out of range: must be at most 3"),
    ("home-assistant.recorder", "mysql", "$.apps.home-assistant.recorder: 'mysql' is not one of 'sqlite', 'postgres'"),
    ("zigbee2mqtt.backupClass", "offsite", "$.apps.zigbee2mqtt.backupClass: 'offsite' is not one of"),
    ("monitoring.retention", "3 days", "$.apps.monitoring.retention: '3 days' does not match"),
])
def test_bad_settings_give_located_errors(tmp_path: Path, hkgen, setting: str, value: Any, message: str) -> None:
    app, key = setting.split(".")
    path = edited(tmp_path, lambda d: d["apps"][app].update({key: value}))
    run = hkgen("validate", str(path), cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    line, col = _locate(path.read_text(), f"{key}: {value}")
    assert f"cluster.yaml:{line}:{col + len(key) + 2}: {message}" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_unknown_setting_is_located_with_a_suggestion(tmp_path: Path, hkgen) -> None:
    path = edited(tmp_path, lambda d: d["apps"]["monitoring"].update(retentoin="3d"))
    run = hkgen("validate", str(path), cwd=tmp_path)
    line, col = _locate(path.read_text(), "retentoin")
    assert run.returncode == 1
    assert (f"cluster.yaml:{line}:{col}: $.apps.monitoring.retentoin: unknown key 'retentoin' "
            "(hint: did you mean 'retention'?)") in run.stdout


# --- custom apps -------------------------------------------------------------------------------------

CUSTOM = [
    {"name": "node-red", "image": "docker.io/nodered/node-red:4.1.2", "port": 1880, "memoryMiB": 192,
     "storage": {"sizeGiB": 2, "mountPath": "/data", "backupClass": "critical"},
     "env": {"TZ": "Europe/Berlin", "NODE_RED_ENABLE_PROJECTS": "false"},
     "secretEnv": {"NODE_RED_CREDENTIAL_SECRET": "NODE_RED_SECRET"}},
    {"name": "esphome", "image": "ghcr.io/esphome/esphome:2025.11.1", "port": 6052, "hostNetwork": True,
     "expose": "loadBalancer"},
]


def test_custom_apps_get_the_same_treatment(tmp_path: Path) -> None:
    cluster = variant(tmp_path, lambda d: d.update(customApps=CUSTOM))
    rendered = Rendered(cluster, tmp_path / "out")
    assert set(rendered.components) == FIVE | {"node-red", "esphome"}
    assert rendered.components["node-red"].namespace == "apps"
    red = rendered.get("StatefulSet", "node-red")
    spec = pod_spec(red)
    assert spec["priorityClassName"] == "home"
    assert spec["tolerations"][0]["tolerationSeconds"] == cluster.pod_eviction_seconds
    assert red["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "longhorn-critical"
    app = container(red, "node-red")
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert env_of(app) == {"NODE_RED_ENABLE_PROJECTS": "false", "TZ": "Europe/Berlin"}
    assert app["envFrom"] == [{"secretRef": {"name": "node-red-env"}}]
    assert app["resources"]["requests"] == {"cpu": "100m", "memory": "192Mi"}
    assert rendered.get("Secret", "node-red-env")["stringData"] == {"NODE_RED_CREDENTIAL_SECRET": "${NODE_RED_SECRET}"}
    assert rendered.get("Ingress", "node-red")["spec"]["rules"][0]["host"] == "node-red.home.arpa"
    esphome = rendered.get("Deployment", "esphome")
    assert pod_spec(esphome)["hostNetwork"] is True
    assert pod_spec(esphome)["dnsPolicy"] == "ClusterFirstWithHostNet"
    service = rendered.get("Service", "esphome")
    # The highest free address of the pool: nothing is handed out dynamically.
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"] == {"metallb.universe.tf/loadBalancerIPs": "192.168.10.220"}
    assert [i["metadata"]["name"] for i in rendered.kinds("Ingress") if i["metadata"]["namespace"] == "apps"] == [
        "node-red"]
    assert schema_problems(cluster, list(rendered.all_docs())) == []
    planned = {w.name: w for w in all_workloads(cluster)}
    assert planned["node-red"].kind == "StatefulSet" and planned["esphome"].kind == "Deployment"


def test_custom_load_balancers_need_free_addresses(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        data["network"]["loadBalancerPool"] = "192.168.10.200-192.168.10.202"
        data["customApps"] = [CUSTOM[1]]

    with pytest.raises(ConfigError, match=r"no free address left in the load-balancer pool for esphome"):
        workloads.components(variant(tmp_path, edit))


def test_a_custom_app_keeps_the_address_it_asks_for(tmp_path: Path) -> None:
    # Devices on the LAN point at these addresses: a fixed one survives reordering and removals.
    fixed = {**CUSTOM[1], "loadBalancerIP": "192.168.10.220"}
    other = {"name": "music", "image": "docker.io/library/nginx:1.29.3", "port": 80, "expose": "loadBalancer"}
    cluster = variant(tmp_path, lambda d: d.update(customApps=[other, fixed]))
    rendered = Rendered(cluster, tmp_path / "out")
    addresses = {name: rendered.get("Service", name)["metadata"]["annotations"]["metallb.universe.tf/loadBalancerIPs"]
                 for name in ("esphome", "music")}
    assert addresses == {"esphome": "192.168.10.220", "music": "192.168.10.219"}


def test_custom_app_cannot_take_a_catalogue_web_address(tmp_path: Path) -> None:
    clash = {"name": "zigbee2mqtt-house", "image": "docker.io/library/nginx:1.29.3", "port": 80}
    with pytest.raises(ConfigError, match=r"both want the web address zigbee2mqtt-house\.home\.arpa"):
        workloads.components(variant(tmp_path, lambda d: d.update(customApps=[clash])))


# --- the whole pipeline ------------------------------------------------------------------------------


def test_full_render_places_and_verifies_every_app(home_copy: Path) -> None:
    """Validate, plan, render and verify the reference cluster (kustomize builds, schema checks):
    every app's files are in the tree; switching grafana off takes exactly its files out."""
    from hkgen.pipeline import render_cluster

    full = render_cluster(home_copy)
    assert {c.name for c in full.blueprint.components} >= FIVE
    by_app = {name: {f.path for f in full.blueprint.files if f.template.startswith(f"apps/{name}/")} for name in FIVE}
    assert all(by_app.values()), by_app
    assert all(path in full.tree for paths in by_app.values() for path in paths)

    text = (home_copy / "cluster.yaml").read_text()
    off = text.replace("  grafana:\n    enabled: true", "  grafana:\n    enabled: false")
    assert off != text
    (home_copy / "cluster.yaml").write_text(off)
    without = render_cluster(home_copy)
    assert "grafana" not in {c.name for c in without.blueprint.components}
    assert not any(f.template.startswith("apps/grafana/") for f in without.blueprint.files)
    gone = set(full.tree) - set(without.tree)
    assert by_app["grafana"] <= gone
    # Besides its own files, only the restore gate's database manifests go: grafana's database was
    # the only CloudNativePG database of the reference that the gate creates.
    others = {p for p in gone if "grafana" not in str(p)}
    assert others == {PurePosixPath("platform/configs/restore-gate/databases.yaml")}, gone
    assert "grafana-db" in full.tree[PurePosixPath("platform/configs/restore-gate/databases.yaml")].decode()


# --- the checked catalogue is cached per content ------------------------------------------------------


def test_the_catalogue_is_cached_by_content_and_survives_a_broken_cache(tmp_path: Path, monkeypatch) -> None:
    from hkgen.config import catalogue
    from hkgen.core import resources

    load = catalogue.load_catalogue.__wrapped__  # past the per-process cache
    monkeypatch.setattr(resources, "_CACHE", [tmp_path / "cache"])
    fresh = load()
    (stored,) = (tmp_path / "cache" / "catalogue").glob("*.pickle")
    monkeypatch.setattr(catalogue, "_read_catalogue", lambda base: pytest.fail("the cache was not used"))
    assert load() == fresh
    stored.write_bytes(b"not a pickle")  # a damaged cache is read again from the folders
    monkeypatch.undo()
    monkeypatch.setattr(resources, "_CACHE", [tmp_path / "cache"])
    assert load() == fresh
    assert list((tmp_path / "cache" / "catalogue").glob("*.pickle")) == [stored]
    # Another content, another key: a copy of the catalogue with one app changed is read anew.
    base = tmp_path / "apps"
    shutil.copytree(REPO / "apps", base)
    assert catalogue._cache_file(base) != catalogue._cache_file(REPO / "apps")
    before = catalogue._cache_file(base)
    meta = base / "mosquitto" / "app.yaml"
    meta.write_text(meta.read_text() + "\n")
    assert catalogue._cache_file(base) != before


def test_checkouts_sharing_a_cache_keep_each_others_entry_until_it_is_unused_for_a_day(
        tmp_path: Path, monkeypatch) -> None:
    import os
    import time

    from hkgen.config import catalogue
    from hkgen.core import resources

    monkeypatch.setattr(resources, "_CACHE", [tmp_path / "cache"])
    other = tmp_path / "cache" / "catalogue" / ("0" * 40 + ".pickle")  # another checkout's entry
    other.parent.mkdir(parents=True)
    other.write_bytes(b"theirs")
    catalogue.load_catalogue.__wrapped__()  # stores this catalogue's entry beside it
    assert other.exists() and len(list(other.parent.glob("*.pickle"))) == 2
    stale = time.time() - catalogue.STALE_SECONDS - 60
    os.utime(other, (stale, stale))
    (ours,) = [p for p in other.parent.glob("*.pickle") if p != other]
    ours.unlink()
    catalogue.load_catalogue.__wrapped__()  # stores again: the entry unused for a day goes
    assert not other.exists() and ours.exists()


def test_without_a_cache_folder_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    from hkgen.config import catalogue
    from hkgen.core import resources

    monkeypatch.setattr(resources, "_CACHE", [])
    assert catalogue._cache_file(REPO / "apps") is None
    assert catalogue.load_catalogue.__wrapped__()  # reads the folders
