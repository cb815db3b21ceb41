"""Every Helm release rendered with its real chart (issue 12): values keys checked against the
chart, the chart's values schema run, rendered manifests validated, problems located.

Charts come from the shared, vendored chart sources (`../shared/charts` next to the repository);
hand-written Flux and Argo CD trees in tests/fixtures/charts/ stand for what hkgen writes, and the
end-to-end tests render the reference cluster itself in both engine variants.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from conftest import missing, need_path

try:
    import helm_python  # noqa: F401 - the check renders with it; CI installs the extra
except ImportError as err:
    raise ImportError("tests/test_chartcheck.py needs the charts extra: pip install -e '.[dev,charts]'") from err

from hkgen.verify.charts import (
    ChartIndex,
    ReleaseResult,
    Report,
    check_tree,
    find_releases,
    kube_version_allows,
    read_tree,
)
from hkgen.verify.charts import helm as chart_helm
from hkgen.verify.charts import index as chart_index
from hkgen.verify.charts import keys as chart_keys
from hkgen.verify.charts import schemas as chart_schemas

REPO = Path(__file__).resolve().parents[1]
SHARED_CHARTS = REPO.parent / "shared" / "charts"
FIXTURES = REPO / "tests" / "fixtures" / "charts"
MICROK8S_KUBELET = "/var/snap/microk8s/common/var/lib/kubelet"
REFERENCE_CHARTS = {"longhorn", "cloudnative-pg", "kube-prometheus-stack", "thanos"}

# Pins of generator/hkgen/versions.yaml that no vendored chart answers, and why (none today:
# ../shared/charts holds every chart hkgen pins; a new pin without a chart must say why here).
CANNOT_CHECK: dict[str, str] = {}

pytestmark = [pytest.mark.charts]


@pytest.fixture(autouse=True, scope="module")
def _vendored_charts() -> None:
    need_path(SHARED_CHARTS, "vendored Helm charts")


def _check(tree: Mapping[PurePosixPath, bytes], **kw: Any) -> Report:
    kw.setdefault("kube_version", "1.34")
    kw.setdefault("label", "clusters/home")
    return check_tree(tree, [SHARED_CHARTS], **kw)


def _by_chart(report: Report) -> dict[str, ReleaseResult]:
    return {r.release.chart: r for r in report.results}


def _formatted(report: Report) -> list[str]:
    return [p.format() for p in report.problems]


@pytest.fixture(scope="module")
def flux() -> Report:
    return _check(read_tree(FIXTURES / "flux"))


@pytest.fixture(scope="module")
def argocd() -> Report:
    return _check(read_tree(FIXTURES / "argocd"))


@pytest.fixture(scope="module", params=["flux", "argocd"])
def fixture_report(request: pytest.FixtureRequest) -> Report:
    report: Report = request.getfixturevalue(request.param)
    return report


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


# --- the hand-written trees: everything checks clean, and the promised settings arrive ----------


def test_fixture_trees_check_clean(fixture_report: Report) -> None:
    assert fixture_report.errors == []
    results = _by_chart(fixture_report)
    assert set(results) == {*REFERENCE_CHARTS, "app-template"}
    for result in fixture_report.results:
        assert result.checked, result.reason
        assert result.keys_checked > 0
        assert result.documents_validated == len(result.manifests) > 0


def test_only_warning_is_helms_shape_note_for_thanos_objstore(flux: Report, argocd: Report) -> None:
    # thanos' objstoreConfig.value defaults to a string; the Flux fixture sets a mapping (which
    # the chart documents as allowed), and Helm says so. The Argo CD fixture uses a Secret.
    (warning,) = flux.problems
    assert warning.severity == "warning"
    assert warning.file == "clusters/home/monitoring/thanos/thanos-values.yaml"
    assert (warning.line, warning.path) == (4, "$.objstoreConfig.value")
    assert "the chart's default is not one" in warning.message
    assert argocd.problems == ()


def test_longhorn_csi_uses_the_microk8s_kubelet_directory(fixture_report: Report) -> None:
    longhorn = _by_chart(fixture_report)["longhorn"]
    (deployer,) = longhorn.find("Deployment", "longhorn-driver-deployer")
    env = {e["name"]: e.get("value") for e in deployer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBELET_ROOT_DIR"] == MICROK8S_KUBELET


def test_longhorn_default_settings_carry_replicas_failover_data_path_and_backups(fixture_report: Report) -> None:
    longhorn = _by_chart(fixture_report)["longhorn"]
    (settings,) = longhorn.find("ConfigMap", "longhorn-default-setting")
    values = yaml.safe_load(settings["data"]["default-setting.yaml"])
    assert values["default-replica-count"] == "3"
    assert values["node-down-pod-deletion-policy"] == "delete-both-statefulset-and-deployment-pod"
    assert values["default-data-path"] == "/var/lib/longhorn/"
    assert values["create-default-disk-labeled-nodes"] is True
    assert values["backup-concurrent-limit"] == "2"  # Flux: from valuesFrom targetPath; Argo CD: a value file
    (resource,) = longhorn.find("ConfigMap", "longhorn-default-resource")
    backup = yaml.safe_load(resource["data"]["default-resource.yaml"])
    assert backup == {"backup-target": "s3://home-cluster-backups@eu-central-1/",
                      "backup-target-credential-secret": "longhorn-backup-s3", "backupstore-poll-interval": 300}
    (storage_class,) = [yaml.safe_load(c["data"]["storageclass.yaml"])
                        for c in longhorn.find("ConfigMap", "longhorn-storageclass")]
    assert storage_class["parameters"]["numberOfReplicas"] == "3"
    assert storage_class["reclaimPolicy"] == "Retain"


def test_cloudnative_pg_operator_renders_with_its_crds_and_pod_monitor(fixture_report: Report) -> None:
    cnpg = _by_chart(fixture_report)["cloudnative-pg"]
    (operator,) = cnpg.find("Deployment", "cloudnative-pg")
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    crds = {c["spec"]["names"]["kind"] for c in cnpg.find("CustomResourceDefinition")}
    assert {"Cluster", "Backup", "ScheduledBackup", "Pooler", "Database"} <= crds
    # The PodMonitor's kind comes from another release (kube-prometheus-stack's CRDs): validated too.
    assert cnpg.find("PodMonitor")
    assert cnpg.documents_validated == len(cnpg.manifests)


def test_kube_prometheus_stack_has_the_thanos_sidecar_retention_and_pi_sized_storage(fixture_report: Report) -> None:
    kps = _by_chart(fixture_report)["kube-prometheus-stack"]
    (prometheus,) = kps.find("Prometheus")
    spec = prometheus["spec"]
    assert spec["retention"] == "3d"
    assert spec["retentionSize"] == "8GB"
    claim = spec["storage"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "10Gi"
    assert claim["storageClassName"] == "longhorn"
    assert spec["thanos"]["objectStorageConfig"] == {"key": "objstore.yml", "name": "thanos-objstore"}
    (discovery,) = kps.find("Service", "kube-prometheus-stack-thanos-discovery")
    assert [p["port"] for p in discovery["spec"]["ports"]] == [10901, 10902]
    assert kps.find("ServiceMonitor", "kube-prometheus-stack-thanos-sidecar")
    assert not [m for m in kps.manifests if "/charts/grafana/" in m.template]  # grafana is off
    assert kps.find("CustomResourceDefinition")  # crds.enabled: the crds/ files count as rendered documents


def test_thanos_renders_query_store_and_compactor(flux: Report, argocd: Report) -> None:
    for report in (flux, argocd):
        thanos = _by_chart(report)["thanos"]
        workloads = [m.data for m in thanos.manifests if m.data["kind"] in ("Deployment", "StatefulSet")]
        names = {w["metadata"]["name"] for w in workloads}
        assert names == {"thanos-query", "thanos-store-gateway", "thanos-compact"}
        assert thanos.find("ServiceMonitor")
    (compact,) = _by_chart(argocd)["thanos"].find("StatefulSet", "thanos-compact")
    (claim,) = compact["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"  # from helm.parameters
    # Flux: the secret placeholders stay literal strings for Flux to substitute in the cluster.
    (objstore,) = [s for s in _by_chart(flux)["thanos"].find("Secret") if "objstore" in s["metadata"]["name"]]
    data = objstore.get("stringData") or {k: base64.b64decode(v).decode() for k, v in objstore["data"].items()}
    (config,) = data.values()
    assert "${S3_ACCESS_KEY_ID}" in config and "${S3_SECRET_ACCESS_KEY}" in config


def test_app_template_renders_with_its_schema_offline(fixture_report: Report) -> None:
    app = _by_chart(fixture_report)["app-template"]
    assert app.has_schema
    (deployment,) = app.find("Deployment", "mosquitto")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "docker.io/library/eclipse-mosquitto:2.0.22"
    (service,) = app.find("Service")
    assert service["spec"]["type"] == "LoadBalancer"


# --- misspelt keys are caught, located at the line hkgen wrote them --------------------------------


@pytest.fixture(scope="module")
def misspelt_flux(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    tree = tmp_path_factory.mktemp("misspelt") / "flux"
    shutil.copytree(FIXTURES / "flux", tree)
    edits = {
        "storage/longhorn/default-settings.yaml": [("nodeDownPodDeletionPolicy:", "nodeDownPodDeletionPolicyy:")],
        "storage/longhorn/helmrelease.yaml": [("kubeletRootDir:", "kubeletRootDirectory:")],
        "monitoring/thanos/thanos-values.yaml": [("\ncompact:\n", "\ncompactor:\n")],
        "monitoring/kube-prometheus-stack/helmrelease.yaml": [("retention: 3d", "retension: 3d"),
                                                             ("objectStorageConfig:", "objectStorageConfg:")],
        "apps/mosquitto/helmrelease.yaml": [("loadBalancerIP:", "loadBalancerIp:")],
        "databases/cloudnative-pg/helmrelease.yaml": [("replicaCount: 1", "replicaCount: one")],
    }
    for name, pairs in edits.items():
        file = tree / name
        text = file.read_text()
        for old, new in pairs:
            assert old in text, (name, old)
            text = text.replace(old, new)
        file.write_text(text)
    return tree, _check(read_tree(tree))


def test_misspelt_keys_are_reported_at_their_line_with_a_hint(misspelt_flux: tuple[Path, Report]) -> None:
    tree, report = misspelt_flux
    lines = _formatted(report)
    settings = tree / "storage/longhorn/default-settings.yaml"
    line = _line_of(settings, "nodeDownPodDeletionPolicyy")
    assert (f"clusters/home/storage/longhorn/default-settings.yaml:{line}:7: "
            "$.data['values.yaml'].defaultSettings.nodeDownPodDeletionPolicyy: unknown values key "
            "'nodeDownPodDeletionPolicyy': longhorn 1.12.1 has no defaultSettings.nodeDownPodDeletionPolicyy in its "
            "values.yaml (hint: did you mean 'nodeDownPodDeletionPolicy'?)") in lines
    release = tree / "storage/longhorn/helmrelease.yaml"
    line = _line_of(release, "kubeletRootDirectory")
    assert any(text.startswith(f"clusters/home/storage/longhorn/helmrelease.yaml:{line}:7: "
                               "$.spec.values.csi.kubeletRootDirectory: unknown values key")
               and "did you mean 'kubeletRootDir'?" in text for text in lines)
    assert any(t.startswith("clusters/home/monitoring/kube-prometheus-stack/helmrelease.yaml:")
               and "$.spec.values.prometheus.prometheusSpec.retension" in t and "did you mean 'retention'?" in t
               for t in lines)


def test_misspelt_keys_in_every_check_layer(misspelt_flux: tuple[Path, Report]) -> None:
    _tree, report = misspelt_flux
    errors = report.errors
    messages = [(p.file.rsplit("/", 1)[-1], p.path, p.message) for p in errors]
    # A whole section misnamed in a generated values file (kustomize configMapGenerator).
    assert any(f == "thanos-values.yaml" and path == "$.compactor" and "unknown values key 'compactor'" in m
               for f, path, m in messages)
    # Inside a free-form value the chart passes into a custom resource: the CRD schema catches it.
    assert any(f == "helmrelease.yaml" and "Prometheus monitoring/kube-prometheus-stack-prometheus" in m
               and "'objectStorageConfg' was unexpected" in m for f, _p, m in messages)
    # The chart's values.schema.json: strict (app-template, offline via the local common schema) ...
    assert any(path == "$.spec.values.service.app.loadBalancerIp"
               and "additional properties 'loadBalancerIp' not allowed" in m for _f, path, m in messages)
    # ... and typed (cloudnative-pg).
    assert any(path == "$.spec.values.replicaCount" and "want integer" in m for _f, path, m in messages)
    assert len(errors) == 7  # the five above and the two of the previous test, nothing else


def test_misspelt_keys_in_argo_cd_value_files_strings_and_parameters(tmp_path: Path) -> None:
    tree = tmp_path / "argocd"
    shutil.copytree(FIXTURES / "argocd", tree)
    for name, old, new in [("values/longhorn.yaml", "defaultReplicaCount:", "defaultReplicaCnt:"),
                           ("apps/cloudnative-pg.yaml", "podMonitorEnabled:", "podMonitorEnable:"),
                           ("apps/thanos.yaml", "compact.persistence.size", "compact.persistence.sise")]:
        file = tree / name
        file.write_text(file.read_text().replace(old, new))
    report = _check(read_tree(tree))
    found = {(p.file, p.line, p.col, p.path) for p in report.errors}
    assert found == {
        ("clusters/home/values/longhorn.yaml", 4, 3, "$.defaultSettings.defaultReplicaCnt"),
        ("clusters/home/apps/cloudnative-pg.yaml", _line_of(tree / "apps/cloudnative-pg.yaml", "podMonitorEnable:"), 11,
         "$.spec.source.helm.values.monitoring.podMonitorEnable"),
        ("clusters/home/apps/thanos.yaml", _line_of(tree / "apps/thanos.yaml", "compact.persistence.sise") - 0, 11,
         "$.spec.source.helm.parameters[0]"),
    }
    hints = {p.hint for p in report.errors}
    assert hints == {"did you mean 'defaultReplicaCount'?", "did you mean 'podMonitorEnabled'?", "did you mean 'size'?"}


# --- how values are assembled: Flux and Argo CD precedence, locations ------------------------------


def _tree(files: dict[str, str]) -> dict[PurePosixPath, bytes]:
    return {PurePosixPath(k): v.encode() for k, v in files.items()}


def test_flux_values_from_then_values_win_and_target_path_sets_a_string() -> None:
    tree = _tree({"hr.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: demo, namespace: apps}
spec:
  interval: 10m
  chart: {spec: {chart: thanos, version: 1.24.1, sourceRef: {kind: HelmRepository, name: x}}}
  valuesFrom:
    - {kind: ConfigMap, name: base}
    - {kind: Secret, name: extra, valuesKey: level}
    - {kind: Secret, name: extra, valuesKey: port, targetPath: query.grpcPort}
    - {kind: ConfigMap, name: absent, optional: true}
  values:
    logLevel: warn
""", "cm.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: base, namespace: apps}
data:
  values.yaml: |
    logLevel: debug
    logFormat: json
