"""The GitOps tree (issue 5): Flux and Argo CD variants of the reference cluster render from the
same components, every kustomization root builds, every object passes its schema, the layers
converge in order crds -> controllers -> configs -> apps, and no secret value is in any file.
The Argo CD secrets plugin is run for real (sh, awk, sops, kubectl kustomize) and must substitute
exactly as Flux does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from conftest import HOME_CLUSTER, need_programs, secret_in, tools, write_secrets
from hkgen.areas import gitops, platform
from hkgen.areas.parts import LAYERS, RECREATE_ANNOTATIONS, Chart, Component, OutputFile, Release, freeze
from hkgen.config.secrets import required_keys
from hkgen.core.errors import RenderError
from hkgen.pipeline import Rendering, render_cluster
from hkgen.verify.tree import kustomize_roots

# Distinctive values: the tree is searched for them.
KNOWN = {
    "S3_ACCESS_KEY_ID": "AKIAGITOPSTEST000042",
    "S3_SECRET_ACCESS_KEY": "gitops/test+secret=key&x",
    "GRAFANA_ADMIN_PASSWORD": "grafana-gitops-secret-77",
    "MQTT_PASSWORD_HOMEASSISTANT": "mqtt-gitops-secret-0815",
    "ZIGBEE_HOUSE_NETWORK_KEY": "00112233445566778899aabbccddeeff",
    # Fixed, so the search does not depend on chance (see conftest.secret_in).
    "ZIGBEE_HOUSE_PAN_ID": "1c3e",
    "ZIGBEE_GARDEN_PAN_ID": "2a5d",
    "ZIGBEE_ATTIC_PAN_ID": "3b7f",
}


@dataclass(frozen=True)
class Rendered:
    """A reference-cluster render written to disk (as `<repo>/clusters/home/`)."""

    repo: Path
    cluster_dir: Path
    rendering: Rendering
    key_file: Path
    values: dict[str, str]

    def docs(self, rel: str) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all((self.cluster_dir / rel).read_text()) if d]


@pytest.fixture(scope="module")
def hermetic_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.delenv("SOPS_AGE_KEY_FILE", raising=False)
        mp.delenv("SOPS_AGE_KEY", raising=False)
        yield


def _render(base: Path, engine: str, extra: dict[str, str] | None = None) -> Rendered:
    dest = base / "clusters" / "home"
    dest.mkdir(parents=True)
    shutil.copy2(HOME_CLUSTER / "cluster.yaml", dest / "cluster.yaml")
    text = (dest / "cluster.yaml").read_text()
    text = text.replace("  engine: flux\n", f"  engine: {engine}\n")
    for old, new in (extra or {}).items():
        text = text.replace(old, new)
    (dest / "cluster.yaml").write_text(text)
    key_file, values = write_secrets(dest, KNOWN)
    rendering = render_cluster(dest / "cluster.yaml")
    for rel, data in rendering.tree.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return Rendered(base, dest, rendering, key_file, values)


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory, hermetic_env: None) -> Rendered:
    return _render(tmp_path_factory.mktemp("flux"), "flux")


@pytest.fixture(scope="module")
def argo(tmp_path_factory: pytest.TempPathFactory, hermetic_env: None) -> Rendered:
    return _render(tmp_path_factory.mktemp("argo"), "argocd")


# --- both engines -----------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["flux", "argo"])
def test_reference_cluster_renders_and_verifies(engine: str, request: pytest.FixtureRequest) -> None:
    r: Rendered = request.getfixturevalue(engine)
    tree = r.rendering.tree
    roots = set(kustomize_roots(tree))
    # verify built each of these (render_cluster raises VerifyError otherwise)
    for comp in r.rendering.blueprint.components:
        if comp.files:
            assert gitops.component_dir(comp) in roots, comp.name
    for layer in LAYERS:
        assert (PurePosixPath("apps") if layer == "apps" else PurePosixPath("platform", layer)) in roots
    entry = PurePosixPath("flux" if engine == "flux" else "argocd")
    assert any(entry in p.parents for p in tree)


@pytest.mark.parametrize("engine", ["flux", "argo"])
def test_no_secret_value_in_the_tree(engine: str, request: pytest.FixtureRequest) -> None:
    r: Rendered = request.getfixturevalue(engine)
    assert set(KNOWN) <= set(r.values)
    for path in r.cluster_dir.rglob("*"):
        if path.is_file() and path.name != "secrets.sops.yaml":
            text = path.read_text(errors="replace")
            for name, value in r.values.items():
                assert not secret_in(value, text), f"{path}: holds the value of {name}"
    longhorn = r.docs("platform/controllers/longhorn/backup-credentials.yaml")[0]
    assert longhorn["stringData"]["AWS_ACCESS_KEY_ID"] == "${S3_ACCESS_KEY_ID}"
    assert longhorn["stringData"]["AWS_SECRET_ACCESS_KEY"] == "${S3_SECRET_ACCESS_KEY}"  # noqa: S105 - placeholder


@pytest.mark.parametrize("engine", ["flux", "argo"])
def test_placeholders_name_only_keys_of_the_secrets_file(engine: str, request: pytest.FixtureRequest) -> None:
    r: Rendered = request.getfixturevalue(engine)
    keys = {k.name for k in required_keys(r.rendering.blueprint.cluster)}
    used: set[str] = set()
    for rel, data in r.rendering.tree.items():
        if rel.parts[0] in gitops.SUBSTITUTED_FOLDERS and rel.suffix == ".yaml":
            for doc in yaml.safe_load_all(data):
                used |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", yaml.safe_dump(doc)))
    assert "S3_ACCESS_KEY_ID" in used
    assert used <= keys


@pytest.mark.parametrize("engine", ["flux", "argo"])
def test_objects_with_immutable_fields_are_recreated_not_stuck(engine: str, request: pytest.FixtureRequest) -> None:
    # A StorageClass's parameters (replicas, backup target) and a Job's pod template cannot be
    # updated: without the annotations one such change stalls its layer and every later one.
    r: Rendered = request.getfixturevalue(engine)
    recreated: dict[str, int] = {}
    for rel, data in r.rendering.tree.items():
        if rel.suffix != ".yaml" or rel.parts[0] not in gitops.SUBSTITUTED_FOLDERS:
            continue
        for doc in yaml.safe_load_all(data):
            if not isinstance(doc, dict) or "kind" not in doc:
                continue
            annotations = (doc.get("metadata") or {}).get("annotations") or {}
            carries = RECREATE_ANNOTATIONS.items() <= annotations.items()
            if doc["kind"] in ("StorageClass", "Job"):
                assert carries, (str(rel), doc["metadata"]["name"])
                recreated[doc["kind"]] = recreated.get(doc["kind"], 0) + 1
            else:
                # Never on workloads: Argo CD would delete their pods on every change.
                assert not any(k in annotations for k in RECREATE_ANNOTATIONS), (str(rel), doc["kind"])
    assert recreated["StorageClass"] == 3 and recreated["Job"] >= 1, recreated


# --- Flux -------------------------------------------------------------------------------------------

def test_flux_layers_converge_in_order(flux: Rendered) -> None:
    secrets_ks = next(d for d in flux.docs("flux/cluster-secrets.yaml") if d["kind"] == "Kustomization")
    assert "dependsOn" not in secrets_ks["spec"]
    assert secrets_ks["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    layers = {d["metadata"]["name"]: d for d in flux.docs("flux/layers.yaml")}
    assert list(layers) == list(LAYERS)
    previous = "cluster-secrets"
    for name in LAYERS:
        spec = layers[name]["spec"]
        assert spec["dependsOn"] == [{"name": previous}]
        assert spec["prune"] is True and spec["wait"] is True
        assert spec["retryInterval"] == "1m" and spec["interval"] == "10m"
        assert spec["decryption"]["secretRef"]["name"] == "sops-age"
        assert spec["postBuild"]["substituteFrom"] == [{"kind": "Secret", "name": "cluster-secrets"}]
        path = "./clusters/home/apps" if name == "apps" else f"./clusters/home/platform/{name}"
        assert spec["path"] == path and (flux.repo / path / "kustomization.yaml").is_file()
        previous = name
    # The entry folder is for `flux bootstrap --path`: Flux writes its own kustomization there.
    assert not (flux.cluster_dir / "flux" / "kustomization.yaml").exists()


def test_flux_helm_releases_are_pinned_and_remediated(flux: Rendered) -> None:
    cluster = flux.rendering.blueprint.cluster
    repos = {d["metadata"]["name"]: d["spec"]["url"] for d in flux.docs("flux/helm-repositories.yaml")}
    releases = {}
    for path in flux.cluster_dir.rglob("helmrelease-*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                releases[doc["metadata"]["name"]] = doc
    planned = [r for c in flux.rendering.blueprint.components for r in c.releases]
    assert set(releases) == {r.name for r in planned}
    for rel in planned:
        hr = releases[rel.name]
        spec = hr["spec"]["chart"]["spec"]
        assert spec["version"] == rel.chart.version == cluster.version("charts", rel.chart.name)
        assert repos[spec["sourceRef"]["name"]] == rel.chart.repository
        assert hr["metadata"]["annotations"][gitops.SUBSTITUTE_ANNOTATION] == "disabled"
        assert hr["spec"]["install"]["strategy"]["name"] == "RetryOnFailure"
        assert hr["spec"]["upgrade"]["remediation"] == {"retries": 3, "strategy": "rollback",
                                                        "remediateLastFailure": True}
        assert hr["spec"]["timeout"] == rel.timeout
    assert releases["longhorn"]["spec"]["timeout"] == "15m"
    barman = {d["name"] for d in releases["barman-cloud"]["spec"]["dependsOn"]}
    assert barman == {"cloudnative-pg", "cert-manager"}


def test_flux_secrets_source_holds_only_the_secrets_file(flux: Rendered, tmp_path: Path) -> None:
    """The `ignore` rules of the cluster-secrets GitRepository, applied by real git to a checkout
    like the user's, leave exactly the encrypted secrets file."""
    need_programs("git")
    source = next(d for d in flux.docs("flux/cluster-secrets.yaml") if d["kind"] == "GitRepository")
    work = tmp_path / "checkout"
    shutil.copytree(flux.repo / "clusters", work / "clusters")
    (work / "clusters" / "other").mkdir()
    (work / "clusters" / "other" / "secrets.sops.yaml").write_text("x: 1\n")
    (work / "README.md").write_text("a repository\n")
    (work / "apps").mkdir()
    (work / "apps" / "kustomization.yaml").write_text("resources: []\n")
    (work / ".gitignore").write_text(source["spec"]["ignore"])
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(work)], check=True, env=env, timeout=30)
    listed = subprocess.run(["git", "-C", str(work), "ls-files", "--others", "--exclude-standard"], check=True,
                            env=env, capture_output=True, text=True, timeout=30).stdout.split()
    assert listed == ["clusters/home/secrets.sops.yaml"]


