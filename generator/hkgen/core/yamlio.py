"""The one ruamel.yaml factory hkgen writes YAML with, and inline scalar quoting for templates.

Rendered files are read by YAML 1.2 readers (kustomize, Flux, Argo CD) and by YAML 1.1 readers
(cloud-init uses PyYAML). A string whose plain form means something else in either version
(`on`, `no`, `1:20`, `0o17`, `~`) is quoted, and characters that YAML readers fold or reject
(C0/C1 controls, U+0085, U+2028/2029, BOM) are escaped in double quotes, so every string
reloads as exactly the string that was meant; floats are written in the form both versions read
as floats (`1.0e-05`, `.inf`). No global ruamel state is touched. Plain data with simple strings
takes a fast writer that writes the same bytes as ruamel (a property test holds them equal).
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
    fast = _fast_dump(data)
    if fast is not None:
        return fast
    buf = io.StringIO()
    make_yaml().dump(data, buf)
    return buf.getvalue()


# --- a fast writer for plain data, byte-identical to the ruamel writer above -----------------------
#
# ruamel's pure-Python emitter costs about 1 ms for a 20-line block; a 1,000-node render writes
# two such blocks per node. Plain data (exact dict/list/str/int/float/bool/None, as the templates'
# `to_yaml` filter passes) whose strings are short single-line ASCII is written here instead,
# following ruamel's layout and its scalar analysis for hkgen's settings (tests compare the two
# on generated data). Anything else (a string needing escapes, a literal block or double quotes,
# comments-carrying round-trip types, a top-level scalar) returns None: ruamel writes it.

_FAST_STR_MAX = 100  # ruamel writes keys of 128+ characters as complex keys and wraps at `width`
# Values may be longer (alert rules' expressions and descriptions): ruamel only folds a line past
# `width` (4096), which `_fast_dump` makes sure no line reaches.
_FAST_VALUE_MAX = 1000
_FAST_LINE_MAX = 4000
_FAST_TEXT = re.compile(r"[\x20-\x7e]*")
_INDICATOR_FIRST = frozenset("#,[]{}&*!|>'\"%@`")


class _Unsupported(Exception):
    """A value the fast writer leaves to ruamel."""


def _fast_dump(data: Any) -> str | None:
    kind = type(data)
    if kind is not dict and kind is not list:
        return None
    lines: list[str] = []
    try:
        if kind is dict:
            _fast_mapping(data, 0, lines) if data else lines.append("{}")
        else:
            _fast_sequence(data, 2, lines) if data else lines.append("[]")
    except _Unsupported:
        return None
    if any(len(line) > _FAST_LINE_MAX for line in lines):
        return None
    return "\n".join(lines) + "\n"


def _fast_mapping(data: dict[Any, Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key, value in data.items():
        if type(key) is not str:
            raise _Unsupported
        head = f"{pad}{_fast_str(key)}:"
        kind = type(value)
        if kind is dict and value:
            lines.append(head)
            _fast_mapping(value, indent + 2, lines)
        elif kind is list and value:
            lines.append(head)
            _fast_sequence(value, indent + 2, lines)
        else:
            text = _fast_scalar(value)
            lines.append(f"{head} {text}" if text else head)


def _fast_sequence(data: list[Any], indent: int, lines: list[str]) -> None:
    # ruamel's sequence indent 4 with the dash at offset 2: a nested block starts on the dash's
    # line, a mapping two columns and a sequence four columns right of the dash.
    dash = " " * indent + "- "
    for item in data:
        kind = type(item)
        if (kind is dict or kind is list) and item:
            start = len(lines)
            inner = indent + (2 if kind is dict else 4)
            if kind is dict:
                _fast_mapping(item, inner, lines)
            else:
                _fast_sequence(item, inner, lines)
            lines[start] = dash + " " * (inner - indent - 2) + lines[start][inner:]
        else:
            lines.append(dash + _fast_scalar(item))


def _fast_scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _fast_str(value, _FAST_VALUE_MAX)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return repr(value)
    if kind is float:
        return _float(value)
    if value is None:
        return ""
    if kind is dict:
        return "{}"
    if kind is list:
        return "[]"
    raise _Unsupported


@lru_cache(maxsize=65536)
def _fast_str(text: str, limit: int = _FAST_STR_MAX) -> str:
    """`text` as ruamel writes it with `_style_for`'s choice, for single-line ASCII text of at
    most `limit` characters (a key's limit unless told).
    """
    if len(text) > limit or not _FAST_TEXT.fullmatch(text):
        raise _Unsupported
    if text == "" or needs_quotes(text):
        return "'" + text.replace("'", "''") + "'"
    if _plain_allowed(text):
        return text
    if "'" in text:  # ruamel prefers double quotes here (emitter.choose_scalar_style)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "'" + text + "'"


def _plain_allowed(text: str) -> bool:
    """ruamel's `analyze_scalar(...).allow_block_plain` for printable single-line ASCII."""
    if text[0] == " " or text[-1] == " " or text.startswith(("---", "...")):
        return False
    first = text[0]
    followed_by_space = len(text) == 1 or text[1] == " "
    if first in _INDICATOR_FIRST or (first in "?:-" and followed_by_space):
        return False
    return not (": " in text or text.endswith(":") or " #" in text)


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
