"""A chart's `kubeVersion` constraint (Helm's semver ranges) against the cluster's Kubernetes version."""

from __future__ import annotations

import re
from collections.abc import Sequence

# --------------------------------------------------------------------------------------------
# Kubernetes version constraints (Chart.yaml kubeVersion; Helm itself refuses to install on a mismatch)

_PINNED = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_VERSION = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def _parse_version(text: str) -> tuple[list[int | None], bool] | None:
    m = _VERSION.match(text.strip())
    if not m:
        return None
    parts: list[int | None] = [None if g is None or g in "xX*" else int(g) for g in m.group(1, 2, 3)]
    return parts, m.group(4) is not None


def _key(parts: Sequence[int | None], pre: bool) -> tuple[int, int, int, int]:
    return (parts[0] or 0, parts[1] or 0, parts[2] or 0, 0 if pre else 1)


def _matches_one(op: str, want: str, have: tuple[int, int, int, int]) -> bool:
    parsed = _parse_version(want)
    if parsed is None:
        raise ValueError(want)
    parts, pre = parsed
    exact = [p for p in parts if p is not None]
    low = _key(parts, pre)
    if op in ("", "=") and len(exact) < 3:
        op = "~" if len(exact) >= 2 else "^"
    if op in ("", "="):
        return have[:3] == low[:3]
    if op == "!=":
        return have[:3] != low[:3]
    if op == ">":
        return have > low if len(exact) == 3 else have[:len(exact)] > low[:len(exact)]
    if op == ">=":
        return have >= low
    if op == "<":
        return have < low
    if op in ("<=", "=<"):
        return have <= low if len(exact) == 3 else have[:len(exact)] <= low[:len(exact)]
    if op in ("~", "~>"):
        upper = (low[0], low[1] + 1, 0, 0) if len(exact) >= 2 else (low[0] + 1, 0, 0, 0)
        return low <= have < upper
    if op == "^":
        upper = (low[0] + 1, 0, 0, 0) if low[0] > 0 else (0, low[1] + 1, 0, 0)
        return low <= have < upper
    raise ValueError(op)


def kube_version_allows(constraint: str, version: str) -> bool:
    """True when Kubernetes `version` ('1.34' or '1.34.2') satisfies a Chart.yaml `kubeVersion`.

    Masterminds semver syntax as Helm reads it: `||` alternatives of space/comma-separated
    comparisons (`>=1.25.0-0`, `<1.35`, `~1.30`, `^1`, `1.2 - 1.4`, wildcards).
    """
    parsed = _parse_version(version)
    if parsed is None:
        raise ValueError(version)
    have = _key(parsed[0], False)
    for alternative in constraint.split("||"):
        text = re.sub(r"(\S+)\s+-\s+(\S+)", r">=\1 <=\2", alternative.strip())
        terms = [t for t in re.split(r"[\s,]+", re.sub(r"([<>=!~^]+)\s+", r"\1", text)) if t]
        if all(_matches_one(*_split_op(t), have) for t in terms):
            return True
    return False


def _split_op(term: str) -> tuple[str, str]:
    m = re.match(r"^(>=|<=|=<|!=|~>|[<>=~^])?(.*)$", term)
    return (m.group(1) or "", m.group(2)) if m else ("", term)