# --- Argo CD ----------------------------------------------------------------------------------------

def _applications(argo: Rendered) -> dict[str, dict[str, Any]]:
    apps = {}
    for path in (argo.cluster_dir / "argocd" / "apps").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Application":
                apps[doc["metadata"]["name"]] = doc
    return apps


def test_argocd_children_cover_every_component_and_release(argo: Rendered) -> None:
    apps = _applications(argo)
    comps = argo.rendering.blueprint.components
    for comp in comps:
        folder, releases = gitops.application_names(comp)
        if folder:
            source = apps[folder]["spec"]["source"]
            assert source["path"] == f"clusters/home/{gitops.component_dir(comp)}"
            assert source["plugin"]["name"] == "hkgen-sops"
            assert source["plugin"]["env"] == [{"name": "HKGEN_SECRETS", "value": "clusters/home/secrets.sops.yaml"}]
        for rel in comp.releases:
            helm = apps[releases[rel.name]]["spec"]["source"]
            assert (helm["chart"], helm["targetRevision"], helm["repoURL"]) == (
                rel.chart.name, rel.chart.version, rel.chart.repository)
            assert helm["helm"]["releaseName"] == rel.name
    for app in apps.values():
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}
        assert policy["retry"]["limit"] == -1
        assert app["spec"]["project"] == "home"
    root = argo.docs("argocd/root.yaml")[0]
    assert root["spec"]["source"]["path"] == "clusters/home/argocd"


