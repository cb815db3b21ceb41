"""The GitOps tree: lays out every `Component` and wraps its Helm `Release`s for the cluster's
engine, Flux (default) or Argo CD. Both engines render from the same components.

Layout inside `clusters/<name>/` (the same for both engines):
  platform/<layer>/kustomization.yaml   one per platform layer (crds, controllers, configs)
  platform/<layer>/<component>/         a component's manifests and its kustomization.yaml
  apps/kustomization.yaml, apps/<component>/   the apps layer
Engine entry points:
  flux/     Flux objects: the secrets source, Helm repositories, one Kustomization per layer
            (crds -> controllers -> configs -> apps), and flux-system/ as `flux bootstrap` would lay
            it out minus the upstream manifests (areas/bootstrap.py: the control planes install the
            pinned engine themselves). No kustomization.yaml in flux/: Flux makes one.
            HelmReleases live in their component's folder.
  argocd/   `kubectl apply -k clusters/<name>/argocd`: the project, the root Application (app of
            apps, which manages itself), the secrets plugin, and argocd/apps/ with one child
            Application per component folder and per Helm release, in sync waves by layer.

Secrets: objects under platform/ and apps/ may hold `${KEY}` placeholders of the cluster's
SOPS-encrypted secrets file. Flux substitutes them (postBuild.substituteFrom the decrypted
`cluster-secrets` Secret); Argo CD runs the `hkgen-sops` config management plugin, which does the
same substitution on the kustomize output. Helm release values never hold placeholders (an Argo CD
Helm source cannot be substituted): secrets reach charts through Secrets named in their values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..config.model import Cluster
from ..core.errors import Problem, RenderError
from ..core.resources import data_dir
from .engine import flux_engine_objects, flux_sync_objects, repo_is_ssh
from .parts import LAYERS, Component, Format, OutputFile, Release, freeze

__all__ = [
    "ARGO_RETRY",
    "FLUX_TIMING",
    "SUBSTITUTED_FOLDERS",
    "SUBSTITUTE_ANNOTATION",
    "application_names",
    "component_dir",
    "files",
    "repository_name",
    "sync_waves",
]

SUBSTITUTE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"
# Top folders of the cluster tree whose objects get `${KEY}` substitution (both engines).
SUBSTITUTED_FOLDERS: tuple[str, ...] = ("platform", "apps")
ARGOCD_NAMESPACE = "argocd"
CMP_NAME = "hkgen-sops"
CMP_CONFIGMAP = "hkgen-cmp-plugin"
IN_CLUSTER = "https://kubernetes.default.svc"
ARGO_HELM = "https://argoproj.github.io/argo-helm"


@dataclass(frozen=True)
class Timing:
    """How long a Flux layer may take before it counts as failed, and why."""

    timeout: str
    why: str


# After a power cut every Pi boots at once: the API server answers after a few minutes, images are
# pulled again where the cache was lost, Longhorn re-attaches volumes. Flux retries a failed
# Kustomization every RETRY_INTERVAL (not only every `gitops.interval`), dependents poll their
# dependencies every 30 s (kustomize-controller --requeue-dependency), and a timeout only marks
# the layer failed for that attempt: nothing ever waits for a human.
FLUX_TIMING: Mapping[str, Timing] = freeze({
    "secrets": Timing("2m", "one Secret; fails fast when the sops-age key is missing"),
    "crds": Timing("5m", "CRDs, namespaces, priority classes, node labeller: API objects only"),
    "controllers": Timing("15m", "Longhorn (about 10 images on a Pi), cert-manager, CloudNativePG"),
    "configs": Timing("30m", "Longhorn storage classes and the restore gate: restoring a volume from S3 takes "
                             "minutes on a Pi"),
    "apps": Timing("20m", "Home Assistant's image alone is over 1 GB; volumes attach after Longhorn"),
})
RETRY_INTERVAL = "1m"
HELM_INDEX_INTERVAL = "1h"  # chart versions are pinned; the index only matters when a pin moves
INSTALL_RETRY_INTERVAL = "2m"
# Argo CD: retry forever, 30 s doubling up to 5 minutes between attempts.
ARGO_RETRY: Mapping[str, Any] = freeze({"limit": -1, "backoff": {"duration": "30s", "factor": 2, "maxDuration": "5m"}})
# Application health assessment was removed from Argo CD 1.8; without it a sync wave does not wait
# for the Applications of the previous wave to become healthy (operator manual, "Health").
APPLICATION_HEALTH_LUA = """\
hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil then
  if obj.status.health ~= nil then
    hs.status = obj.status.health.status
    if obj.status.health.message ~= nil then
      hs.message = obj.status.health.message
    end
  end
