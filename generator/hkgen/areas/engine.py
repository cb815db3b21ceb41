"""The GitOps engine's self-management objects in Git (Flux's `flux/flux-system/`) and the engine pins
they and the bootstrapper share. `gitops` lays these out in the tree; `bootstrap` applies them from a
control plane's seed on first boot (see its docstring for the whole design).
"""

from __future__ import annotations

from typing import Any

from ..config.model import Cluster

__all__ = [
    "ARGOCD_NAMESPACE",
    "FLUX_MANIFESTS",
    "FLUX_NAMESPACE",
    "MANAGED",
    "flux_engine_objects",
    "flux_sync_objects",
    "pin",
    "repo_is_ssh",
]

FLUX_NAMESPACE = "flux-system"
ARGOCD_NAMESPACE = "argocd"
FLUX_MANIFESTS = "oci://ghcr.io/fluxcd/flux-manifests"
# flux2's release workflow signs flux-manifests keyless with cosign from GitHub Actions.
FLUX_SIGNER = {"issuer": "^https://token\\.actions\\.githubusercontent\\.com$",
               "subject": "^https://github\\.com/fluxcd/flux2.*$"}
# `flux install --components-extra` adds these; the bootstrapper installs the four default controllers.
FLUX_EXTRA_CONTROLLERS = ("image-reflector-controller", "image-automation-controller")
MANAGED = {"app.kubernetes.io/managed-by": "hkgen"}


def repo_is_ssh(cluster: Cluster) -> bool:
    """True when the engine reads Git over SSH (a deploy key is needed); HTTPS repos are public."""
    return cluster.repo_url.startswith("ssh://")


def pin(cluster: Cluster, name: str) -> str:
    """An engine pin of versions.yaml `engines` (a version or a sha256)."""
    return cluster.version("engines", name)


def flux_sync_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """GitRepository and Kustomization `flux-system`: what `flux bootstrap` writes in gotk-sync.yaml."""
    spec: dict[str, Any] = {"interval": "1m0s", "ref": {"branch": cluster.repo_branch}, "url": cluster.repo_url}
    if repo_is_ssh(cluster):
        spec["secretRef"] = {"name": FLUX_NAMESPACE}
    meta = {"name": FLUX_NAMESPACE, "namespace": FLUX_NAMESPACE}
    return [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": meta, "spec": spec},
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": meta,
         "spec": {"interval": "10m0s", "path": f"./clusters/{cluster.name}/flux", "prune": True,
                  "sourceRef": {"kind": "GitRepository", "name": FLUX_NAMESPACE}}},
    ]


def flux_engine_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """The pinned flux-manifests artifact and the Kustomization that keeps the controllers at it."""
    version = pin(cluster, "flux")
    meta = {"name": "flux-engine", "namespace": FLUX_NAMESPACE, "labels": dict(MANAGED)}
    drop = [{"patch": f"$patch: delete\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n"
                      f"  namespace: {FLUX_NAMESPACE}\n",
             "target": {"kind": "Deployment", "name": name}} for name in FLUX_EXTRA_CONTROLLERS]
    return [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository", "metadata": meta,
         "spec": {"interval": "1h", "url": FLUX_MANIFESTS, "ref": {"tag": version},
                  "verify": {"provider": "cosign", "matchOIDCIdentity": [dict(FLUX_SIGNER)]}}},
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": meta,
         "spec": {"interval": "1h", "retryInterval": "5m", "timeout": "10m", "path": "./",
                  # Never prune the engine: a bad artifact must not delete the controllers.
                  "prune": False, "wait": True,
                  "sourceRef": {"kind": "OCIRepository", "name": "flux-engine"}, "patches": drop}},
    ]