---
apiVersion: v1
kind: Secret
metadata: {name: extra, namespace: apps}
stringData:
  level: "clusterDomain: home.arpa"
data:
  port: MTA5MDE=
"""})
    (release,), problems = find_releases(tree, "t")
    assert problems == []
    assert release.values == {"logLevel": "warn", "logFormat": "json", "clusterDomain": "home.arpa",
                              "query": {"grpcPort": 10901}}
    assert (release.release_name, release.namespace) == ("demo", "apps")
    assert release.where[("logLevel",)].file == "t/hr.yaml"
    assert (release.where[("logFormat",)].file, release.where[("logFormat",)].line) == ("t/cm.yaml", 7)
    assert release.where[("logFormat",)].path == "$.data['values.yaml'].logFormat"


def test_flux_missing_values_source_is_a_warning_and_chart_ref_reads_oci_repository() -> None:
    tree = _tree({"hr.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: app, namespace: home}
spec:
  interval: 10m
  targetNamespace: media
  chartRef: {kind: OCIRepository, name: app-template, namespace: flux-system}
  valuesFrom: [{kind: ConfigMap, name: nowhere}]
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: app-template, namespace: flux-system}
spec: {interval: 1h, url: oci://ghcr.io/bjw-s-labs/helm/app-template, ref: {tag: 4.1.1}}
"""})
    (release,), _ = find_releases(tree, "t")
    assert (release.chart, release.version) == ("app-template", "4.1.1")
    assert (release.release_name, release.namespace) == ("media-app", "media")
    (warning,) = release.problems
    assert warning.severity == "warning" and "not a plain file in the tree" in warning.message


