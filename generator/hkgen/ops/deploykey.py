"""The Git deploy key of a cluster whose repository is reached over SSH.

`hkgen secrets init` / `add-missing` generate an ed25519 pair with ssh-keygen: the private half
becomes the secret `GIT_DEPLOY_KEY` in the cluster's SOPS file (never anywhere else in Git); the
public half is printed with where to register it (read-only deploy key of the repository).
`hkgen boot-media` writes the private half onto control planes' boot media only, where the GitOps
bootstrapper turns it into the engine's Git credentials (areas/bootstrap.py). HTTPS repositories
are public and need no key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..config.model import Cluster
from ..core.errors import ToolError
from ..core.proc import find, run

__all__ = ["generate_deploy_key", "public_key", "register_hint"]


def _ssh_keygen() -> str:
    found = find("ssh-keygen")
    if not found:
        raise ToolError("ssh-keygen is not installed (package openssh-client); it makes the Git deploy key")
    return found


def generate_deploy_key(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair (OpenSSH private key text, public key line)."""
    with tempfile.TemporaryDirectory(prefix="hkgen-deploy-key-") as tmp:
        key = Path(tmp) / "id_ed25519"
        done = run([_ssh_keygen(), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], timeout=30)
        if done.returncode != 0:
            raise ToolError(f"ssh-keygen could not make the deploy key: {done.tail(3)}")
        return key.read_text("utf-8"), key.with_suffix(".pub").read_text("utf-8").strip()


def public_key(private: str) -> str:
    """The public key line of an OpenSSH private key."""
    with tempfile.TemporaryDirectory(prefix="hkgen-deploy-key-") as tmp:
        key = Path(tmp) / "key"
        key.write_text(private, "utf-8")
        key.chmod(0o600)
        done = run([_ssh_keygen(), "-y", "-f", str(key)], timeout=30)
        if done.returncode != 0:
            raise ToolError("GIT_DEPLOY_KEY is not an OpenSSH private key without a passphrase")
        return done.stdout.strip()


def register_hint(cluster: Cluster) -> str:
    """Where the public half goes."""
    from urllib.parse import urlsplit

    host = urlsplit(cluster.repo_url).hostname or "your Git host"
    return (f"register it as a read-only deploy key of {cluster.repo_url} on {host} "
            "(GitHub: repository Settings > Deploy keys > Add deploy key; GitLab: Settings > Repository > "
            "Deploy keys); the control planes' GitOps engine reads the repository with it")
