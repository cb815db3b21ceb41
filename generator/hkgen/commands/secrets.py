"""`hkgen secrets init|check|add-missing|rekey PATH`: the cluster's encrypted secret values, never printed.

Values a user must bring (S3 and Wi-Fi credentials, custom apps' keys) come from
`HKGEN_SECRET_<KEY>` environment variables or a hidden prompt; any key can be given that way (to
keep an existing Zigbee network key, say). Without one, the key gets a placeholder that
`secrets check` reports until it is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import age_key_file, cluster_paths, err, out

if TYPE_CHECKING:
    from ..config.model import Cluster
    from ..config.secrets import SecretKey
    from ..ops.scaffold import SecretsChange

NAME = "secrets"
HELP = "create, check or complete the cluster's SOPS-encrypted secrets (values are never printed)"
ENV_PREFIX = "HKGEN_SECRET_"
REKEY_DETAIL = (
    "Edit secrets.ageRecipients in cluster.yaml first; --age-key must be a key that can read the file now. "
    "Values stay the same: a removed key cannot read what is written from now on, but could read the old "
    "file in Git history, so change the values that matter too."
)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen secrets`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("init", "generate every secret the cluster needs into a new encrypted file"),
                       ("check", "decrypt and report missing, unset or malformed secrets (exit 1 if any)"),
                       ("add-missing", "add the secrets the cluster now needs, keeping every existing value"),
                       ("rekey", "re-encrypt the secrets for exactly the age recipients in cluster.yaml, with a new "
                                 "data key (after adding or removing an admin's key)")):
        detail = REKEY_DETAIL if name == "rekey" else __doc__.split("\n\n", 1)[1].strip()
        sub = actions.add_parser(name, help=text, description=text + ". " + detail)
        sub.add_argument("path", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
        sub.add_argument("--age-key", metavar="FILE",
                         help="age private key (default: $SOPS_AGE_KEY_FILE, ~/.config/hkgen/<cluster>.agekey, "
                              "then sops' own default)")
        if name in ("init", "add-missing"):
            sub.add_argument("--no-input", action="store_true", help="never prompt; unset values get placeholders")


def _supplier(interactive: bool) -> Callable[[SecretKey, bool], str | None]:
    """Value of a key from HKGEN_SECRET_<KEY>, else (for keys only the user knows) a hidden prompt."""
    import getpass

    def supply(key: SecretKey, must: bool) -> str | None:
        value = os.environ.get(ENV_PREFIX + key.name)
        if value is not None:
            return value
        if must and interactive:
            answer = getpass.getpass(f"{key.name} ({key.description}; empty to leave unset): ")
            return answer or None
        return None

    return supply


def _key_file(args: argparse.Namespace, cluster: Cluster) -> Path | None:
    return age_key_file(args.age_key, cluster.name)


def _deploy_hint(change: SecretsChange, cluster: Cluster) -> None:
    if change.deploy_public:
        from ..ops.deploykey import register_hint

        err(f"hkgen: {register_hint(cluster)}")


def _report(change: SecretsChange, label: str) -> None:
    ignored = sorted(k for k in change.kept if ENV_PREFIX + k in os.environ)
    if ignored:
        err(f"hkgen: note: ignored {', '.join(ENV_PREFIX + k for k in ignored)}: those keys already have values, "
            "which hkgen never replaces (edit them with sops)")
    for word, names in (("generated", change.generated), ("set from your input", change.supplied),
                        ("kept", change.kept)):
        if names:
            out(f"{word}: {', '.join(names)}")
    if change.deploy_public:
        out(f"deploy key (public half): {change.deploy_public}")
    if change.placeholders:
        out(f"not set yet (placeholder): {', '.join(change.placeholders)}")
        err(f"{label}: set them with `{ENV_PREFIX}<KEY>=... hkgen secrets add-missing {label}` "
            "or by editing the file with sops")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action on one cluster."""
    from ..ops.scaffold import add_missing_secrets, create_secrets_file, load_cluster

    (path,) = cluster_paths([args.path])
    cluster, folder = load_cluster(path)
    secrets_file = folder / cluster.secrets_file
    label = str(path.parent)
    interactive = not getattr(args, "no_input", True) and sys.stdin.isatty()
    if args.action == "init":
        change = create_secrets_file(cluster, secrets_file, _supplier(interactive))
        _report(change, label)
        _deploy_hint(change, cluster)
        err(f"{secrets_file}: created, encrypted to {len(cluster.age_recipients)} age recipient(s)")
        return 0
    if args.action == "add-missing":
        change = add_missing_secrets(cluster, secrets_file, _supplier(interactive), key_file=_key_file(args, cluster))
        _report(change, label)
        _deploy_hint(change, cluster)
        err(f"{secrets_file}: " + (f"{len(change.written)} key(s) written, the others kept" if change.written
                                   else "nothing to add"))
        return 0
    if args.action == "rekey":
        return _rekey(cluster, secrets_file, args)
    return _check(cluster, path, secrets_file, args)


def _rekey(cluster: Cluster, secrets_file: Path, args: argparse.Namespace) -> int:
    from ..ops.scaffold import rekey_secrets

    change = rekey_secrets(cluster, secrets_file, key_file=_key_file(args, cluster))
    if not change.added and not change.removed:
        err(f"{secrets_file}: already encrypted for exactly the {len(cluster.age_recipients)} recipient(s) in "
            "cluster.yaml; nothing changed")
        return 0
    for word, keys in (("added", change.added), ("removed", change.removed)):
        for key in keys:
            out(f"{word}: {key}")
    err(f"{secrets_file}: re-encrypted for {len(cluster.age_recipients)} recipient(s) with a new data key")
    if change.removed:
        err("hkgen: note: the removed keys can still read the old file in Git history: change the secrets that "
            "matter (sops edit), and make sure the cluster's sops-age Secret holds a key that is still listed")
    return 0


def _check(cluster: Cluster, path: Path, secrets_file: Path, args: argparse.Namespace) -> int:
    from ..config.load import load_file
    from ..config.secrets import check_secrets_file, decrypt, required_keys
    from ..ops.scaffold import audit_secrets
    from ..pipeline import cluster_file_for, display_name

    file = cluster_file_for(path)
    static = check_secrets_file(cluster, file.parent, load_file(file, display_name(file)))
    if not secrets_file.is_file():
        for problem in static:
            out(problem.format())
        return 1
    audit = audit_secrets(cluster, decrypt(secrets_file, age_key_file=_key_file(args, cluster)))
    audit.file_problems = [p.format() for p in static if p.severity == "error" and "missing secret" not in p.message]
    for line in [*audit.file_problems, *audit.missing, *audit.placeholders, *audit.malformed, *audit.duplicates]:
        out(line)
    for name in audit.unused:
        out(f"{name}: not used by this cluster any more (harmless; remove it with sops if you like)")
    if audit.ok:
        err(f"{secrets_file}: all {len(required_keys(cluster))} required secrets are set and well-formed")
        return 0
    err(f"{secrets_file}: secrets are incomplete; `hkgen secrets add-missing {path.parent}` adds missing keys")
    return 1