def test_argo_cd_precedence_parameters_over_values_object_over_value_files() -> None:
    tree = _tree({"app.yaml": """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: demo, namespace: argocd}
spec:
  project: default
  destination: {server: https://kubernetes.default.svc, namespace: mon}
  sources:
    - repoURL: https://stevehipwell.github.io/helm-charts
      chart: thanos
      targetRevision: 1.24.1
      helm:
        releaseName: th
        valueFiles: [$values/clusters/home/v.yaml]
        values: |
          logLevel: error
        valuesObject: {logLevel: warn, logFormat: json}
        parameters:
          - {name: logFormat, value: logfmt}
          - {name: query.replicas, value: "2", forceString: true}
    - {repoURL: "ssh://git@example/home.git", targetRevision: main, ref: values}
""", "v.yaml": "logLevel: debug\nclusterDomain: home.arpa\n"})
    (release,), problems = find_releases(tree, "clusters/home")
    assert problems == [] and release.problems == ()
    # valuesObject replaces the values string entirely (Argo CD uses one or the other).
    assert release.values == {"logLevel": "warn", "logFormat": "logfmt", "clusterDomain": "home.arpa",
                              "query": {"replicas": "2"}}
    assert (release.release_name, release.namespace) == ("th", "mon")
    assert release.where[("clusterDomain",)].file == "clusters/home/v.yaml"
    assert release.where[("query", "replicas")].path == "$.spec.sources[0].helm.parameters[1]"


