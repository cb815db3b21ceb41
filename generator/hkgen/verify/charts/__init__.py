"""Render every Helm chart of a rendered tree for real and check what hkgen asked of it.

Helm silently ignores a values key a chart does not read, so a typo in Longhorn's
`defaultSettings` or in the kubelet directory fails nothing: it just removes the behaviour the
cluster depends on. This module finds every Flux `HelmRelease` and every Helm-sourced Argo CD
`Application` in a tree (a folder of YAML files, e.g. `clusters/<name>/`), finds the chart at the
pinned version in local chart folders, and for each release:

1. assembles exactly the values the GitOps engine would pass to Helm, remembering where each
   key is written (file, line, column): Flux `spec.valuesFrom` (ConfigMaps and Secrets that are
   plain files in the tree or kustomize generators; `targetPath` too) then `spec.values`; Argo
   CD `helm.valueFiles` (`$ref/...` files of the tree; files inside the chart are named, not
   read), `valuesObject` (else the `values` string), then `parameters`. `${KEY}` secret
   placeholders stay literal strings;
2. checks every key against the chart (rules below), and the chart's `kubeVersion` against the
   cluster's Kubernetes version;
3. renders the chart with Helm's own engine (the optional `helm-python-sdk`, Helm v4 in-process),
   which also runs the chart's `values.schema.json` (remote `$ref`s are pointed at the copy of
   the referenced schema inside the chart, found by its `$id`), with the cluster's Kubernetes
   version and the API groups the tree installs as capabilities; Flux `postRenderers` are then
   applied with kustomize, and what Helm logs (values whose shape differs from the chart's
   default) becomes a warning at that key;
4. validates every rendered document (and the chart's `crds/` Helm installs) against the CRDs the
   tree itself installs (exact versions: plain CRD files, every chart's `crds/`, CRDs charts
   render), extra CRD schema folders, and else with the checks the rest of the tree gets
   (`verify/k8s.validate_object`: Kubernetes' strict schemas of the cluster's version, hkgen's
   own schemas of the kinds it writes); a document of a kind no schema describes is an error;
5. reports each finding as a `Problem` at the HelmRelease/Application (or values file) line.

Which values keys count as defined (the "unknown values key" rule):
- a key the chart's `values.yaml` has at that path, even with a null value;
- a key the chart's templates read by that path (`.Values.a.b`, `(.Values.a).b`,
  `index .Values "a" "b"`): big charts document many keys only in comments; beneath a key the
  templates read only as a whole and values.yaml does not describe, anything goes;
- under a subchart's key (its alias or name), a key of the subchart's own `values.yaml` or of the
  parent's overrides there; at a chart's top level also the keys of its library subcharts
  (library charts such as bjw-s `common` merge their values into the parent's);
- `global` at a chart's top level; its keys are checked against the union of the `global`
  maps of the chart and all its subcharts;
- anything beneath a defined key whose default is not a non-empty mapping (null, a scalar, `{}`
  or a list): the chart does not describe that shape, it takes the value as a whole;
- anything beneath a defined key whose default mapping has keys that are not identifiers
  (`timeout.reconciliation`, `policy.csv`): ConfigMap data the chart copies key by key;
- anything beneath a defined key named like a Kubernetes pass-through field (`PASSTHROUGH`:
  labels, annotations, nodeSelector, tolerations, affinity, resources, securityContext, probes,
  env/volume lists, ...): charts copy these verbatim into manifests, where step 4 checks them
  against the Kubernetes schema, so a typo there is still caught.
Every other key is reported, with the closest defined sibling as a hint.

The package, one module per seam: `sdk` (the optional Helm SDK), `yamlpos` (YAML with positions),
`sources` (the tree indexed), `releases` (releases and their values), `index` (local chart folders),
`keys` (the values-key rule), `kubeversion` (`kubeVersion` ranges), `schemas` (schemas of rendered
manifests), `helm` (rendering with Helm's engine), `check` (`check_tree` and its report).
"""

from __future__ import annotations

from .check import ReleaseResult, Report, check_tree
from .helm import Manifest
from .index import ChartEntry, ChartIndex
from .keys import PASSTHROUGH
from .kubeversion import kube_version_allows
from .releases import Release, find_releases
from .sdk import helm_sdk
from .sources import read_tree
from .yamlpos import Where

__all__ = [
    "PASSTHROUGH",
    "ChartEntry",
    "ChartIndex",
    "Manifest",
    "Release",
    "ReleaseResult",
    "Report",
    "Where",
    "check_tree",
    "find_releases",
    "helm_sdk",
    "kube_version_allows",
    "read_tree",
]
