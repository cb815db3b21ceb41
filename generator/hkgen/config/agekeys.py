"""Why sops could not decrypt a cluster's secrets, in the user's terms (never sops' raw text only).

sops says "no master key was able to decrypt the file". What the user needs: which key file was
tried, every place hkgen and sops looked (in their order), and whether the key that was found is
one the file is encrypted to: its public key must be among the file's recipients, which
`secrets.ageRecipients` in cluster.yaml lists. That is a user mistake (exit 1), not a tool failure.
Only public keys are ever shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import HkgenError

__all__ = ["KEY_FAILURE_MARKERS", "AgeKeyError", "default_key_file", "explain", "sops_age_recipients"]


def sops_age_recipients(data: Any) -> list[str] | None:
    """The age recipients in a SOPS file's metadata (public keys, in file order); None without any."""
    sops = data.get("sops") if isinstance(data, dict) else None
    entries = sops.get("age") if isinstance(sops, dict) else None
    if not isinstance(entries, list):
        return None
    return [str(e.get("recipient")) for e in entries if isinstance(e, dict)]


def default_key_file(cluster_name: str, env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/hkgen/<cluster>.agekey` (default `~/.config/hkgen/<cluster>.agekey`): where
    `hkgen init` keeps a cluster's private age key, and where every command that decrypts looks.
    """
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "hkgen" / f"{cluster_name}.agekey"

# sops' words when no key could open the data key (as opposed to a broken file or a crash).
KEY_FAILURE_MARKERS = ("no master key was able to decrypt", "failed to get the data key", "no identity matched")


class AgeKeyError(HkgenError):
    """No age key that can open the secrets file was found: the user's setup, exit 1."""

    exit_code = 1


@dataclass(frozen=True)
class Place:
    """One place a key may come from, and what it held."""

    label: str
    found: str  # "not set", "no such file", or the public keys it holds


def _public_keys(text: str) -> list[str]:
    import pyrage

    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                keys.append(str(pyrage.x25519.Identity.from_str(line).to_public()))
            except Exception:  # pyrage raises its own types; an unreadable line is reported, not fatal
                keys.append("(an unreadable AGE-SECRET-KEY line)")
    return keys


def _file_place(label: str, path: Path, publics: list[str]) -> Place:
    if not path.is_file():
        return Place(f"{label} {path}", "no such file")
    try:
        found = _public_keys(path.read_text("utf-8", "replace"))
    except OSError as err:
        return Place(f"{label} {path}", f"unreadable ({err.strerror})")
    publics.extend(found)
    return Place(f"{label} {path}", ("public key " + ", ".join(found)) if found else "holds no age key")


def _places(key_file: Path | None, cluster_name: str, env: Mapping[str, str]) -> tuple[list[Place], list[str]]:
    places: list[Place] = []
    publics: list[str] = []
    if key_file is not None:
        places.append(_file_place("key file", key_file, publics))
        return places, publics  # hkgen passes exactly this file to sops
    value = env.get("SOPS_AGE_KEY_FILE")
    if value:
        places.append(_file_place("SOPS_AGE_KEY_FILE", Path(value), publics))
    else:
        places.append(Place("SOPS_AGE_KEY_FILE", "not set"))
    inline = env.get("SOPS_AGE_KEY")
    if inline:
        found = _public_keys(inline)
        publics.extend(found)
        places.append(Place("SOPS_AGE_KEY", ("public key " + ", ".join(found)) if found else "holds no age key"))
    else:
        places.append(Place("SOPS_AGE_KEY", "not set"))
    places.append(_file_place("hkgen's key of this cluster", default_key_file(cluster_name, env), publics))
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    places.append(_file_place("sops' default", Path(base) / "sops" / "age" / "keys.txt", publics))
    return places, publics


def _cluster_recipients(secrets_file: Path) -> tuple[str, list[str]]:
    """(cluster name, secrets.ageRecipients) read from the cluster.yaml beside the secrets file."""
    from .load import load_file

    try:
        data = load_file(secrets_file.parent / "cluster.yaml").data
        name = str(data["cluster"]["name"])
        recipients = [str(r) for r in data["secrets"]["ageRecipients"]]
    except (HkgenError, KeyError, TypeError):  # an invalid cluster file: explain with what is known
        return secrets_file.parent.name, []
    return name, recipients


def explain(secrets_file: Path, key_file: Path | None, sops_message: str,
            env: Mapping[str, str] | None = None) -> AgeKeyError:
    """The error to raise when sops could not decrypt `secrets_file` for want of a matching key."""
    from .load import load_file

    env = os.environ if env is None else env
    name, wanted = _cluster_recipients(secrets_file)
    places, publics = _places(key_file, name, env)
    try:
        encrypted_to = sops_age_recipients(load_file(secrets_file).data) or []
    except HkgenError:  # the file's metadata is unreadable: the recipients show as unknown
        encrypted_to = []
    lines = [f"cannot decrypt {secrets_file}: no age key that can open it was found"]
    lines += ["  looked in:"] + [f"    {p.label}: {p.found}" for p in places]
    if publics:
        strangers = [k for k in publics if k not in encrypted_to]
        if strangers and len(strangers) == len(publics):
            lines.append(f"  the key found ({', '.join(strangers)}) is not one the file is encrypted to "
                         f"({', '.join(encrypted_to) or 'unknown'})")
            if not set(strangers) & set(wanted):
                lines.append(f"  nor is it among secrets.ageRecipients in {secrets_file.parent / 'cluster.yaml'} "
                             f"({', '.join(wanted) or 'none listed'})")
    lines.append("  hint: pass --age-key FILE (or set SOPS_AGE_KEY_FILE) with the private key whose public key is "
                 f"one of {', '.join(encrypted_to) or 'the file’s recipients'}; for a new key, add its public key "
                 "to secrets.ageRecipients and run `hkgen secrets rekey` with a key that opens the file today")
    lines.append(f"  sops said: {' '.join(sops_message.split())[:300]}")
    return AgeKeyError("\n".join(lines))
