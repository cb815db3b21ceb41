"""The unknown-values-key rule (see the package docstring): every user key checked against the chart's
values.yaml and template reads.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config.load import PathKey
from .index import _ChartTree, _Level

PASSTHROUGH = frozenset({
    "affinity", "annotations", "containerSecurityContext", "dnsConfig", "env", "envFrom", "extraArgs",
    "extraContainers", "extraEnv", "extraEnvFrom", "extraEnvs", "extraInitContainers", "extraVolumeMounts",
    "extraVolumes", "hostAliases", "initContainers", "labels", "lifecycle", "livenessProbe", "nodeSelector",
    "podSecurityContext", "readinessProbe", "resources", "securityContext", "sidecars", "startupProbe",
    "storageSpec", "tolerations", "topologySpreadConstraints", "volumeClaimTemplate", "volumeMounts", "volumes",
})
_PASSTHROUGH_SUFFIXES = ("Annotations", "Labels", "NodeSelector", "Tolerations", "Affinity", "SecurityContext",
                         "Resources")

def _passthrough(key: str) -> bool:
    return key in PASSTHROUGH or key.endswith(_PASSTHROUGH_SUFFIXES)


def _data_map(default: Mapping[Any, Any]) -> bool:
    """A default whose keys are not identifiers (`timeout.reconciliation`, `policy.csv`) is data a
    chart copies into a ConfigMap key by key (Argo CD's `configs.cm`): its keys are free-form.
    """
    return any(not isinstance(k, str) or not k.replace("_", "").replace("-", "").isalnum() for k in default)


# --------------------------------------------------------------------------------------------
# The values-key check

@dataclass
class _KeyCheck:
    checked: int = 0
    freeform: int = 0
    unknown: list[tuple[PathKey, str, list[str]]] = field(default_factory=list)


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _check_keys(values: Mapping[str, Any], tree: _ChartTree) -> _KeyCheck:
    out = _KeyCheck()
    _check_level(values, (), tree.roots(), out)
    return out


def _check_level(user: Mapping[str, Any], path: PathKey, levels: list[_Level], out: _KeyCheck) -> None:
    """The rules of the module docstring, one level at a time."""
    for key, value in user.items():
        here = (*path, key)
        children: list[_Level] = []
        defined = free = in_values = False
        whole_reads = True
        for level in levels:
            if level.chart is not None:
                if key == "global":
                    defined = in_values = True
                    union = level.chart.globals()
                    children.append(union)
                    free = free or not (union.defaults or union.reads)
                    continue
                if key in level.chart.subcharts:
                    defined = in_values = True
                    children.extend(level.chart.subcharts[key].roots())
            if isinstance(level.defaults, dict) and key in level.defaults:
                defined = in_values = True
                default = level.defaults[key]
                if isinstance(default, dict) and default and not _passthrough(key) and not _data_map(default):
                    children.append(_Level(default, None, None))
                else:
                    free = True
            if isinstance(level.reads, dict) and key in level.reads:
                defined = True
                if level.reads[key]:
                    whole_reads = False
                    children.append(_Level(None, level.reads[key], None))
        if not defined:
            out.unknown.append((here, key, _candidates(levels)))
            continue
        # Read only as a whole by the templates and not described by values.yaml: free-form.
        free = free or (not in_values and whole_reads)
        out.checked += 1
        if free or not isinstance(value, dict):
            out.freeform += _count_keys(value)
            continue
        _check_level(value, here, children, out)


def _candidates(levels: list[_Level]) -> list[str]:
    names: set[str] = set()
    for level in levels:
        for source in (level.defaults, level.reads):
            if isinstance(source, dict):
                names.update(str(k) for k in source)
        if level.chart is not None:
            names.update(level.chart.subcharts)
            names.add("global")
    return sorted(names)


def _did_you_mean(key: str, candidates: list[str]) -> str:
    lowered = {c.lower(): c for c in candidates}
    if key.lower() in lowered:
        return lowered[key.lower()]
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else ""