end
return hs
"""


def component_dir(component: Component) -> PurePosixPath:
    """Folder of `component` inside the cluster tree."""
    if component.layer == "apps":
        return PurePosixPath("apps", component.name)
    return PurePosixPath("platform", component.layer, component.name)


def _layer_dir(layer: str) -> PurePosixPath:
    return PurePosixPath("apps") if layer == "apps" else PurePosixPath("platform", layer)


def repository_name(url: str) -> str:
    """A readable, stable object name for a chart repository URL
    (https://charts.longhorn.io -> longhorn, https://cloudnative-pg.github.io/charts -> cloudnative-pg).
    """
    import hashlib
    import re

    host, _, path = url.split("://", 1)[-1].partition("/")
    generic = {"www", "charts", "chart", "helm", "github", "gitlab", "io", "com", "org", "net", "dev", "sh", "pkg"}
    words = [w for w in host.lower().split(".") if w not in generic]
    if not words:
        words = [w for w in path.lower().split("/") if w and w not in generic] or [host]
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(words)).strip("-")[:50].strip("-")
    if not name:
        name = "repo-" + hashlib.sha256(url.encode()).hexdigest()[:8]
    return name


# --- checks ---------------------------------------------------------------------------------------

def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _check(cluster: Cluster, components: list[Component]) -> None:
    problems: list[Problem] = []

    def bad(message: str) -> None:
        problems.append(Problem(cluster.source, 0, 0, "$", message))

    by_name: dict[str, Component] = {}
    for comp in components:
        if comp.name in by_name:
            bad(f"two components are called {comp.name!r}")
        by_name[comp.name] = comp
        for rel in comp.releases:
            if any("${" in s for s in _strings(rel.values)):
                bad(f"Helm release {rel.name} of component {comp.name} has a ${{...}} placeholder in its values; "
                    "an Argo CD Helm source cannot substitute it: put the secret in a Secret manifest of the "
                    "component and name that Secret in the values")
    order = {layer: i for i, layer in enumerate(LAYERS)}
    for comp in components:
        for dep in comp.depends_on:
            other = by_name.get(dep)
            if other is None:
                bad(f"component {comp.name} depends on {dep!r}, which is not planned")
            elif order[other.layer] > order[comp.layer]:
                bad(f"component {comp.name} ({comp.layer}) depends on {dep} in the later layer {other.layer}")
    if problems:
        raise RenderError(problems)


def sync_waves(components: list[Component]) -> dict[str, int]:
    """Argo CD sync wave of every component: 10, 20, 30, 40 for the layers in order, plus the
    length of its dependency chain inside its layer (so a dependency always syncs first).
    """
    by_name = {c.name: c for c in components}
    depth: dict[str, int] = {}

    def walk(name: str, seen: tuple[str, ...]) -> int:
        if name in seen:
            raise RenderError([Problem("components", 0, 0, "$", "dependency cycle: " + " -> ".join((*seen, name)))])
        if name not in depth:
            comp = by_name[name]
            same = [d for d in comp.depends_on if d in by_name and by_name[d].layer == comp.layer]
            depth[name] = 1 + max((walk(d, (*seen, name)) for d in same), default=-1)
        return depth[name]

    return {c.name: 10 * (LAYERS.index(c.layer) + 1) + walk(c.name, ()) for c in components}


def _own_kustomization(comp: Component) -> bool:
    return any(f.path == PurePosixPath("kustomization.yaml") for f in comp.files)


def _resources(comp: Component) -> list[str]:
    """What the kustomization.yaml hkgen writes for a component lists: every YAML file at the top
    of its folder and each subfolder that has a kustomization.yaml of its own.
    """
    top = [f.path.name for f in comp.files
           if len(f.path.parts) == 1 and f.format == "yaml" and f.path.suffix in (".yaml", ".yml")]
    return top + sorted({f.path.parts[0] for f in comp.files
                         if len(f.path.parts) == 2 and f.path.name == "kustomization.yaml"})


def application_names(component: Component) -> tuple[str | None, dict[str, str]]:
    """Argo CD Application names of a component: the one for its folder (None when the folder
    holds no manifests) and one per Helm release (`<release>-helm`).
    """
    has_folder = _own_kustomization(component) or bool(_resources(component))
    return component.name if has_folder else None, {r.name: f"{r.name}-helm" for r in component.releases}


# --- shared layout --------------------------------------------------------------------------------

def _out(dest: PurePosixPath | str, template: str, fmt: Format = "yaml", **context: Any) -> OutputFile:
    return OutputFile(PurePosixPath(dest), f"core/gitops/{template}", freeze(context), fmt)


def _component_files(comp: Component, extra: list[OutputFile]) -> tuple[list[OutputFile], list[str]]:
    """A component's files in its folder, plus `extra` engine files (Flux HelmReleases).

    Returns the files and the entries the layer kustomization lists for the component: its folder,
    and the engine files too when the component ships its own kustomization.yaml (which cannot
    know their names). Otherwise hkgen writes the folder's kustomization.yaml: every YAML file at
    the top of the folder, and each subfolder that has a kustomization.yaml of its own.
    """
    base = component_dir(comp)
    files = [OutputFile(base / f.path, f.template, f.context, f.format, f.mode) for f in comp.files]
    taken = {f.path for f in comp.files}
    for f in extra:
        if f.path.relative_to(base) in taken:
            raise RenderError([Problem(str(base / f.path), 0, 0, "$",
                                       f"component {comp.name} already has a file where hkgen writes {f.path.name}")])
    files += extra
    if _own_kustomization(comp):
        return files, [base.name, *(f"{base.name}/{f.path.name}" for f in extra)]
    resources = [*_resources(comp), *(f.path.name for f in extra)]
    if not resources:
        return files, []
    files.append(_out(base / "kustomization.yaml", "kustomization.yaml.j2", resources=sorted(set(resources)),
                      comment=f"{comp.name}: {comp.description}" if comp.description else comp.name))
    return files, [base.name]


def _layer_files(components: list[Component], entries: dict[str, list[str]]) -> list[OutputFile]:
    files = []
    for layer in LAYERS:
        listed = sorted(e for c in components if c.layer == layer for e in entries.get(c.name, []))
        files.append(_out(_layer_dir(layer) / "kustomization.yaml", "kustomization.yaml.j2", resources=listed,
                          comment=f"layer {layer}: every component folder of the layer"))
    return files


def files(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    """Every file of the GitOps tree for `components`, for the engine of `cluster`."""
    _check(cluster, components)
    if cluster.engine == "argocd":
        return _argocd(cluster, components)
    return _flux(cluster, components)


# --- Flux -----------------------------------------------------------------------------------------

def _release_sources(releases: list[Release]) -> dict[str, str]:
    """HelmRepository name of every https chart repository in use (one object per URL)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for url in sorted({r.chart.repository for r in releases if not r.chart.oci}):
        name = repository_name(url)
        i = 2
        while name in taken:
            name, i = f"{repository_name(url)}-{i}", i + 1
        taken.add(name)
        names[url] = name
    return names


def _flux(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    by_name = {c.name: c for c in components}
    releases = [r for c in components for r in c.releases]
    sources = _release_sources(releases)
    interval = cluster.gitops_interval
    files: list[OutputFile] = []
    entries: dict[str, list[str]] = {}
    for comp in components:
        base = component_dir(comp)
        # HelmRelease dependsOn works between HelmReleases only; across layers the layer
        # Kustomizations already order things.
        needs = [{"name": r.name, "namespace": r.namespace}
                 for d in comp.depends_on if d in by_name and by_name[d].layer == comp.layer
                 for r in by_name[d].releases]
        extra: list[OutputFile] = []
        for rel in comp.releases:
            if rel.chart.oci:
                extra.append(_out(base / f"ocirepository-{rel.name}.yaml", "flux/ocirepository.yaml.j2",
                                  name=rel.name, namespace=rel.namespace,
                                  url=f"{rel.chart.repository.rstrip('/')}/{rel.chart.name}",
                                  tag=rel.chart.version, interval=HELM_INDEX_INTERVAL))
            extra.append(_out(
                base / f"helmrelease-{rel.name}.yaml", "flux/helmrelease.yaml.j2",
                name=rel.name, namespace=rel.namespace, chart=rel.chart.name, version=rel.chart.version,
                oci=rel.chart.oci, source=sources.get(rel.chart.repository, ""), interval=interval,
                chart_interval=HELM_INDEX_INTERVAL, timeout=rel.timeout, depends_on=needs, values=rel.values,
                retry_interval=INSTALL_RETRY_INTERVAL, component=comp.name,
            ))
        comp_files, entries[comp.name] = _component_files(comp, extra)
        files += comp_files
    files += _layer_files(components, entries)
    root = f"clusters/{cluster.name}"
    layers = []
    previous = "cluster-secrets"
    for layer in LAYERS:
        layers.append({"name": layer, "path": f"./{root}/{_layer_dir(layer)}", "depends_on": previous,
                       "timeout": FLUX_TIMING[layer].timeout, "why": FLUX_TIMING[layer].why})
        previous = layer
    secrets_path = f"{root}/{cluster.secrets_file}"
    ignore = "\n".join(["# Only the cluster's encrypted secrets file: this source feeds the cluster-secrets",
                        "# Kustomization alone, so Flux generates a kustomization.yaml holding just that file.",
                        "/*", "!/clusters/", "/clusters/*", f"!/{root}/", f"/{root}/*", f"!/{secrets_path}"])
    files += [
        _out("flux/cluster-secrets.yaml", "flux/cluster-secrets.yaml.j2", url=cluster.repo_url,
             branch=cluster.repo_branch, interval=interval, ignore=ignore, path=f"./{root}",
             timeout=FLUX_TIMING["secrets"].timeout, retry=RETRY_INTERVAL, secrets_file=secrets_path,
             ssh=repo_is_ssh(cluster)),
        _out("flux/layers.yaml", "flux/layers.yaml.j2", layers=layers, interval=interval, retry=RETRY_INTERVAL),
        _out("flux/README.md", "flux/README.md.j2", "markdown", root=root, secrets_file=secrets_path,
             timing=[{"name": k, "timeout": v.timeout, "why": v.why} for k, v in FLUX_TIMING.items()],
             retry=RETRY_INTERVAL, interval=interval, install_retry=INSTALL_RETRY_INTERVAL,
             index_interval=HELM_INDEX_INTERVAL),
    ]
    files += _flux_self(cluster)
    if sources:
        files.append(_out("flux/helm-repositories.yaml", "flux/helm-repositories.yaml.j2",
                          repositories=[{"name": n, "url": u} for u, n in sorted(sources.items(), key=lambda x: x[1])],
                          interval=HELM_INDEX_INTERVAL))
    return files


def _flux_self(cluster: Cluster) -> list[OutputFile]:
    """flux/flux-system/, laid out as `flux bootstrap` lays it out, minus the upstream manifests:
    the sync objects and the pinned engine artifact (see areas/bootstrap.py).
    """
    base = PurePosixPath("flux/flux-system")
    return [
        _out(base / "gotk-sync.yaml", "flux/objects.yaml.j2", objects=flux_sync_objects(cluster), comment=[
            "The source and Kustomization `flux bootstrap` would write here (same names and fields): Flux",
            "syncs this folder from Git. hkgen-gitops-bootstrap applies them on a new cluster."]),
        _out(base / "flux-engine.yaml", "flux/objects.yaml.j2", objects=flux_engine_objects(cluster), comment=[
            "Flux manages itself: its controllers follow the release pinned in hkgen's versions.yaml",
            "(signed flux-manifests artifact, the four default controllers). Never pruned."]),
        _out(base / "kustomization.yaml", "kustomization.yaml.j2", resources=["flux-engine.yaml", "gotk-sync.yaml"],
             comment="Flux itself (flux bootstrap would add gotk-components.yaml and drop flux-engine.yaml)"),
    ]


# --- Argo CD --------------------------------------------------------------------------------------

def _cmp_plugin() -> dict[str, Any]:
    script = (data_dir("templates") / "gitops" / "argocd" / "hkgen-sops.sh").read_text("utf-8")
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ConfigManagementPlugin",
        "metadata": {"name": CMP_NAME},
        "spec": {"generate": {"command": ["sh", "-c"], "args": [script]}},
    }


def argocd_values(cluster: Cluster) -> dict[str, Any]:
    """Helm values of the argo-cd chart: the Application health check the sync waves need, and the
    hkgen-sops plugin as a repo-server sidecar (sops copied in by an init container).
    """
    version = cluster.version("images", "argocd")
    path = "/custom-tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    # hkgen's sync alert reads argocd_app_info from the application controller (port 8082), scraped
    # through the annotated-pods job: a ServiceMonitor would need CRDs Argo CD installs only later.
    controller = ({"controller": {"podAnnotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8082"}}}
                  if cluster.alerting else {})
    return {
        **controller,
        "global": {"image": {"tag": version}},
        "dex": {"enabled": False},
        "notifications": {"enabled": False},
        "configs": {"cm": {"resource.customizations.health.argoproj.io_Application": APPLICATION_HEALTH_LUA}},
        "repoServer": {
            "initContainers": [{
                "name": "install-sops",
                "image": f"ghcr.io/getsops/sops:{cluster.version('images', 'sops')}",
                "command": ["cp", "/usr/local/bin/sops", "/custom-tools/sops"],
                "volumeMounts": [{"name": "custom-tools", "mountPath": "/custom-tools"}],
            }],
            "extraContainers": [{
                "name": CMP_NAME,
                # The Argo CD image itself: it has kustomize, sh and awk, all the plugin needs but sops.
                "image": f"quay.io/argoproj/argocd:{version}",
                "command": ["/var/run/argocd/argocd-cmp-server"],
                "env": [{"name": "SOPS_AGE_KEY_FILE", "value": "/sops/age.agekey"}, {"name": "PATH", "value": path}],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 999, "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "var-files", "mountPath": "/var/run/argocd"},
                    {"name": "plugins", "mountPath": "/home/argocd/cmp-server/plugins"},
                    {"name": CMP_CONFIGMAP, "mountPath": "/home/argocd/cmp-server/config/plugin.yaml",
                     "subPath": "plugin.yaml"},
                    {"name": "cmp-tmp", "mountPath": "/tmp"},  # noqa: S108 - the sidecar's own emptyDir
                    {"name": "custom-tools", "mountPath": "/custom-tools"},
                    {"name": "sops-age", "mountPath": "/sops", "readOnly": True},
                ],
            }],
            "volumes": [
                {"name": CMP_CONFIGMAP, "configMap": {"name": CMP_CONFIGMAP}},
                {"name": "cmp-tmp", "emptyDir": {}},
                {"name": "custom-tools", "emptyDir": {}},
                {"name": "sops-age", "secret": {"secretName": "sops-age"}},
            ],
        },
    }


