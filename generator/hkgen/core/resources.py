"""Where hkgen's data lives: templates/, schemas/ and apps/, in the wheel or in a checkout.

In an installed wheel the data folders sit inside the package (`hkgen/data/<folder>`, mapped by
pyproject.toml); in a source checkout (editable install, tests) they are the repository's
top-level folders. Nothing else in hkgen knows about this difference.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "package_dir", "set_cache_dir"]

_CACHE: list[Path] = []


def set_cache_dir(folder: Path) -> None:
    """Where hkgen may keep caches (compiled templates); set by the CLI, unset in library use."""
    _CACHE[:] = [folder]


def cache_dir() -> Path | None:
    """The cache folder the CLI chose, or None (no caching)."""
    return _CACHE[0] if _CACHE else None

_FOLDERS = ("templates", "schemas", "apps")


def package_dir() -> Path:
    """The directory of the hkgen package."""
    return Path(__file__).resolve().parents[1]


@cache
def data_dir(folder: str) -> Path:
    """Absolute path of one of hkgen's data folders ('templates', 'schemas' or 'apps')."""
    if folder not in _FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}")
    bundled = package_dir() / "data" / folder
    if bundled.is_dir():
        return bundled
    # Source checkout: generator/hkgen/ -> repository root.
    checkout = package_dir().parents[1] / folder
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"hkgen data folder {folder!r} is missing from this installation")
