"""Changes between two rendered trees that the GitOps engine cannot apply by itself.

`render` compares the tree on disk with the new one, `publish` the commit the cluster follows with
the new one; each change found comes back as a located warning with the commands that carry it out.

- A StatefulSet's `volumeClaimTemplates` cannot be updated. A new size or backup class (storage
  class) of an app's volume makes the engine's apply of the apps layer fail until the old
  StatefulSet is deleted, and the existing claims keep their size and their Longhorn volume its
  recurring-job group either way: grow the claims, move the volume to its new job group, delete
  the StatefulSet without its pods so the engine recreates it.
- Longhorn's replica count is a StorageClass parameter, read when a volume is created: the classes
  are recreated with the new count, existing volumes keep theirs until they are patched.
- A StatefulSet with volumes that is no longer rendered leaves its claims (and data) behind: a
  rename starts on an empty volume.
- A Pi applies its seed only when it is flashed (the instance id never changes): new network
  settings of an existing node or satellite reach it only when it is reflashed, while the rest
  of the cluster already uses them.

Objects whose changes the engines can recreate safely (StorageClasses, gate Jobs) carry
`areas.parts.RECREATE_ANNOTATIONS` instead; a StatefulSet must not (Argo CD would delete its pods on every
change), hence the commands.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..areas.platform import LONGHORN_NS, STORAGE_CLASSES
from ..config.load import load_generated_all
from ..core.errors import Problem

__all__ = ["KINDS", "VolumeTemplate", "changes", "is_network_seed", "network_seed_changes", "statefulset_volumes",
           "volume_template_changes"]

_GROUP_LABEL = "recurring-job-group.longhorn.io/"
_VCT_LINE = re.compile(r"^( *)volumeClaimTemplates:", re.MULTILINE)
_REPLICAS_LINE = re.compile(r"^( *)numberOfReplicas:", re.MULTILINE)


# The objects compared here; a file without any of these lines need not be read.
KINDS = ("kind: StatefulSet", "kind: StorageClass")


def changes(before: Mapping[PurePosixPath, bytes], after: Mapping[PurePosixPath, bytes], label: str) -> list[Problem]:
    """Every change between the files `before` and `after` (paths relative to the cluster folder
    `label`) that needs commands run by hand once it is published, as located warnings.
    """
    objects_before = {rel: data for rel, data in before.items() if rel.suffix == ".yaml"}
    objects_after = {rel: data for rel, data in after.items() if rel.suffix == ".yaml"}
    return (volume_template_changes(objects_before, objects_after, label)
            + replica_changes(objects_before, objects_after, label) + network_seed_changes(before, after, label))


def is_network_seed(rel: PurePosixPath) -> bool:
    """Whether `rel` is the network-config seed of a node or satellite."""
    return len(rel.parts) == 3 and rel.parts[0] in ("nodes", "satellites") and rel.name == "network-config"


def network_seed_changes(before: Mapping[PurePosixPath, bytes], after: Mapping[PurePosixPath, bytes],
                         label: str) -> list[Problem]:
    """A warning per existing node or satellite whose network settings change."""
    problems = []
    for rel, data in sorted(after.items()):
        if is_network_seed(rel) and rel in before and before[rel] != data:
            host = rel.parts[1]
            problems.append(Problem(
                f"{label}/{rel}", 0, 0, "$",
                f"{host}'s network settings change (address, gateway, DNS or Wi-Fi); a Pi applies its seed "
                f"only when it is flashed, so {host} keeps its current ones while the rest of the cluster "
                "already uses the new",
                hint=f"reflash {host} with its new seed (`hkgen boot-media {label} --node {host}`), one Pi at a "
                     "time, as RECOVERY.md 'A node died: replace it' describes",
                severity="warning",
            ))
    return problems


@dataclass(frozen=True)
class VolumeTemplate:
    """One volume template of a rendered StatefulSet and where it is."""

    namespace: str
    statefulset: str
    replicas: int
    index: int  # position in spec.volumeClaimTemplates
    name: str
    size: str
    storage_class: str
    line: int  # of `volumeClaimTemplates:` in the file, 1-based
    col: int

    def claims(self) -> list[str]:
        """The claims the StatefulSet made from this template, one per replica."""
        return [f"{self.name}-{self.statefulset}-{i}" for i in range(self.replicas)]


def statefulset_volumes(text: bytes) -> dict[tuple[str, str, str], VolumeTemplate]:
    """The volume templates of every StatefulSet in a rendered YAML file, by (namespace, StatefulSet,
    template); empty for a file without StatefulSets (cheap: no parsing then).
    """
    found: dict[tuple[str, str, str], VolumeTemplate] = {}
    for doc, line, col in _documents(text, "StatefulSet", _VCT_LINE):
        # An old file may have been edited by hand: a document of another shape is skipped.
        with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
            spec: dict[str, Any] = doc.get("spec") or {}
            meta: dict[str, Any] = doc.get("metadata") or {}
            for index, template in enumerate(spec.get("volumeClaimTemplates") or ()):
                tspec = template.get("spec") or {}
                key = (str(meta.get("namespace", "")), str(meta.get("name", "")), str(template["metadata"]["name"]))
                found[key] = VolumeTemplate(
                    key[0], key[1], int(spec.get("replicas", 1)), index, key[2],
                    str(((tspec.get("resources") or {}).get("requests") or {}).get("storage", "")),
                    str(tspec.get("storageClassName", "")), line, col)
    return found


def volume_template_changes(before: Mapping[PurePosixPath, bytes], after: Mapping[PurePosixPath, bytes],
                            label: str) -> list[Problem]:
    """A warning per StatefulSet volume template whose size or storage class differs between the
    files `before` and `after` (paths relative to the cluster folder `label`).
    """
    old: dict[tuple[str, str, str], tuple[PurePosixPath, VolumeTemplate]] = {}
    for rel, data in before.items():
        old.update((key, (rel, vt)) for key, vt in statefulset_volumes(data).items())
    if not old:
        return []
    problems = []
    kept: set[tuple[str, str]] = set()
    for rel, data in sorted(after.items()):
        for key, new in statefulset_volumes(data).items():
            kept.add(key[:2])
            previous = old.get(key, (rel, None))[1]
            if previous is None or (previous.size, previous.storage_class) == (new.size, new.storage_class):
                continue
            problems.append(_problem(f"{label}/{rel}", previous, new))
    gone: dict[tuple[str, str], tuple[PurePosixPath, list[VolumeTemplate]]] = {}
    for (ns, sts, _), (rel, vt) in sorted(old.items()):
        if (ns, sts) not in kept:
            gone.setdefault((ns, sts), (rel, []))[1].append(vt)
    problems += [_removed(f"{label}/{rel}", templates) for rel, templates in gone.values()]
    return problems


def _removed(file: str, templates: list[VolumeTemplate]) -> Problem:
    """A StatefulSet with volumes is no longer rendered: say where its data stays."""
    first = templates[0]
    ns, claims = first.namespace, [c for t in templates for c in t.claims()]
    zigbee = (" (and a renamed Zigbee network needs its keys under the new name: new ones from `hkgen secrets "
              "add-missing` mean pairing every device again)") if first.statefulset.startswith("zigbee2mqtt-") else ""
    return Problem(
        file, first.line, first.col, "$.spec.volumeClaimTemplates",
        f"StatefulSet {ns}/{first.statefulset} is removed; its claims ({', '.join(claims)}) and their data stay, "
        "but nothing uses them any more",
        hint=f"if this is a rename, the new name starts on an empty volume{zigbee}: keep the old name to keep "
             f"the data. Once the data is no longer needed: kubectl -n {ns} delete pvc {' '.join(claims)}",
        severity="warning",
    )


def _problem(file: str, old: VolumeTemplate, new: VolumeTemplate) -> Problem:
    ns, sts = new.namespace, new.statefulset
    changes, commands = [], []
    if old.size != new.size:
        grows = _bytes(new.size) > _bytes(old.size)
        changes.append(f"size {old.size} -> {new.size}" + ("" if grows else " (a volume cannot shrink: "
                                                                           "the claims keep their size)"))
        if grows:
            patch = json.dumps({"spec": {"resources": {"requests": {"storage": new.size}}}}, separators=(",", ":"))
            commands += [f"kubectl -n {ns} patch pvc {claim} -p '{patch}'" for claim in new.claims()]
    if old.storage_class != new.storage_class:
        changes.append(f"storage class {old.storage_class} -> {new.storage_class}")
        groups = {name: group for group, name in STORAGE_CLASSES.items()}
        if old.storage_class in groups and new.storage_class in groups:
            move = (f"{_GROUP_LABEL}{groups[old.storage_class]}- {_GROUP_LABEL}{groups[new.storage_class]}=enabled")
            commands += [
                f"kubectl -n {LONGHORN_NS} label volumes.longhorn.io "
                f"\"$(kubectl -n {ns} get pvc {claim} -o jsonpath='{{.spec.volumeName}}')\" {move}"
                for claim in new.claims()
            ]
    commands.append(f"kubectl -n {ns} delete statefulset {sts} --cascade=orphan")
    return Problem(
        file, new.line, new.col, f"$.spec.volumeClaimTemplates[{new.index}]",
        f"StatefulSet {ns}/{sts}: volume {new.name!r} changes ({'; '.join(changes)}); Kubernetes cannot "
        "update a StatefulSet's volume templates, so applying the apps layer fails until the old "
        "StatefulSet is gone",
        hint="once this is published, run: " + " && ".join(commands) + " (the pods keep running; the "
             "GitOps engine then recreates the StatefulSet; see docs/operations.md, 'Change an app')",
        severity="warning",
    )


_UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _bytes(quantity: str) -> float:
    """A Kubernetes storage quantity ("10Gi", "500M") in bytes; unknown forms compare as 0."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity)
    if not match or match.group(2) not in _UNITS:
        return 0.0
    return float(match.group(1)) * _UNITS[match.group(2)]