def _argocd(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    root = f"clusters/{cluster.name}"
    waves = sync_waves(components)
    files: list[OutputFile] = []
    entries: dict[str, list[str]] = {}
    apps: list[dict[str, Any]] = []
    oci: dict[str, str] = {}
    for comp in components:
        comp_files, entries[comp.name] = _component_files(comp, [])
        files += comp_files
        folder, release_apps = application_names(comp)
        common = {"wave": waves[comp.name], "layer": comp.layer, "component": comp.name}
        if folder is not None:
            apps.append({**common, "kind": "folder", "name": folder, "namespace": comp.namespace,
                         "path": f"{root}/{component_dir(comp)}"})
        for rel in comp.releases:
            repo = rel.chart.repository
            if rel.chart.oci:
                # Argo CD names OCI Helm repositories without the scheme and needs them declared.
                repo = repo.removeprefix("oci://").rstrip("/")
                oci[repo] = repository_name(repo)
            apps.append({**common, "kind": "helm", "name": release_apps[rel.name], "namespace": rel.namespace,
                         "release": rel.name, "chart": rel.chart.name, "repo": repo, "version": rel.chart.version,
                         "values": rel.values})
    files += _layer_files(components, entries)
    names = [a["name"] for a in apps] + ["root", "argocd"]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RenderError([Problem(cluster.source, 0, 0, "$", f"two Argo CD Applications would be called {n!r}")
                           for n in duplicates])
    values = argocd_values(cluster)
    # Argo CD manages itself with the values it was installed with; it syncs before everything else so
    # a stuck app of the house can never hold back a fix of Argo CD's own configuration.
    apps.append({"kind": "helm", "name": "argocd", "namespace": ARGOCD_NAMESPACE, "release": "argocd",
                 "chart": "argo-cd", "repo": ARGO_HELM, "version": cluster.version("charts", "argo-cd"),
                 "values": values, "wave": -5, "layer": "gitops", "component": "argocd"})
    repos = sorted({cluster.repo_url, ARGO_HELM, *(a["repo"] for a in apps if a["kind"] == "helm")})
    context: dict[str, Any] = {"repo_url": cluster.repo_url, "branch": cluster.repo_branch, "project": cluster.name,
               "namespace": ARGOCD_NAMESPACE, "server": IN_CLUSTER, "retry": ARGO_RETRY,
               "secrets_file": f"{root}/{cluster.secrets_file}", "plugin": CMP_NAME}
    app_files = [_out(f"argocd/apps/{a['name']}.yaml", "argocd/application.yaml.j2", app=a, **context) for a in apps]
    files += app_files
    files.append(_out("argocd/apps/kustomization.yaml", "kustomization.yaml.j2",
                      resources=sorted(f.path.name for f in app_files),
                      comment="child Applications: one per component folder and per Helm release"))
    top = ["project.yaml", "root.yaml", "cmp-plugin.yaml", "apps"]
    files += [
        _out("argocd/project.yaml", "argocd/project.yaml.j2", repos=repos, **context),
        _out("argocd/root.yaml", "argocd/root.yaml.j2", path=f"{root}/argocd", **context),
        _out("argocd/cmp-plugin.yaml", "argocd/cmp-plugin.yaml.j2", name=CMP_CONFIGMAP, plugin_spec=_cmp_plugin(),
             **{k: v for k, v in context.items() if k != "plugin"}),
        _out("argocd/values.yaml", "argocd/values.yaml.j2", values=values),
        _out("argocd/README.md", "argocd/README.md.j2", "markdown", root=root,
             version=cluster.version("charts", "argo-cd"), waves=sorted({(a["wave"], a["layer"]) for a in apps}),
             key_fingerprint=cluster.version("engines", "argo-cd-chart-signing-key-fingerprint"),
             key_url=cluster.version("engines", "argo-cd-chart-signing-key-url"),
             **context),
    ]
    if oci:
        files.append(_out("argocd/oci-repositories.yaml", "argocd/oci-repositories.yaml.j2",
                          repositories=[{"name": n, "url": u} for u, n in sorted(oci.items())], **context))
        top.append("oci-repositories.yaml")
    files.append(_out("argocd/kustomization.yaml", "kustomization.yaml.j2", resources=top,
                      comment="bootstrap: kubectl apply -k (the root Application then manages all of it)"))
    return files
