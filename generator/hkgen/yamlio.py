"""The one ruamel.yaml factory hkgen writes YAML with, and inline scalar quoting for templates.

Rendered files are read by YAML 1.2 readers (kustomize, Flux, Argo CD) and by YAML 1.1 readers
(cloud-init uses PyYAML). A string whose plain form means something else in either version
(`on`, `no`, `1:20`, `0o17`, `~`) is quoted, and characters that YAML readers fold or reject
(C0/C1 controls, U+0085, U+2028/2029, BOM) are escaped in double quotes, so every string
reloads as exactly the string that was meant; floats are written in the form both versions read
as floats (`1.0e-05`, `.inf`). No global ruamel state is touched.
"""

from __future__ import annotations

import io
import math
import re
from functools import lru_cache
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver

__all__ = ["dump", "dump_all", "make_yaml", "needs_quotes", "scalar"]

_STR_TAG = "tag:yaml.org,2002:str"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_SURROGATE = re.compile("[\ud800-\udfff]")
_RESOLVER_11 = VersionedResolver(version=(1, 1))
_RESOLVER_12 = VersionedResolver(version=(1, 2))
# Characters a YAML reader folds, rejects or treats as a line break: escape them.
# Bidirectional controls are escaped too: raw, they make a file read differently than it is.
_NEEDS_ESCAPE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff\ufffe\uffff]"
)
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9 _./@%+=()-]*$")


@lru_cache(maxsize=65536)
def needs_quotes(text: str) -> bool:
    """True when the plain form of `text` would not read back as that string in YAML 1.1 or 1.2."""
    for resolver in (_RESOLVER_11, _RESOLVER_12):
        if resolver.resolve(ScalarNode, text, (True, False)) != _STR_TAG:
            return True
    return False


def _style_for(text: str) -> str | None:
    if _NEEDS_ESCAPE.search(text):
        return '"'
    if "\n" in text:
        return "|"
    if text == "" or needs_quotes(text):
        return "'"
    return None


class _Representer(RoundTripRepresenter):
    """Round-trip representer whose strings and floats read the same in YAML 1.1 and 1.2."""

    def represent_str(self, data: str) -> Any:
        _refuse_surrogates(data)
        return self.represent_scalar(_STR_TAG, data, style=_style_for(data))

    def represent_float(self, data: float) -> Any:
        return self.represent_scalar(_FLOAT_TAG, _float(data))


_Representer.add_representer(str, _Representer.represent_str)
_Representer.add_representer(float, _Representer.represent_float)


def _refuse_surrogates(text: str) -> None:
    # A lone surrogate is not text: no UTF-8 file can hold it and libyaml rejects its escape.
    # The loader refuses them in input, so one here is a bug in the caller.
    if _SURROGATE.search(text):
        raise ValueError("a string with an unpaired surrogate cannot be written as YAML")


def make_yaml() -> YAML:
    """The YAML instance for every file hkgen writes: 2-space maps, indented lists, no wrapping."""
    yaml = YAML(typ="rt", pure=True)
    yaml.Representer = _Representer
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.explicit_start = False
    return yaml


def dump(data: Any) -> str:
    """Serialise one document."""
    buf = io.StringIO()
    make_yaml().dump(data, buf)
    return buf.getvalue()


def dump_all(documents: list[Any]) -> str:
    """Serialise several documents separated by `---`."""
    return "---\n".join(dump(d) for d in documents)


def _escape_double(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif _NEEDS_ESCAPE.match(ch) or ch == "\r":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _float(value: float) -> str:
    """Return a float in the form both readers take as that float.

    YAML 1.1 wants a '.' and a signed exponent (`1e-05` is a string there), and neither version
    reads Python's `inf`/`nan`.
    """
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa


def scalar(value: Any) -> str:
    """One value as an inline (flow) YAML scalar, for use inside templates.

    Plain where that is unambiguous, single-quoted where the plain form would resolve to another
    type in YAML 1.1 or 1.2, double-quoted with escapes where the text holds line breaks or
    control characters.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        return _float(value)
    if not isinstance(value, str):
        raise TypeError(f"scalar() takes a str, number, bool or None, not {type(value).__name__}")
    _refuse_surrogates(value)
    if _NEEDS_ESCAPE.search(value) or "\n" in value or "\t" in value or "\r" in value:
        return _escape_double(value)
    if _PLAIN_SAFE.match(value) and not value.endswith(" ") and not needs_quotes(value):
        return value
    return "'" + value.replace("'", "''") + "'"
