"""A wrong or missing age key: the error names the key file tried, every place looked in, and
that its public key is not among `secrets.ageRecipients`; exit 1 (the user's setup, not a tool
failure). Real sops and age keys."""

from __future__ import annotations

import os
from pathlib import Path

import pyrage


def _identity(path: Path) -> str:
    identity = pyrage.x25519.Identity.generate()
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return str(identity.to_public())


def test_a_wrong_key_names_the_file_and_the_recipient_mismatch(hkgen, home_copy: Path, secrets_for,
                                                                tmp_path: Path) -> None:
    right, _values = secrets_for(home_copy)
    wrong = tmp_path / "wrong.agekey"
    public = _identity(wrong)
    done = hkgen("secrets", "check", str(home_copy), "--age-key", str(wrong))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"key file {wrong}: public key {public}" in done.stderr
    assert f"the key found ({public}) is not one the file is encrypted to" in done.stderr
    assert "nor is it among secrets.ageRecipients" in done.stderr
    assert "AGE-SECRET-KEY" not in done.stderr  # never a private key
    ok = hkgen("secrets", "check", str(home_copy), "--age-key", str(right))
    assert ok.returncode == 0, ok.stderr


def test_no_key_anywhere_lists_the_places_searched(hkgen, home_copy: Path, secrets_for) -> None:
    secrets_for(home_copy)
    home = Path(os.environ["HOME"])
    done = hkgen("secrets", "check", str(home_copy))
    assert done.returncode == 1, done.stderr
    for place in ("SOPS_AGE_KEY_FILE: not set", "SOPS_AGE_KEY: not set",
                  f"hkgen's key of this cluster {home / '.config' / 'hkgen' / 'home.agekey'}: no such file",
                  f"sops' default {home / '.config' / 'sops' / 'age' / 'keys.txt'}: no such file"):
        assert place in done.stderr, done.stderr
    assert "hint: pass --age-key FILE" in done.stderr
