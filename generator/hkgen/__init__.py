"""hkgen: one validated cluster.yaml -> a Flux/Argo CD tree and per-Pi cloud-init seeds.

The public API is deliberately small; the CLI (`hkgen`) is the main interface.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