def replica_changes(before: Mapping[PurePosixPath, bytes], after: Mapping[PurePosixPath, bytes],
                    label: str) -> list[Problem]:
    """One warning when the storage classes' replica count differs: existing volumes keep theirs."""
    old = {n: r for data in before.values() for n, (r, _, _) in _class_replicas(data).items()}
    if not old:
        return []
    for rel, data in sorted(after.items()):
        for name, (replicas, line, col) in _class_replicas(data).items():
            if name in old and old[name] != replicas:
                patch = json.dumps({"spec": {"numberOfReplicas": int(replicas)}}, separators=(",", ":"))
                return [Problem(
                    f"{label}/{rel}", line, col, "$.parameters.numberOfReplicas",
                    f"Longhorn replicas per volume change ({old[name]} -> {replicas}); the storage classes "
                    "are recreated with the new count, but existing volumes keep theirs",
                    hint="once this is published, give every existing volume the new count: kubectl -n "
                         f"{LONGHORN_NS} get volumes.longhorn.io -o name | xargs -I{{}} kubectl -n {LONGHORN_NS} "
                         f"patch {{}} --type merge -p '{patch}' (Longhorn adds or removes replicas online)",
                    severity="warning",
                )]
    return []


def _class_replicas(text: bytes) -> dict[str, tuple[str, int, int]]:
    """Longhorn StorageClasses of a rendered file: name -> (numberOfReplicas, line, col)."""
    found = {}
    for doc, line, col in _documents(text, "StorageClass", _REPLICAS_LINE):
        with contextlib.suppress(AttributeError, KeyError, TypeError):
            replicas = (doc.get("parameters") or {}).get("numberOfReplicas")
            if replicas is not None:
                found[str(doc["metadata"]["name"])] = (str(replicas), line, col)
    return found


def _documents(text: bytes, kind: str, anchor: re.Pattern[str]) -> Iterator[tuple[dict[str, Any], int, int]]:
    """The documents of `kind` in a rendered YAML file, each with the line and column of the first
    match of `anchor` in it (0, 0 without one). Files without that kind are not parsed.
    """
    if f"kind: {kind}".encode() not in text:
        return
    import yaml

    decoded = text.decode("utf-8", "replace")
    try:
        docs = load_generated_all(decoded)
    except yaml.YAMLError:
        return  # not hkgen's output (an old file edited by hand): nothing to compare
    # Document n starts after the n-th `---` line.
    starts = [0] + [m.end() for m in re.finditer(r"^---[ \t]*$", decoded, re.MULTILINE)]
    ends = [*starts[1:], len(decoded)]
    for doc, start, end in zip(docs, starts, ends, strict=False):
        if isinstance(doc, dict) and doc.get("kind") == kind:
            at = anchor.search(decoded, start, end)
            yield doc, (decoded.count("\n", 0, at.start()) + 1 if at else 0), (len(at.group(1)) + 1 if at else 0)
