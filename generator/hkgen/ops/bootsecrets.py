"""What only a control plane's boot media carry: the age key and the Git deploy key.

The GitOps bootstrapper (areas/bootstrap.py) turns them into the engine's Secrets `sops-age` and
Git credentials. They are separate files under `hkgen/` on the boot partition, not part of
user-data: cloud-init never deletes user-data from the card, while the bootstrapper moves these
two into a root-only folder on the root filesystem at first boot and deletes them from the FAT
partition (no file modes there: every local user can read it). Workers and satellites get neither.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..areas.bootstrap import BOOT_SECRET_FILES, BOOT_SECRETS_DIR, repo_is_ssh
from ..config.model import Cluster, Node, Satellite
from ..config.secrets import DEPLOY_KEY
from ..core.errors import UsageError

__all__ = ["age_identities", "control_plane_secrets"]


def _identity_sources(age_key: Path | None) -> list[tuple[str, str]]:
    """(where, text) of every age identity source sops itself would read, `--age-key` first."""
    sources: list[tuple[str, str]] = []
    files = [age_key] if age_key else []
    if os.environ.get("SOPS_AGE_KEY_FILE"):
        files.append(Path(os.environ["SOPS_AGE_KEY_FILE"]))
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    files.append(config / "sops" / "age" / "keys.txt")
    for file in files:
        if file.is_file():
            sources.append((str(file), file.read_text("utf-8")))
    if os.environ.get("SOPS_AGE_KEY"):
        sources.append(("SOPS_AGE_KEY", os.environ["SOPS_AGE_KEY"]))
    return sources


def age_identities(cluster: Cluster, age_key: Path | None) -> str:
    """The age identities (private keys) of the cluster's `secrets.ageRecipients` that are at hand."""
    import pyrage

    found: dict[str, str] = {}
    for _where, text in _identity_sources(age_key):
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("AGE-SECRET-KEY-"):
                continue
            try:
                public = str(pyrage.x25519.Identity.from_str(line).to_public())
            except pyrage.IdentityError:
                continue
            if public in cluster.age_recipients:
                found.setdefault(public, line)
    if not found:
        raise UsageError("no age identity of secrets.ageRecipients found (--age-key, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY "
                         "or ~/.config/sops/age/keys.txt): a control plane's boot media carry the cluster's age key, "
                         "so its GitOps engine can decrypt the secrets")
    return "".join(f"{line}\n" for line in found.values())


def control_plane_secrets(cluster: Cluster, host: Node | Satellite, decrypted: dict[str, str],
                          age_key: Path | None) -> tuple[dict[PurePosixPath, str], list[str]]:
    """Files (relative to the boot partition) only a control plane gets, and notes for the user."""
    if not isinstance(host, Node) or not host.is_control_plane:
        return {}, []
    base = PurePosixPath(BOOT_SECRETS_DIR)
    files = {base / BOOT_SECRET_FILES["age"]: age_identities(cluster, age_key)}
    notes: list[str] = []
    if repo_is_ssh(cluster):
        key = decrypted.get(DEPLOY_KEY)
        if key:
            files[base / BOOT_SECRET_FILES["deploy"]] = key if key.endswith("\n") else key + "\n"
        else:
            notes.append(f"no {DEPLOY_KEY} in {cluster.secrets_file}: this control plane cannot install the GitOps "
                         "engine from the SSH repository; run `hkgen secrets add-missing`, register the public half "
                         "it prints, and write this card again")
    return files, notes
