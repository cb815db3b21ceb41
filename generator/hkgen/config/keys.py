"""The vocabulary of the secrets contract, shared by every module that names a secret: one key
(`SecretKey`), how a key's name is made from parts (`key_for`) and how a rendered file refers to
a value (`placeholder`). `secrets.py` says which keys a cluster needs; `mqtt.py` and `tls.py`
contribute theirs with these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SecretKey", "key_for", "placeholder"]


@dataclass(frozen=True)
class SecretKey:
    """One secret value a cluster needs."""

    name: str
    description: str
    # Expected form of the decrypted value (checked by boot-media and `hkgen secrets check`).
    pattern: str = r"^.{8,}$"


def key_for(*parts: str) -> str:
    """Secret key name from parts: upper case, anything but A-Z0-9 as '_' ('node-red' -> 'NODE_RED')."""
    return "_".join(re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts)


def placeholder(key: str) -> str:
    """How a rendered file refers to a secret value (substituted in the cluster, never by hkgen)."""
    return "${" + key + "}"
