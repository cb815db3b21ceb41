"""The optional Helm SDK (helm-python-sdk), imported only when a chart is rendered."""

from __future__ import annotations

from typing import Any

from ...core.errors import ToolError


def helm_sdk() -> Any:
    """The `helm_python` module, or `ToolError` (exit 3) saying how to install the extra."""
    try:
        import helm_python
    except ImportError as err:
        raise ToolError("checking Helm charts needs the optional Helm SDK: pip install 'hkgen[charts]' "
                        f"(installs helm-python-sdk; import failed: {err})") from err
    return helm_python