def test_argocd_waves_follow_layers_and_dependencies(argo: Rendered) -> None:
    apps = _applications(argo)
    wave = {}
    for app in apps.values():
        layer = app["metadata"]["labels"]["hkgen.io/layer"]
        wave[app["metadata"]["name"]] = (int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]), layer)
    layered = sorted((w, LAYERS.index(layer)) for w, layer in wave.values() if layer in LAYERS)
    assert [layer for _w, layer in layered] == sorted(layer for _w, layer in layered)
    assert wave["argocd"][0] < min(w for w, _ in layered)  # Argo CD's own config is never held back
    comps = {c.name: c for c in argo.rendering.blueprint.components}
    for comp in comps.values():
        mine = [a for a in apps.values() if a["metadata"]["name"] in _names(comp)]
        for dep in comp.depends_on:
            theirs = [a for a in apps.values() if a["metadata"]["name"] in _names(comps[dep])]
            assert max(_wave(a) for a in theirs) < min(_wave(a) for a in mine), (comp.name, dep)


def _names(comp: Component) -> set[str]:
    folder, releases = gitops.application_names(comp)
    return {n for n in (folder, *releases.values()) if n}


def _wave(app: dict[str, Any]) -> int:
    return int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


def test_argocd_manages_itself_with_the_bootstrap_values(argo: Rendered) -> None:
    values = argo.docs("argocd/values.yaml")[0]
    lua = values["configs"]["cm"]["resource.customizations.health.argoproj.io_Application"]
    assert "obj.status.health.status" in lua
    assert _applications(argo)["argocd"]["spec"]["source"]["helm"]["valuesObject"] == values
    sidecar = values["repoServer"]["extraContainers"][0]
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert mounts["hkgen-cmp-plugin"]["subPath"] == "plugin.yaml"
    assert {"name": "SOPS_AGE_KEY_FILE", "value": "/sops/age.agekey"} in sidecar["env"]
    plugin = yaml.safe_load(argo.docs("argocd/cmp-plugin.yaml")[0]["data"]["plugin.yaml"])
    assert plugin["kind"] == "ConfigManagementPlugin" and plugin["metadata"]["name"] == "hkgen-sops"


