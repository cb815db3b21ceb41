"""Day-2 changes `validate` can see coming, from what the last render and the secrets file left.

cluster.yaml alone cannot tell a rename from a removal plus an addition. The cluster folder can:
the manifest of the last render (`.hkgen-manifest.json`: one seed folder per Pi, one folder per
app, `flux/` or `argocd/`) and the key names of the SOPS file (readable without the private key).
Each finding is a warning located at the cluster.yaml entry that changed, with the procedure that
keeps the state — never a hint that destroys it:
- a Zigbee network renamed: its keys are still under the old name; copy them (new keys from
  `hkgen secrets add-missing` would mean pairing every device again) and keep the data claim;
- a node or a custom app renamed: to MicroK8s, Longhorn and the StatefulSet it is a new one;
- the GitOps engine switched: a migration, not an edit (docs/day2.md);
- a node added or removed while every seed lists every host in /etc/hosts: running Pis apply
  their seed only when flashed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path

from ..config.load import Document
from ..config.model import Cluster
from ..config.secrets import key_for
from ..core.errors import Problem

__all__ = ["day2_problems", "revise_secret_hints"]

MANIFEST = ".hkgen-manifest.json"
HOSTS_FILE_LIMIT = 64  # areas/seeds.py lists every host in /etc/hosts up to this many hosts
_ZIGBEE_KEY = re.compile(r"^(ZIGBEE_[A-Z0-9_]+)_NETWORK_KEY$")


def _rendered(cluster_dir: Path) -> set[str]:
    """Paths the last render wrote (from its manifest); empty without one."""
    try:
        files = json.loads((cluster_dir / MANIFEST).read_text("utf-8"))["files"]
        return {str(k) for k in files}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


_NAMESPACE = re.compile(r"^namespace:[ \t]*['\"]?([a-z0-9-]+)", re.MULTILINE)


def _custom_app_folder(folder: Path) -> bool:
    """Whether the last render wrote `folder` for a custom app: its kustomization puts everything in
    the custom apps' namespace (catalogue apps and hkgen's own components name theirs).
    """
    from ..config.catalogue import CUSTOM_NAMESPACE  # only a rendered tree needs the catalogue

    try:
        found = _NAMESPACE.search((folder / "kustomization.yaml").read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    return found is not None and found.group(1) == CUSTOM_NAMESPACE


_SECRET_KEY = re.compile(r"^[ \t]+([A-Za-z0-9_]+):[ \t]*ENC\[", re.MULTILINE)


def _secret_names(cluster: Cluster, cluster_dir: Path) -> set[str]:
    """The key names of the SOPS file (its encrypted values' keys, found in the text: validate stays
    fast; check_secrets_file parses and judges the file itself).
    """
    try:
        return set(_SECRET_KEY.findall((cluster_dir / cluster.secrets_file).read_text("utf-8", "replace")))
    except OSError:  # missing or unreadable: check_secrets_file reports it
        return set()


def zigbee_renames(cluster: Cluster, names: set[str]) -> dict[str, list[str]]:
    """New network name -> the orphaned key prefixes (ZIGBEE_<OLD>) it may have been renamed from."""
    current = {key_for("ZIGBEE", n.name) for n in cluster.zigbee}
    orphans = sorted({m.group(1) for k in names if (m := _ZIGBEE_KEY.match(k))} - current)
    keyless = [n.name for n in cluster.zigbee if f"{key_for('ZIGBEE', n.name)}_NETWORK_KEY" not in names]
    if not orphans or not keyless:
        return {}
    return dict.fromkeys(keyless, orphans)


def _copy_procedure(new: str, old_prefix: str, secrets_file: str) -> str:
    old = old_prefix.removeprefix("ZIGBEE_").lower().replace("_", "-")
    new_prefix = key_for("ZIGBEE", new)
    return (f"if '{old}' was renamed to '{new}', copy its keys, do not make new ones: `sops {secrets_file}` and add "
            f"{new_prefix}_NETWORK_KEY, {new_prefix}_PAN_ID and {new_prefix}_EXT_PAN_ID with the values of "
            f"{old_prefix}_NETWORK_KEY, {old_prefix}_PAN_ID and {old_prefix}_EXT_PAN_ID; keep the claim "
            f"data-zigbee2mqtt-{old}-0 (zigbee2mqtt's device database): copy its files to "
            f"data-zigbee2mqtt-{new}-0 before the new instance starts, or keep the name '{old}'. "
            "`hkgen secrets add-missing` would make new keys: every device would have to be paired again")


def revise_secret_hints(problems: Sequence[Problem], cluster: Cluster, cluster_dir: Path,
                        secrets_file: str) -> list[Problem]:
    """The secrets file's problems, with a renamed network's "missing key" hint made safe."""
    renames = zigbee_renames(cluster, _secret_names(cluster, cluster_dir))
    out = []
    for problem in problems:
        for new, olds in renames.items():
            if problem.message.startswith(f"missing secret {key_for('ZIGBEE', new)}_"):
                problem = dataclasses.replace(problem, hint=_copy_procedure(new, olds[0], secrets_file)
                                              + ("" if len(olds) == 1 else f" (orphaned keys: {', '.join(olds)})"))
        out.append(problem)
    return out


def day2_problems(cluster: Cluster, cluster_dir: Path, doc: Document) -> list[Problem]:
    """Warnings about renames, an engine switch and seed-wide changes (see the module docstring)."""
    rendered = _rendered(cluster_dir)
    problems: list[Problem] = []
    secrets_file = str(Path(doc.file).parent / cluster.secrets_file)
    for new, olds in zigbee_renames(cluster, _secret_names(cluster, cluster_dir)).items():
        net = next(n for n in cluster.zigbee if n.name == new)
        problems.append(doc.problem(
            ("zigbee", "networks", net.index, "name"),
            f"Zigbee network '{new}' has no keys in {secrets_file}, which still holds the keys of a network "
            f"that is gone ({', '.join(o + '_*' for o in olds)})",
            _copy_procedure(new, olds[0], secrets_file), severity="warning"))
    if not rendered:
        return problems
    seeds = {p.split("/")[1] for p in rendered if p.startswith("nodes/") and p.count("/") >= 2}
    hosts = [n.hostname for n in cluster.nodes]
    gone = sorted(seeds - set(hosts))
    added = [n for n in cluster.nodes if n.hostname not in seeds]
    if gone and added:
        for node in added:
            problems.append(doc.problem(
                ("nodes", node.index, "hostname"),
                f"node '{node.hostname}' is new and the last render had a node that is gone ({', '.join(gone)}): "
                "a renamed Pi is a new node to MicroK8s and Longhorn",
                f"to rename a Pi: drain it and remove the old node (`microk8s remove-node {gone[0]}` on a control "
                "plane), let Longhorn rebuild its replicas, then flash it with the new seed "
                f"(`hkgen boot-media {Path(doc.file).parent} --node {node.hostname}`); keeping the name avoids all "
                "of it", severity="warning"))
    elif (added or gone) and seeds and len(cluster.nodes) + len(cluster.satellites) <= HOSTS_FILE_LIMIT:
        where = ("nodes", added[0].index, "hostname") if added else ("nodes",)
        problems.append(doc.problem(
            where,
            f"{'adding ' + ', '.join(n.hostname for n in added) if added else 'removing ' + ', '.join(gone)} "
            "changes every Pi's seed (/etc/hosts lists every host), but running Pis apply their seed only when "
            "flashed: their /etc/hosts keeps the old list",
            "nothing breaks (hosts reach each other by address and DNS), but until a Pi is reflashed its "
            "/etc/hosts misses the new host (or keeps the removed one); reflash them one at a time when "
            "convenient, or add the name to your router's DNS", severity="warning"))
    apps = {p.split("/")[1] for p in rendered if p.startswith("apps/") and p.count("/") >= 2}
    custom = {a.name: a for a in cluster.custom_apps}
    # Read the last render's app folders only when a new custom app keeps data (all they can change).
    new_with_data = any(app.name not in apps and app.storage_gib for app in cluster.custom_apps)
    orphan_apps = sorted(a for a in apps - set(custom)
                         if new_with_data and _custom_app_folder(cluster_dir / "apps" / a))
    for i, app in enumerate(cluster.custom_apps):
        if app.name not in apps and orphan_apps and app.storage_gib:
            problems.append(doc.problem(
                ("customApps", i, "name"),
                f"custom app '{app.name}' is new and the last render had an app that is gone "
                f"({', '.join(orphan_apps)}): if this is a rename, '{app.name}' starts on an empty volume",
                f"keep the claim: its data stays on the claims of '{orphan_apps[0]}' (`kubectl get pvc -A | grep "
                f"{orphan_apps[0]}`); copy it to the new app's claim before using it, or keep the name",
                severity="warning"))
    engines = {"flux", "argocd"}
    previous = {p.split("/")[0] for p in rendered} & engines
    if previous and cluster.engine not in previous:
        old = sorted(previous)[0]
        problems.append(doc.problem(
            ("gitops", "engine"),
            f"the GitOps engine changes from {old} to {cluster.engine}: render removes {old}/ and writes "
            f"{cluster.engine}/, but the running {old} keeps managing (and may prune) what it applied",
            "this is a migration, not an edit: follow docs/day2.md 'Switch the GitOps engine' (suspend "
            f"{old} without deleting its objects, bootstrap {cluster.engine} from the new tree, then remove "
            f"{old}'s controllers)", severity="warning"))
    return problems