# --- the rules of the values-key check, on a small synthetic chart ---------------------------------


def _write_chart(root: Path, name: str, values: str, *, deps: str = "", templates: dict[str, str] | None = None,
                 kind: str = "application", extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 1.0.0\ntype: {kind}\n{deps}{extra}")
    (root / "values.yaml").write_text(values)
    (root / "templates").mkdir(exist_ok=True)
    for file, text in (templates or {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"}).items():
        (root / "templates" / file).write_text(text)
    return root


@pytest.fixture
def rules_chart(tmp_path: Path) -> Path:
    parent = _write_chart(tmp_path / "charts" / "rules", "rules", """\
nullable: ~
emptyMap: {}
aList: []
scalar: text
nested: {known: 1, deeper: {leaf: true}}
podAnnotations: {team: home}
resources: {limits: {memory: 1Gi}}
db: {parentOverride: 1}
global: {shared: 1}
""", deps="dependencies:\n  - {name: database, version: 1.0.0, alias: db}\n  - {name: lib, version: 1.0.0}\n",
        templates={
        "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n"
                   "  a: {{ .Values.commentedOut | quote }}\n"
                   "  b: {{ (.Values.nested).onlyInTemplate | quote }}\n"
                   "  c: {{ index .Values \"hyphen-key\" \"x\" | quote }}\n",
    })
    _write_chart(parent / "charts" / "database", "database", "port: 5432\nauth: {user: app}\nglobal: {fromSub: 1}\n")
    _write_chart(parent / "charts" / "lib", "lib", "libraryKey: {a: 1}\n", kind="library", templates={})
    return parent


@pytest.mark.parametrize(("values", "unknown"), [
    ({"nullable": {"anything": {"goes": 1}}}, []),  # null default: shape not described
    ({"emptyMap": {"x": 1}, "aList": [{"y": 2}], "scalar": {"z": 3}}, []),  # {} / list / scalar: taken whole
    ({"podAnnotations": {"other": "x"}, "resources": {"requests": {"cpu": "1"}}}, []),  # pass-through names
    ({"nested": {"known": 2, "deeper": {"leaf": False}}}, []),
    ({"nested": {"deeper": {"leef": False}}}, [("nested", "deeper", "leef")]),
    ({"nested": {"onlyInTemplate": "x"}, "commentedOut": 1, "hyphen-key": {"x": 1}}, []),  # templates read them
    ({"hyphen-key": {"y": 1}}, [("hyphen-key", "y")]),
    ({"db": {"port": 1, "auth": {"user": "u"}, "parentOverride": 2}}, []),  # subchart by alias, parent overrides
    ({"db": {"auth": {"usr": "u"}}}, [("db", "auth", "usr")]),
    ({"database": {"port": 1}}, [("database",)]),  # aliased: the chart name is not a values key
    ({"libraryKey": {"a": 2}, "lib": {"libraryKey": {"a": 3}}}, []),  # library values at the top level too
    ({"global": {"shared": 2, "fromSub": 3}}, []),
    ({"global": {"unshared": 1}}, [("global", "unshared")]),
    ({"toplevel": 1}, [("toplevel",)]),
])
def test_values_key_rules(rules_chart: Path, values: dict[str, Any], unknown: list[tuple[str, ...]]) -> None:
    tree = chart_index._chart_tree(rules_chart)
    found = chart_keys._check_keys(values, tree)
    assert [path for path, _key, _candidates in found.unknown] == unknown


# --- chart lookup, pins, versions ------------------------------------------------------------------


def test_chart_index_finds_directories_by_chart_yaml_and_packaged_charts(tmp_path: Path) -> None:
    import helm_python

    folder = tmp_path / "charts"
    _write_chart(folder / "any-name", "demo", "a: 1\n")
    src = _write_chart(tmp_path / "src" / "packed", "packed", "b: 2\n")
    helm_python.package(src, destination=folder)
    index = ChartIndex([folder])
    assert index.find("demo", "1.0.0") is not None
    packed = index.find("packed", "v1.0.0")  # a leading v is not significant
    assert packed is not None and packed.path.name == "packed-1.0.0.tgz"
    assert index.find("demo", "1.0.1") is None
    assert index.versions("demo") == ["1.0.0"]
    tree = chart_index._chart_tree(packed.path)
    assert tree.defaults == {"b": 2}


@pytest.mark.parametrize("ships_schemas", [True, False])
def test_a_packaged_chart_with_packaged_subcharts(tmp_path: Path, ships_schemas: bool) -> None:
    # As published: app-template-4.1.1.tgz holding charts/common-4.1.1.tgz, whose schema the
    # parent's values.schema.json refers to by URL. The real common chart's .helmignore leaves
    # its schemas/ out of the package (they are fetched from GitHub): that must be named, not
    # passed; a package that ships them is checked fully offline.
    import helm_python

    source = tmp_path / "src" / "app-template"
    shutil.copytree(SHARED_CHARTS / "app-template-4.1.1", source)
    common = source / "charts" / "common"
    if ships_schemas:
        ignore = common / ".helmignore"
        ignore.chmod(0o644)
        ignore.write_text(ignore.read_text().replace("\nschemas/\n", "\n"))
    helm_python.package(common, destination=source / "charts")
    shutil.rmtree(common)
    (tmp_path / "charts").mkdir()
    helm_python.package(source, destination=tmp_path / "charts")
    release = (FIXTURES / "flux" / "apps" / "mosquitto" / "helmrelease.yaml").read_text()
    tree = _tree({"hr.yaml": release.replace("loadBalancerIP:", "loadBalancerIp:"),
                  "oci.yaml": (FIXTURES / "flux" / "sources" / "helmrepositories.yaml").read_text()})
    report = check_tree(tree, [tmp_path / "charts"], kube_version="1.34")
    (result,) = report.results
    assert result.checked and result.chart_path is not None and result.chart_path.name == "app-template"
    (error,) = report.errors
    if ships_schemas:
        assert error.path == "$.spec.values.service.app.loadBalancerIp"
        assert "additional properties 'loadBalancerIp' not allowed" in error.message
    else:
        assert error.message.startswith("app-template 4.1.1: values cannot be validated offline: the chart's "
                                        "values.schema.json needs charts/common/schemas/")


def test_every_chart_pin_matches_a_vendored_chart_or_says_why_not() -> None:
    pins = yaml.safe_load((REPO / "generator" / "hkgen" / "versions.yaml").read_text())["charts"]
    index = ChartIndex([SHARED_CHARTS])
    unexplained = [f"{n} {v}" for n, v in pins.items() if index.find(n, str(v)) is None and n not in CANNOT_CHECK]
    assert unexplained == [], f"pins without a vendored chart and no reason: {unexplained}"
    stale = [n for n in CANNOT_CHECK if n not in pins or index.find(n, str(pins[n])) is not None]
    assert stale == [], f"CANNOT_CHECK lists pins that are gone or now checkable: {stale}"
    assert {n for n, v in pins.items() if index.find(n, str(v))} >= REFERENCE_CHARTS


def _helm_release(name: str, chart: str, version: str, source: str = "HelmRepository", extra: str = "") -> str:
    return f"""\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: {name}, namespace: {name}}}
spec:
  interval: 10m
  chart: {{spec: {{chart: {chart}, version: "{version}", sourceRef: {{kind: {source}, name: src}}}}}}
{extra}"""


def test_a_chart_missing_from_the_folders_is_an_error_or_with_allow_missing_a_warning() -> None:
    tree = _tree({"hr.yaml": _helm_release("ntfy", "ntfy", "1.0.0")})  # no ntfy chart in ../shared/charts
    (result,) = _check(tree).results
    assert not result.checked and result.reason == "no chart ntfy 1.0.0 in the chart folders"
    (error,) = result.problems
    assert (error.severity, error.line, error.path) == ("error", 6, "$.spec.chart.spec.chart")
    (lenient,) = _check(tree, allow_missing=True).problems
    assert lenient.severity == "warning" and "not checked" in lenient.message


@pytest.mark.parametrize("version", ["1.12.x", "1.12", ">=1.12.0", "*", ""])
def test_a_version_range_is_not_a_pin(version: str) -> None:
    (result,) = _check(_tree({"hr.yaml": _helm_release("longhorn", "longhorn", version)})).results
    assert not result.checked and "not one pinned release" in result.reason
    (error,) = result.problems
    assert error.severity == "error" and error.hint == "pin an exact version"


def test_charts_from_git_and_encrypted_values_are_named_not_guessed() -> None:
    encrypted = """\
apiVersion: v1
kind: Secret
metadata: {name: secret-values, namespace: thanos}
stringData:
  values.yaml: ENC[AES256_GCM,data:abc,iv:def,tag:ghi,type:str]
sops:
  version: 3.11.0
"""
    values_from = "  valuesFrom: [{kind: Secret, name: secret-values}]\n"
    tree = _tree({"git.yaml": _helm_release("app", "./charts/app", "", source="GitRepository"),
                  "thanos.yaml": _helm_release("thanos", "thanos", "1.24.1", extra=values_from),
                  "secret.yaml": encrypted})
    report = _check(tree)
    by_chart = _by_chart(report)
    assert by_chart["./charts/app"].reason == "the chart is a folder in a GitRepository, not a chart release"
    assert by_chart["thanos"].checked
    assert report.errors == []
    assert sorted(p.message.split(";")[0] for p in report.problems) == [
        "the chart is a folder in a GitRepository, not a chart release",
        "values from Secret 'secret-values' are encrypted (or not base64)",
    ]


@pytest.mark.parametrize(("constraint", "version", "ok"), [
    (">=1.25.0-0", "1.34", True), (">=1.35.0-0", "1.34", False), (">= 1.28.0-0 < 1.35.0-0", "1.34", True),
    (">=1.28, <1.34", "1.34", False), ("~1.34", "1.34", True), ("~1.33", "1.34", False), ("^1.20", "1.34", True),
    ("1.30 - 1.33", "1.34", False), ("1.30 - 1.34", "1.34", True), ("<1.20 || >=1.30", "1.34", True),
    ("1.34.x", "1.34", True), ("=1.33", "1.34", False),
])
def test_kube_version_constraints(constraint: str, version: str, ok: bool) -> None:
    assert kube_version_allows(constraint, version) is ok


def test_chart_refusing_the_cluster_kubernetes_version_is_an_error(tmp_path: Path) -> None:
    _write_chart(tmp_path / "charts" / "new", "newchart", "a: 1\n", extra='kubeVersion: ">=1.35.0-0"\n')
    tree = _tree({"hr.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: n, namespace: default}
spec:
  interval: 10m
  chart: {spec: {chart: newchart, version: 1.0.0, sourceRef: {kind: HelmRepository, name: r}}}
"""})
    report = check_tree(tree, [tmp_path / "charts"], kube_version="1.34")
    (error,) = report.errors
    assert "requires Kubernetes '>=1.35.0-0'; the cluster runs 1.34" in error.message
    assert (error.file, error.line) == ("hr.yaml", 6)


def test_a_schema_with_an_unreachable_remote_ref_is_reported(tmp_path: Path) -> None:
    chart = _write_chart(tmp_path / "charts" / "remote", "remote", "a: 1\n")
    (chart / "values.schema.json").write_text(json.dumps({"$ref": "https://example.invalid/schema.json"}))
    tree = _tree({"hr.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: r, namespace: default}
spec:
  interval: 10m
  chart: {spec: {chart: remote, version: 1.0.0, sourceRef: {kind: HelmRepository, name: r}}}
"""})
    (error,) = check_tree(tree, [tmp_path / "charts"], kube_version="1.34").errors
    assert "cannot be validated offline" in error.message and "https://example.invalid/schema.json" in error.message


def test_rendered_objects_are_validated_and_unknown_kinds_reported(tmp_path: Path) -> None:
    _write_chart(tmp_path / "charts" / "objs", "objs", "replicas: 1\n", templates={
        "deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n"
                       "  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {a: b}}\n"
                       "  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n",
        "custom.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
    })
    tree = _tree({"hr.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: o, namespace: default}
spec:
  interval: 10m
  chart: {spec: {chart: objs, version: 1.0.0, sourceRef: {kind: HelmRepository, name: r}}}
  values: {replicas: two}
"""})
    report = check_tree(tree, [tmp_path / "charts"], kube_version="1.34")
    messages = sorted(p.message for p in report.errors)
    assert len(messages) == 2, messages
    assert "renders Deployment d (objs/templates/deploy.yaml) that fails its schema at $.spec.replicas" in messages[0]
    assert "renders Widget w (objs/templates/custom.yaml) of example.com/v1, a kind with no known schema" in messages[1]
    (result,) = report.results
    assert (result.documents_validated, len(result.manifests)) == (1, 2)


def test_post_renderers_are_applied_with_kustomize(tmp_path: Path) -> None:
    if not shutil.which("kubectl") and not shutil.which("kustomize"):
        missing("neither kubectl nor kustomize is installed")
    patched = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: thanos, namespace: monitoring}
spec:
  interval: 10m
  chart: {spec: {chart: thanos, version: 1.24.1, sourceRef: {kind: HelmRepository, name: stevehipwell}}}
  values: {query: {enabled: true}}
  postRenderers:
    - kustomize:
        patches:
          - target: {kind: Deployment, name: thanos-query}
            patch: |
              - op: add
                path: /spec/template/spec/priorityClassName
                value: home-critical
              - op: add
                path: /spec/replicaz
                value: 2
"""
    report = _check(_tree({"hr.yaml": patched}))
    (result,) = report.results
    (query,) = result.find("Deployment", "thanos-query")
    assert query["spec"]["template"]["spec"]["priorityClassName"] == "home-critical"
    (error,) = report.errors
    assert "'replicaz' was unexpected" in error.message


def test_crd_schemas_become_strict_json_schemas() -> None:
    strict = chart_schemas._structural({
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "mode": {"type": "string", "enum": ["a"], "nullable": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"x": {}}},
            "policy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
        },
    }, top=True)
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(strict)
    assert list(validator.iter_errors({"port": "http", "mode": None, "free": {"y": 1}, "policy": "WARN"})) == []
    errors = {e.message for e in validator.iter_errors({"port": 1.5, "extra": 1, "policy": "maybe"})}
    assert any("'extra' was unexpected" in m for m in errors) and len(errors) == 3


def test_helm_log_lines_are_parsed() -> None:
    text = "2026/11/25 09:18:32 warning: destination for x.y is a table. Ignoring non-table value (a\nb)\nnoise\n"
    assert chart_helm._go_log_records(text) == ["warning: destination for x.y is a table. Ignoring non-table "
                                                "value (a b) noise"]


# --- the command ----------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real command, in this process (the charts loaded by earlier tests are reused)."""
    from hkgen.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_summary_per_chart(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _cli(capsys, "verify-charts", str(FIXTURES / "flux"), "--charts", str(SHARED_CHARTS),
                          "--kube-version", "1.34")
    assert code == 0, out + err
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()[:1] and line.split()[0] in {*REFERENCE_CHARTS, "app-template"}}
    assert set(rows) == {*REFERENCE_CHARTS, "app-template"}
    assert rows["longhorn"][:2] == ["longhorn", "1.12.1"] and rows["longhorn"][-1] == "ok"
    assert "5 of 5 release(s) checked" in err and "0 error(s), 1 warning(s)" in err
    # Outside a Git work tree the folder stands for clusters/<its name> ($values/clusters/home/... files).
    shutil.copytree(FIXTURES / "argocd", tmp_path / "home")
    code, out, _err = _cli(capsys, "verify-charts", str(tmp_path / "home"), "--charts", str(SHARED_CHARTS),
                           "--kube-version", "1.34", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["kubernetes"] == "1.34" and data["problems"] == []
    assert {r["chart"]: (r["values_keys"]["checked"] > 0, r["documents_validated"] > 0, r["errors"])
            for r in data["releases"]} == dict.fromkeys((*REFERENCE_CHARTS, "app-template"), (True, True, 0))


def test_cli_exits_1_on_a_misspelt_key(capsys: pytest.CaptureFixture[str], misspelt_flux: tuple[Path, Report]) -> None:
    tree, _report = misspelt_flux
    code, out, err = _cli(capsys, "verify-charts", str(tree), "--charts", str(SHARED_CHARTS), "--kube-version",
                          "1.34", "-q")
    assert code == 1
    assert "did you mean 'nodeDownPodDeletionPolicy'?" in out
    assert "warning" not in out and err == ""  # -q: errors only


def test_cli_needs_a_kubernetes_version_for_a_bare_folder(hkgen: Callable[..., Any]) -> None:
    done = hkgen("verify-charts", str(FIXTURES / "argocd"), "--charts", str(SHARED_CHARTS))
    assert done.returncode == 2 and "--kube-version" in done.stderr


def test_cli_renders_a_cluster_file_in_memory(capsys: pytest.CaptureFixture[str], home_copy: Path) -> None:
    code, out, err = _cli(capsys, "verify-charts", str(home_copy / "cluster.yaml"), "--charts", str(SHARED_CHARTS),
                          "--allow-missing", "--format", "json")
    data = json.loads(out)
    assert data["releases"], "hkgen render wrote no Helm release: nothing for the chart check to check"
    assert code == 0, err
    assert data["kubernetes"] == "1.34"
    assert {r["chart"] for r in data["releases"] if r["checked"]} >= REFERENCE_CHARTS
    assert all(p["severity"] == "warning" and "not checked" in p["message"] for p in data["problems"])
    assert all(p["file"].startswith("clusters/home/") for p in data["problems"])


def test_cli_without_the_helm_sdk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from hkgen.cli import main

    monkeypatch.setitem(sys.modules, "helm_python", None)  # import helm_python -> ImportError
    code = main(["verify-charts", str(FIXTURES / "flux"), "--charts", str(SHARED_CHARTS)])
    assert code == 3
    assert "pip install 'hkgen[charts]'" in capsys.readouterr().err


# --- the reference cluster, rendered by hkgen, in both engine variants ------------------------------


@pytest.fixture(scope="module", params=["flux", "argocd"])
def reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, Report]:
    from hkgen.pipeline import render_cluster

    folder = tmp_path_factory.mktemp(f"reference-{request.param}") / "home"
    folder.mkdir()
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(REPO / "clusters" / "home" / name, folder / name)
    cluster_file = folder / "cluster.yaml"
    text = cluster_file.read_text()
    if request.param == "argocd":
        assert "\n  engine: flux" in text
        cluster_file.write_text(text.replace("\n  engine: flux", "\n  engine: argocd"))
    rendering = render_cluster(cluster_file, verify=False)
    cluster = rendering.blueprint.cluster
    report = _check(dict(rendering.tree), kube_version=cluster.kubernetes_minor, label=f"clusters/{cluster.name}",
                    allow_missing=True)
    assert report.results, f"the {request.param} render wrote no Helm release: nothing for the chart check to check"
    return request.param, rendering, report


def test_reference_cluster_charts_check_clean(reference: tuple[str, Any, Report]) -> None:
    engine, _rendering, report = reference
    assert report.errors == [], _formatted(report)
    results = _by_chart(report)
    assert set(results) >= REFERENCE_CHARTS
    for name in REFERENCE_CHARTS:
        assert results[name].release.engine == engine
        assert results[name].checked and results[name].problems == (), [p.format() for p in results[name].problems]
        assert results[name].keys_checked > 0 and results[name].documents_validated > 0
    unchecked = {r.release.chart for r in report.results if not r.checked}
    assert unchecked <= set(CANNOT_CHECK), unchecked
    # The only findings are the named pins that cannot be checked here (warnings with allow_missing).
    assert {p.message.split(":")[0] for p in report.problems} == {
        f"{r.release.chart} {r.release.version}" for r in report.results if not r.checked}


def test_reference_cluster_promises_reach_the_rendered_objects(reference: tuple[str, Any, Report]) -> None:
    _engine, rendering, report = reference
    cluster = rendering.blueprint.cluster
    results = _by_chart(report)
    longhorn = results["longhorn"]
    (deployer,) = longhorn.find("Deployment", "longhorn-driver-deployer")
    env = {e["name"]: e.get("value") for e in deployer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBELET_ROOT_DIR"] == MICROK8S_KUBELET
    (settings,) = longhorn.find("ConfigMap", "longhorn-default-setting")
    values = yaml.safe_load(settings["data"]["default-setting.yaml"])
    count = values["default-replica-count"]  # a number, or per data engine: {"v1":"3","v2":"3"}
    per_engine = json.loads(count) if str(count).startswith("{") else {"v1": count}
    assert set(per_engine.values()) == {str(cluster.replicas)}
    assert values["node-down-pod-deletion-policy"] == "delete-both-statefulset-and-deployment-pod"
    assert values["default-data-path"].rstrip("/") == cluster.data_path.rstrip("/")
    assert cluster.backup is not None
    (resource,) = longhorn.find("ConfigMap", "longhorn-default-resource")
    backup = yaml.safe_load(resource["data"]["default-resource.yaml"]) or {}
    assert str(backup["backup-target"]).startswith(f"s3://{cluster.backup.bucket}@{cluster.backup.region}/")
    assert backup["backup-target-credential-secret"]
    (prometheus,) = results["kube-prometheus-stack"].find("Prometheus")
    assert prometheus["spec"]["retention"] == "3d"
    assert prometheus["spec"]["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert prometheus["spec"]["thanos"]["objectStorageConfig"]["name"]
    assert results["cloudnative-pg"].find("Deployment")
    assert {m.data["kind"] for m in results["thanos"].manifests} & {"Deployment", "StatefulSet"}


def test_reference_cluster_misspelt_longhorn_setting_is_caught(reference: tuple[str, Any, Report]) -> None:
    _engine, rendering, _report = reference
    tree = dict(rendering.tree)
    hits = [p for p, data in tree.items() if b"nodeDownPodDeletionPolicy:" in data]
    assert len(hits) == 1, hits
    text = tree[hits[0]].decode()
    tree[hits[0]] = text.replace("nodeDownPodDeletionPolicy:", "nodeDownPodDeletionPolicyy:").encode()
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "nodeDownPodDeletionPolicy:" in t)
    report = _check(tree, kube_version=rendering.blueprint.cluster.kubernetes_minor)
    (problem,) = [p for p in report.errors if "nodeDownPodDeletionPolicyy" in p.message]
    assert (problem.file, problem.line) == (f"clusters/home/{hits[0]}", line)
    assert problem.hint == "did you mean 'nodeDownPodDeletionPolicy'?"