def _flux_substitution(text: str, values: dict[str, str]) -> list[Any]:
    """Flux's postBuild substitution, as specified: per object, unless the object opts out."""
    out = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        meta = doc.get("metadata", {})
        if {**meta.get("labels", {}), **meta.get("annotations", {})}.get(gitops.SUBSTITUTE_ANNOTATION) != "disabled":
            raw = yaml.safe_dump(doc)
            raw = re.sub(r"\$\{([_A-Za-z][_A-Za-z0-9]*)\}", lambda m: values.get(m.group(1), ""), raw)
            doc = yaml.safe_load(raw)
        out.append(doc)
    return out


@tools("awk", "kubectl")
def test_argocd_plugin_substitutes_exactly_like_flux(argo: Rendered) -> None:
    from hkgen.config.secrets import sops_command

    plugin = yaml.safe_load(argo.docs("argocd/cmp-plugin.yaml")[0]["data"]["plugin.yaml"])
    command = [*plugin["spec"]["generate"]["command"], *plugin["spec"]["generate"]["args"]]
    sops_dir = str(Path(sops_command()).parent)
    folders = [a for a in _applications(argo).values() if "plugin" in a["spec"]["source"]]
    assert len(folders) >= 8
    checked = 0
    for app in folders:
        path = app["spec"]["source"]["path"]
        env = {"PATH": f"{sops_dir}:{os.environ['PATH']}", "HOME": str(argo.repo),
               "ARGOCD_APP_SOURCE_PATH": path, "ARGOCD_APP_NAME": app["metadata"]["name"],
               "ARGOCD_ENV_HKGEN_SECRETS": app["spec"]["source"]["plugin"]["env"][0]["value"],
               "SOPS_AGE_KEY_FILE": str(argo.key_file)}
        done = subprocess.run(command, cwd=argo.repo / path, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, (path, done.stderr)
        built = subprocess.run(["kubectl", "kustomize", str(argo.repo / path)], capture_output=True, text=True,
                               timeout=60, check=True).stdout
        assert [d for d in yaml.safe_load_all(done.stdout) if d] == _flux_substitution(built, argo.values), path
        checked += 1
    assert checked == len(folders)
    # And the values did arrive where the placeholders were; scripts opted out stay intact.
    out = subprocess.run(command, cwd=argo.repo / "clusters/home/platform/controllers/longhorn", capture_output=True,
                         text=True, timeout=60, check=True,
                         env={"PATH": f"{sops_dir}:{os.environ['PATH']}", "HOME": str(argo.repo),
                              "ARGOCD_APP_SOURCE_PATH": "clusters/home/platform/controllers/longhorn",
                              "ARGOCD_ENV_HKGEN_SECRETS": "clusters/home/secrets.sops.yaml",
                              "SOPS_AGE_KEY_FILE": str(argo.key_file)}).stdout
    secret = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Secret")
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == KNOWN["S3_ACCESS_KEY_ID"]
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == KNOWN["S3_SECRET_ACCESS_KEY"]


def test_argocd_plugin_fails_without_the_age_key(argo: Rendered) -> None:
    from hkgen.config.secrets import sops_command

    plugin = yaml.safe_load(argo.docs("argocd/cmp-plugin.yaml")[0]["data"]["plugin.yaml"])
    command = [*plugin["spec"]["generate"]["command"], *plugin["spec"]["generate"]["args"]]
    path = "clusters/home/platform/controllers/longhorn"
    done = subprocess.run(command, cwd=argo.repo / path, capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": f"{Path(sops_command()).parent}:{os.environ['PATH']}", "HOME": str(argo.repo),
                               "ARGOCD_APP_SOURCE_PATH": path,
                               "ARGOCD_ENV_HKGEN_SECRETS": "clusters/home/secrets.sops.yaml"})
    assert done.returncode != 0
    assert "${S3_ACCESS_KEY_ID}" not in done.stdout and "AKIA" not in done.stdout


