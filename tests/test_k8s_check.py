"""Schema checks of every Kubernetes object (issue 5 item 6): built-in kinds against the strict
schemas of the cluster's Kubernetes minor, custom resources against hkgen's own schema of the
kind (schemas/kinds/; proven against upstream in test_own_schemas.py), no schema = error, and
the substitution rule for objects the GitOps engine substitutes."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from hkgen.areas.parts import Blueprint, Component, OutputFile, freeze
from hkgen.config.model import Cluster
from hkgen.render.jinja import Rendered
from hkgen.verify import k8s as k8s_check
from hkgen.verify.tree import Built

MINOR = "1.34"


@pytest.fixture(scope="module")
def cluster(home_model: Cluster) -> Cluster:
    return home_model


def errors(doc: dict[str, Any]) -> list[str]:
    found, problems = k8s_check.validate_object(doc, MINOR)
    assert found, doc
    return [f"{'.'.join(map(str, path))}: {message}" for path, message in problems]


def test_builtin_kinds_use_the_strict_kubernetes_schemas() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "b"},
           "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}
    assert errors(svc) == []
    svc["spec"]["ports"][0]["port"] = "eighty"
    svc["spec"]["bogus"] = 1
    found = errors(svc)
    assert any(e.startswith("spec: Additional properties are not allowed ('bogus'") for e in found)
    assert any(e.startswith("spec.ports.0.port: 'eighty' is not of type 'integer'") for e in found)
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}
    assert errors(cron) == []
    assert errors({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "p"},
                   "value": "high"}) == ["value: 'high' is not of type 'integer', 'null'"]


def test_custom_resources_use_the_crd_schemas_and_objectmeta() -> None:
    job = {"apiVersion": "longhorn.io/v1beta2", "kind": "RecurringJob", "metadata": {"name": "j", "namespace": "n"},
           "spec": {"name": "j", "task": "snapshot", "cron": "0 * * * *", "retain": 3, "concurrency": 1,
                    "groups": ["critical"]}}
    assert errors(job) == []
    job["spec"]["task"] = "backups"
    job["metadata"]["labelz"] = {}
    found = errors(job)
    assert any(e.startswith("spec.task: 'backups' is not one of") for e in found)
    assert any(e.startswith("metadata: Additional properties are not allowed ('labelz'") for e in found)
    hr = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "x"},
          "spec": {"chart": {"spec": {"chart": "c", "sourceRef": {"kind": "HelmRepo", "name": "r"}}}}}
    found = errors(hr)
    assert "spec: 'interval' is a required property" in found
    assert any(e.startswith("spec.chart.spec.sourceRef.kind: 'HelmRepo' is not one of") for e in found)


def test_an_object_without_schema_is_not_a_pass() -> None:
    assert k8s_check.validate_object({"apiVersion": "example.com/v1", "kind": "Widget"}, MINOR) == (False, [])
    # v1beta1 Longhorn files are stubs that would accept anything: hkgen does not ship them.
    assert k8s_check.validate_object({"apiVersion": "longhorn.io/v1beta1", "kind": "RecurringJob"}, MINOR)[0] is False
    # Schema files of nested types do not make a kind.
    assert k8s_check.validate_object({"apiVersion": "v1", "kind": "ServiceSpec"}, MINOR)[0] is False


def test_unknown_custom_resource_fields_are_named_at_their_own_path() -> None:
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "r"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]}}
    assert errors(rule) == []
    rule["spec"]["groups"][0]["partial_response_strategy"] = "warn"  # upstream has it; hkgen never writes it
    rule["spec"]["groups"][0]["rules"][0]["labls"] = {}
    assert errors(rule) == [
        "spec.groups.0.partial_response_strategy: unknown field 'partial_response_strategy' (fields hkgen writes "
        "here: interval, name, rules)",
        "spec.groups.0.rules.0.labls: unknown field 'labls' (did you mean 'labels'? fields hkgen writes here: "
        "alert, annotations, expr, for, keep_firing_for, labels, record)"]
    rule["spec"]["groups"][0] = {"name": "g", "interval": "1 minute", "rules": []}
    assert errors(rule) == ["spec.groups.0.interval: '1 minute' does not match "
                            "'^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'"]


def test_kind_schemas_are_hkgens_own_small_files(repo: Path) -> None:
    from jsonschema import Draft202012Validator

    files = sorted((repo / "schemas" / "kinds").glob("*/*.json"))
    assert len(files) >= 19
    assert sum(p.stat().st_size for p in files) < 200_000  # the copied CRD schemas were 5.3 MB
    for path in files:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        api, kind = schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"]
        assert k8s_check.crd_schema_path(api, kind) == path
    assert not (repo / "schemas" / "crds").exists()


def test_substitution_rule() -> None:
    keys = {"S3_ACCESS_KEY_ID"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "stringData": {"a": "${S3_ACCESS_KEY_ID}", "b": "price $5 and $ alone"}}
    found = k8s_check._substitution_problems(secret, keys)
    assert [(p, m.split(" would")[0]) for p, m in found] == [(("stringData", "b"), "'$5 and $ alo'")]
    script = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
              "data": {"run.sh": 'echo "$HOME" ${MISSING}'}}
    messages = [m for _p, m in k8s_check._substitution_problems(script, keys)]
    assert any(m.startswith("'$HOME\"") for m in messages)
    script["data"]["run.sh"] = "echo ${MISSING}"
    assert [m for _p, m in k8s_check._substitution_problems(script, keys)] == [
        "placeholder ${MISSING} names no key of the cluster's secrets file; Flux would substitute an empty string"]
    script["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}
    assert k8s_check._substitution_problems(script, keys) == []


def _plan(cluster: Cluster, files: dict[str, str]) -> tuple[Blueprint, Rendered]:
    outs = tuple(OutputFile(PurePosixPath(p), f"core/test/{Path(p).name}.j2", freeze({})) for p in files)
    return Blueprint(cluster, outs, ()), {PurePosixPath(p): t.encode() for p, t in files.items()}


def test_check_names_file_template_and_line(cluster: Cluster) -> None:
    kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\n"
    good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  namespace: x\ndata:\n  a: b\n"
    bad = ("# comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: x\n"
           "data:\n  a: 1\n  run: echo $HOME\n")
    flux = ("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: k\n"
            "spec:\n  prune: yes\n")
    plan, tree = _plan(cluster, {"platform/crds/x/kustomization.yaml": kustomization,
                                 "platform/crds/x/cm.yaml": good + "---\n" + bad,
                                 "flux/layers.yaml": flux,
                                 "nodes/cp1/network-config": "version: 2\n"})
    import yaml

    docs = tuple(d for d in yaml.safe_load_all(good + "---\n" + bad))
    built = [Built(PurePosixPath("platform/crds/x"), docs)]
    lines = [p.format() for p in k8s_check.check(plan, tree, built)]
    assert ("clusters/home/platform/crds/x/cm.yaml:16:3: $.data.a: ConfigMap x/bad: 1 is not of type 'string', "
            "'null' (template core/test/cm.yaml.j2)") in lines
    assert any(line.startswith("clusters/home/platform/crds/x/cm.yaml:17:3: $.data.run: ConfigMap x/bad: '$HOME'")
               for line in lines)
    # The Flux entry folder has no kustomization.yaml: its objects are checked as written.
    assert any(line.startswith("clusters/home/flux/layers.yaml:") and "$.spec" in line and
               "'interval' is a required property" in line and "(template core/test/layers.yaml.j2)" in line
               for line in lines)
    # 2 for the bad ConfigMap; 3 for the Flux object (interval, sourceRef, and `yes`, which YAML 1.2
    # reads as a string); nothing for the good ConfigMap nor for the seed file, which is no object.
    assert len(lines) == 5, lines


def test_prepare_ahead_of_the_builds_finds_the_same_problems(cluster: Cluster,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # verify runs `prepare` while kustomize builds; `check` must then report exactly what it
    # reports alone, and must use what prepare validated (not validate those objects again).
    flux = ("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: k\n"
            "spec:\n  prune: true\n")
    plan, tree = _plan(cluster, {"flux/layers.yaml": flux, "flux/ok.yaml": flux.replace("name: k", "name: j")})
    monkeypatch.setattr(k8s_check, "_EARLY", {})
    alone = k8s_check.check(plan, tree, [])
    assert len(alone) == 4, alone  # interval and sourceRef, for each of the two objects
    k8s_check.prepare(plan, tree)
    assert len(k8s_check._EARLY) == 2
    monkeypatch.setattr(k8s_check, "validate_object", lambda doc, minor: pytest.fail(f"validated again: {doc}"))
    assert k8s_check.check(plan, tree, []) == alone


def test_unknown_kind_in_the_tree_is_an_error(cluster: Cluster) -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    plan, tree = _plan(cluster, {"apps/w/w.yaml": json.dumps(doc)})
    lines = [p.format() for p in k8s_check.check(plan, tree, [Built(PurePosixPath("apps/w"), (doc,))])]
    assert lines == ["clusters/home/apps/w/w.yaml:1:1: $: Widget w: no schema for example.com/v1 Widget "
                     "(looked in schemas/kinds/example.com/widget-v1.json) (template core/test/w.yaml.j2)"]


def test_kubernetes_minor_without_schemas_is_reported(cluster: Cluster) -> None:
    import dataclasses

    future = dataclasses.replace(cluster, microk8s_channel="1.99/stable")
    plan, tree = _plan(future, {})
    problems = k8s_check.check(plan, tree, [])
    assert len(problems) == 1 and "no schemas for Kubernetes 1.99" in problems[0].message


def test_components_are_planned_with_valid_objects(cluster: Cluster) -> None:
    """Every platform object as rendered validates on its own (fast, without kustomize)."""
    import yaml

    from hkgen.areas import platform
    from hkgen.render.jinja import render_file

    comps: list[Component] = platform.components(cluster)
    checked = 0
    for comp in comps:
        for f in comp.files:
            text = render_file(f, {"cluster": cluster, "components": tuple(comps)}, "test")
            for doc in yaml.safe_load_all(text):
                if doc:
                    assert errors(doc) == [], (comp.name, f.path)
                    checked += 1
    assert checked >= 15
