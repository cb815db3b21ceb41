"""The cluster installs its own GitOps engine: the pins, the engine's self-management objects and the
bootstrapper every control plane carries in its seed.

Nothing upstream is shipped. The engine is named by version and sha256 or signing key (versions.yaml
`engines`) and fetched where it is used, by `hkgen-gitops-bootstrap` on a control plane:

* Flux: the CLI archive of the pinned release (sha256 checked), whose `flux install --export`
  writes the manifests `flux bootstrap` would commit as gotk-components.yaml (sha256 checked
  again; the release asset install.yaml is a different file, see versions.yaml). In Git, hkgen
  writes `flux/flux-system/` the way `flux bootstrap` lays it out: `gotk-sync.yaml` (the
  GitRepository and Kustomization `flux-system`, same names and fields as bootstrap's) plus
  `flux-engine.yaml`, an OCIRepository of the release's signed `flux-manifests` artifact (tag
  pinned, cosign keyless identity of flux2's release workflow verified) and a Kustomization over
  it, so version bumps in Git upgrade the controllers. Running `flux bootstrap` on the same path
  later rewrites kustomization.yaml without flux-engine.yaml: Flux then drops that Kustomization
  (prune off, so the controllers stay) and gotk-components.yaml owns them: a hand-over, no fight.
* Argo CD: the pinned argo-cd chart archive, verified the way `helm verify` does: its provenance
  file must be signed by argo-helm's signing key (fingerprint pinned) and name the archive's
  sha256, chart name and version (gpgv on the Pi). Then it is templated by MicroK8s' bundled
  helm with the same values as the `argocd` Application, which then manages Argo CD from Git;
  an AppProject and the root Application start the app of apps.

Secrets: the age key (`sops-age`, in the engine's namespace: flux-system for kustomize-controller,
argocd for the hkgen-sops plugin) and, for an SSH repository, the deploy key reach a control plane
only through `hkgen boot-media` (`BOOT_SECRETS_DIR` on the boot partition); workers get neither.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..config.model import Cluster, Node
from .engine import (
    ARGOCD_NAMESPACE,
    FLUX_MANIFESTS,
    FLUX_NAMESPACE,
    MANAGED,
    flux_engine_objects,
    flux_sync_objects,
    pin,
    repo_is_ssh,
)

BOOT_SECRETS_DIR = "hkgen"  # folder on the boot partition (/boot/firmware/hkgen on the Pi)
BOOT_SECRET_FILES = {"age": "age.agekey", "deploy": "deploy-key"}
PI_BOOT_PARTITION = "/boot/firmware"
GITOPS_DIR = "/etc/hkgen/gitops"
FLUX_RELEASES = "https://github.com/fluxcd/flux2/releases/download"
ARGO_HELM_RELEASES = "https://github.com/argoproj/argo-helm/releases/download"

__all__ = [
    "BOOT_SECRETS_DIR",
    "BOOT_SECRET_FILES",
    "FLUX_MANIFESTS",
    "argocd_seed_objects",
    "bootstrap_config",
    "flux_engine_objects",
    "flux_sync_objects",
    "repo_is_ssh",
]

def argocd_seed_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """What starts Argo CD's app of apps: the hkgen-sops plugin's ConfigMap (the repo server's
    sidecar mounts it and would not start without it), a minimal project and the root Application
    (each replaced by the version in Git at the first sync).
    """
    from ..core.yamlio import dump
    from .gitops import CMP_CONFIGMAP, _cmp_plugin

    meta = {"namespace": ARGOCD_NAMESPACE, "labels": dict(MANAGED)}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CMP_CONFIGMAP, **meta},
         "data": {"plugin.yaml": dump(_cmp_plugin())}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": cluster.name, **meta},
         "spec": {"sourceRepos": [cluster.repo_url],
                  "destinations": [{"server": "https://kubernetes.default.svc", "namespace": "*"}],
                  "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "root", **meta},
         "spec": {"project": cluster.name,
                  "source": {"repoURL": cluster.repo_url, "targetRevision": cluster.repo_branch,
                             "path": f"clusters/{cluster.name}/argocd"},
                  "destination": {"server": "https://kubernetes.default.svc", "namespace": ARGOCD_NAMESPACE},
                  "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}},
    ]


def bootstrap_config(cluster: Cluster) -> dict[str, str]:
    """Settings of hkgen-gitops-bootstrap (shell variables of /etc/hkgen/gitops/bootstrap.conf)."""
    flux = cluster.engine != "argocd"
    ssh = repo_is_ssh(cluster)
    conf = {
        "engine": "flux" if flux else "argocd",
        "namespace": FLUX_NAMESPACE if flux else ARGOCD_NAMESPACE,
        "joined_file": "/var/lib/hkgen/microk8s-joined",
        "microk8s": "/snap/bin/microk8s",
        "curl": "/usr/bin/curl",
        "ssh_keyscan": "/usr/bin/ssh-keyscan",
        "boot_secrets": f"{PI_BOOT_PARTITION}/{BOOT_SECRETS_DIR}",
        "secrets_dir": "/var/lib/hkgen/gitops",
        "sync_file": f"{GITOPS_DIR}/engine-objects.yaml",
        "repo_url": cluster.repo_url,
        "repo_ssh": "yes" if ssh else "no",
    }
    if flux:
        version = pin(cluster, "flux").removeprefix("v")
        conf |= {
            "engine_probe": "deployment/kustomize-controller",
            "sync_probe": "kustomizations.kustomize.toolkit.fluxcd.io/flux-system",
            "crd_names": "gitrepositories.source.toolkit.fluxcd.io ocirepositories.source.toolkit.fluxcd.io "
                         "kustomizations.kustomize.toolkit.fluxcd.io",
            "git_secret": FLUX_NAMESPACE,
            "git_secret_labels": "",
            "flux_cli_url": f"{FLUX_RELEASES}/v{version}/flux_{version}_linux_arm64.tar.gz",
            "flux_cli_sha256": pin(cluster, "flux-cli-linux-arm64-sha256"),
            "manifest_sha256": pin(cluster, "flux-manifests-sha256"),
        }
    else:
        chart = cluster.version("charts", "argo-cd")
        conf |= {
            "engine_probe": "deployment/argocd-repo-server",
            "sync_probe": "applications.argoproj.io/root",
            "crd_names": "applications.argoproj.io appprojects.argoproj.io",
            "git_secret": "hkgen-repository",
            "git_secret_labels": "argocd.argoproj.io/secret-type=repository",
            "chart_url": f"{ARGO_HELM_RELEASES}/argo-cd-{chart}/argo-cd-{chart}.tgz",
            # Its Helm provenance file, checked like `helm verify` against argo-helm's signing key.
            "chart_prov_url": f"{ARGO_HELM_RELEASES}/argo-cd-{chart}/argo-cd-{chart}.tgz.prov",
            "chart_name": "argo-cd",
            "chart_version": chart,
            "chart_key_url": pin(cluster, "argo-cd-chart-signing-key-url"),
            "chart_key_fingerprint": pin(cluster, "argo-cd-chart-signing-key-fingerprint").upper(),
            "gpg": "/usr/bin/gpg",  # gnupg and gpgv: on every Ubuntu Server (apt verifies with them)
            "gpgv": "/usr/bin/gpgv",
            "chart_values": f"{GITOPS_DIR}/argocd-values.yaml",
            "chart_release": "argocd",
        }
    return conf


def seed_files(cluster: Cluster, node: Node) -> list[dict[str, Any]]:
    """write_files entries of a control plane's seed (none for a worker): script, unit, timer,
    settings and the objects the engine needs from the start. Same shape as seeds._file.
    """
    if not node.is_control_plane:
        return []
    import shlex

    from .gitops import argocd_values

    def file(path: str, template: str, mode: str = "0644", data: Any = None) -> dict[str, Any]:
        return {"path": path, "permissions": mode, "template": f"core/cloud-init/files/{template}",
                "data": data, "append": False}

    conf = bootstrap_config(cluster)
    objects = (flux_sync_objects(cluster) + flux_engine_objects(cluster) if conf["engine"] == "flux"
               else argocd_seed_objects(cluster))
    files = [
        file("/usr/local/sbin/hkgen-gitops-bootstrap", "hkgen-gitops-bootstrap.sh", "0755"),
        file(f"{GITOPS_DIR}/bootstrap.conf", "bootstrap.conf.j2", "0644",
             {k: shlex.quote(v) for k, v in conf.items()}),
        file(conf["sync_file"], "yaml-documents.j2", "0644", objects),
        file("/etc/systemd/system/hkgen-gitops-bootstrap.service", "hkgen-gitops-bootstrap.service.j2"),
        file("/etc/systemd/system/hkgen-gitops-bootstrap.timer", "hkgen-gitops-bootstrap.timer.j2"),
    ]
    if conf["engine"] == "argocd":
        files.append(file(conf["chart_values"], "yaml-documents.j2", "0644", [argocd_values(cluster)]))
    return files


def repo_host(cluster: Cluster) -> str:
    """Host of the Git repository (where a deploy key is registered)."""
    return urlsplit(cluster.repo_url).hostname or cluster.repo_url