# --- blueprint rules --------------------------------------------------------------------------------

def test_repository_names() -> None:
    assert gitops.repository_name("https://charts.longhorn.io") == "longhorn"
    assert gitops.repository_name("https://cloudnative-pg.github.io/charts") == "cloudnative-pg"
    assert gitops.repository_name("https://prometheus-community.github.io/helm-charts") == "prometheus-community"
    assert gitops.repository_name("https://charts.jetstack.io") == "jetstack"
    assert gitops.repository_name("oci://ghcr.io/home-operations/charts") == "ghcr"


def _extra(monkeypatch: pytest.MonkeyPatch, *comps: Component) -> None:
    original = platform.components
    monkeypatch.setattr(platform, "components", lambda cluster: [*original(cluster), *comps])


def _chart(name: str = "podinfo", repo: str = "https://stefanprodan.github.io/podinfo") -> Chart:
    return Chart(name, repo, "6.7.0")


def test_release_values_may_not_hold_placeholders(home_copy: Path, secrets_for: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_for(home_copy)
    bad = Component("leaky", "apps", "apps", releases=(
        Release("leaky", "apps", _chart(), freeze({"auth": {"password": "${GRAFANA_ADMIN_PASSWORD}"}})),))
    _extra(monkeypatch, bad)
    with pytest.raises(RenderError) as err:
        render_cluster(home_copy / "cluster.yaml", verify=False)
    assert "Helm release leaky of component leaky has a ${...} placeholder" in str(err.value)


def test_dependencies_must_point_back_in_layer_order(home_copy: Path, secrets_for: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_for(home_copy)
    _extra(monkeypatch, Component("early", "crds", "kube-system", files=(), depends_on=("longhorn-config",)))
    with pytest.raises(RenderError) as err:
        render_cluster(home_copy / "cluster.yaml", verify=False)
    assert "component early (crds) depends on longhorn-config in the later layer configs" in str(err.value)


def test_dependency_cycles_are_refused() -> None:
    a = Component("a", "apps", "x", depends_on=("b",))
    b = Component("b", "apps", "x", depends_on=("a",))
    with pytest.raises(RenderError, match="dependency cycle"):
        gitops.sync_waves([a, b])
    assert gitops.sync_waves([Component("a", "apps", "x"), Component("b", "apps", "x", depends_on=("a",))]) == {
        "a": 40, "b": 41}


@pytest.mark.parametrize("engine", ["flux", "argocd"])
def test_oci_charts_and_own_kustomizations(engine: str, home_copy: Path, secrets_for: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A release from an OCI registry and a component that ships its own kustomization.yaml still
    give a tree that builds and validates, for both engines."""
    text = (home_copy / "cluster.yaml").read_text().replace("  engine: flux\n", f"  engine: {engine}\n")
    (home_copy / "cluster.yaml").write_text(text)
    secrets_for(home_copy)
    cm = OutputFile(PurePosixPath("configmap.yaml"), "core/platform/priority-classes.yaml.j2",
                    freeze({"classes": [{"name": "extra", "value": 5, "globalDefault": False,
                                         "preemption": "Never", "description": "test"}]}))
    own = OutputFile(PurePosixPath("kustomization.yaml"), "core/gitops/kustomization.yaml.j2",
                     freeze({"resources": ["configmap.yaml"], "comment": "the component's own"}))
    comp = Component("oci-app", "apps", "apps", files=(cm, own), releases=(
        Release("oci-app", "apps", _chart("app-template", "oci://ghcr.io/bjw-s-labs/helm"), freeze({"x": 1})),))
    _extra(monkeypatch, comp)
    rendering = render_cluster(home_copy / "cluster.yaml")  # builds and schema-checks everything
    tree = rendering.tree
    if engine == "flux":
        oci = yaml.safe_load(tree[PurePosixPath("apps/oci-app/ocirepository-oci-app.yaml")])
        assert oci["spec"]["url"] == "oci://ghcr.io/bjw-s-labs/helm/app-template"
        assert oci["spec"]["ref"] == {"tag": "6.7.0"}
        hr = yaml.safe_load(tree[PurePosixPath("apps/oci-app/helmrelease-oci-app.yaml")])
        assert hr["spec"]["chartRef"] == {"kind": "OCIRepository", "name": "oci-app", "namespace": "apps"}
        layer = yaml.safe_load(tree[PurePosixPath("apps/kustomization.yaml")])["resources"]
        assert {"oci-app", "oci-app/helmrelease-oci-app.yaml", "oci-app/ocirepository-oci-app.yaml"} <= set(layer)
    else:
        app = yaml.safe_load(tree[PurePosixPath("argocd/apps/oci-app-helm.yaml")])
        assert app["spec"]["source"]["repoURL"] == "ghcr.io/bjw-s-labs/helm"
        repo = yaml.safe_load(tree[PurePosixPath("argocd/oci-repositories.yaml")])
        assert repo["stringData"]["enableOCI"] == "true"
        assert repo["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"


def test_broken_object_fails_render_naming_template_and_file(home_copy: Path, secrets_for: Any,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from hkgen.cli import main

    secrets_for(home_copy)
    broken = OutputFile(PurePosixPath("priority-classes.yaml"), "core/platform/priority-classes.yaml.j2",
                        freeze({"classes": [{"name": "broken", "value": "very high", "globalDefault": False,
                                             "preemption": "Never", "description": "x"}]}))
    _extra(monkeypatch, Component("broken", "crds", "kube-system", files=(broken,)))
    assert main(["render", str(home_copy)]) == 1  # VerifyError, turned into its problems by the CLI
    out = capsys.readouterr().out
    assert re.search(r"clusters/home/platform/crds/broken/priority-classes\.yaml:\d+:\d+: \$\.value: "
                     r"PriorityClass broken: 'very high' is not of type 'integer'.*"
                     r"\(template core/platform/priority-classes\.yaml\.j2\)", out), out
    assert not (home_copy / "platform").exists()  # nothing was written
