"""The fast path of stage 1: libyaml's parser events, marked the way ruamel's parser marks them,
and the YAML 1.2 core schema's resolution of untagged plain scalars.

`load.py` builds cluster.yaml from parser events. ruamel's pure-Python parser (a YAML 1.2 reader)
took ~50 ms for the reference file and ~10 s at 1,000 nodes; libyaml (through PyYAML's C
extension) gives the same events in ~1 ms. The two readers differ in a few corners, so this
module only serves a file on which they are known to agree and answers `Unsure` otherwise;
`load.py` then reads the file with ruamel, as before. The corners:
- a tab anywhere, a `%` directive line, no final line break, an odd block scalar header, an
  anchor name not ended by a space: read by ruamel;
- an empty, tagged or anchored value inside a flow collection, or an empty mapping key: ruamel
  marks or reads them differently;
- an empty block-mapping value: ruamel marks it at the start of the next token (libyaml at the
  ':'), so it is re-marked here at the start of the next event, which is that token;
- any libyaml error: ruamel words the error (and may accept what libyaml, a 1.1 reader, refuses).
A property test (tests/test_yaml12.py) holds the two paths to the same data and positions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

__all__ = ["Unsure", "events", "resolve_plain"]


class Unsure(Exception):
    """The fast reader is not known to read this text exactly as ruamel does."""


_CORE = "tag:yaml.org,2002:"

# The YAML 1.2 core schema as ruamel's VersionedResolver applies it (hkgen's documented reading
# of cluster.yaml): candidate tags by the scalar's first character, tried in this order.
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT = re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_INT = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_MERGE = re.compile(r"^(?:<<)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TIMESTAMP = re.compile(r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
    (?:[Tt]|[ \t]+)[0-9][0-9]?
    :[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
    (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", re.X)
_VALUE = re.compile(r"^(?:=)$")
_YAML = re.compile(r"^(?:!|&|\*)$")

_BY_FIRST: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _tag, _rx, _first in (("bool", _BOOL, "tTfF"), ("float", _FLOAT, "-+0123456789."),
                          ("int", _INT, "-+0123456789"), ("merge", _MERGE, "<"),
                          ("null", _NULL, ["~", "n", "N", ""]), ("timestamp", _TIMESTAMP, "0123456789"),
                          ("value", _VALUE, "="), ("yaml", _YAML, "!&*")):
    for _ch in _first:
        _BY_FIRST.setdefault(_ch, []).append((_CORE + _tag, _rx))


@lru_cache(maxsize=4096)
def resolve_plain(value: str, implicit: tuple[bool, bool]) -> str:
    """The YAML 1.2 tag of an untagged scalar: `implicit[0]` is true for a plain one."""
    if implicit[0]:
        for tag, rx in _BY_FIRST.get(value[:1], ()):
            if rx.match(value):
                return tag
    return _CORE + "str"


# A block scalar's header as both readers take it: indicators, then nothing or a spaced comment.
_BLOCK_HEADER = re.compile(r"[|>][-+1-9]{0,2}(?: +(?:#.*)?)?$")


_NAME_END = {" ", "\n", "\r", ""}


def _loader() -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        raise Unsure("PyYAML without libyaml")
    return loader


def events(text: str) -> Iterator[Any]:
    """libyaml's events for `text`, re-marked as ruamel marks them; `Unsure` where they may differ.

    The caller must be ready to drop what it built from these events when `Unsure` comes.
    """
    if "\t" in text or not text.endswith("\n") or re.search(r"^%", text, re.M):
        raise Unsure("a corner the readers treat differently")
    import yaml

    # [is mapping, is flow, children so far] of each open collection.
    stack: list[list[Any]] = []
    held: Any = None  # an empty block-mapping value, waiting for the next event's mark
    try:
        parsed: Iterator[Any] = yaml.parse(text, Loader=_loader())  # the concrete event classes
        for event in parsed:
            kind = type(event).__name__
            if held is not None:
                held.start_mark = held.end_mark = event.start_mark
                yield held
                held = None
            if kind in ("MappingStartEvent", "SequenceStartEvent"):
                stack.append([kind == "MappingStartEvent", bool(event.flow_style), 0])
                yield event
                continue
            if kind in ("MappingEndEvent", "SequenceEndEvent"):
                stack.pop()
                if stack:
                    stack[-1][2] += 1
                yield event
                continue
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                # libyaml ends a name at the first character outside [A-Za-z0-9_-]; YAML 1.2 (ruamel)
                # only at a space or flow indicator.
                sign = "*" if kind == "AliasEvent" else "&"
                at = text.find(sign + anchor, event.start_mark.index)
                if at < 0 or text[at + 1 + len(anchor):at + 2 + len(anchor)] not in _NAME_END:
                    raise Unsure("an anchor name the readers end differently")
            if kind == "ScalarEvent" and event.style in ("|", ">"):
                start = event.start_mark.index
                header = text[start:text.find("\n", start)]
                if not _BLOCK_HEADER.match(header):
                    raise Unsure("a block scalar header ruamel reads differently")
            if kind in ("ScalarEvent", "AliasEvent") and stack:
                is_map, flow, count = stack[-1]
                stack[-1][2] += 1
                blank = kind == "ScalarEvent" and event.value == "" and not event.style
                if flow and (blank or event.anchor is not None or getattr(event, "tag", None) is not None):
                    raise Unsure("an empty, tagged or anchored value in a flow collection")
                if blank and is_map and count % 2 == 0:
                    raise Unsure("an empty mapping key")
                if blank and is_map and event.tag is None and event.anchor is None:
                    held = event
                    continue
            yield event
    except yaml.YAMLError as err:
        raise Unsure(str(err)) from None
