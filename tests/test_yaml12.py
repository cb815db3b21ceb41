"""The fast loader (libyaml events, config/yaml12.py) reads every file exactly as the ruamel-only
loader did: the same data, the same value and key positions, the same problems; and the YAML 1.2
resolver gives ruamel's tags. Generated YAML (hypothesis), compared with the reference path."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hkgen.config import yaml12
from hkgen.config.load import Document, _Builder
from hkgen.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

TRICKY = ["true", "False", "TRUE", "yes", "on", "null", "Null", "~", "", "1", "-1", "+1", "0", "01", "0755",
          "0o17", "0x1F", "0b101", "1_000", "1.5", "1.", ".5", "1e3", "1.0e+3", "-.inf", ".Inf", ".nan", "+.inf",
          "2024-01-01", "2024-1-1 10:00:00", "2024-01-01T10:00:00Z", "12:30", "=", "<<", "a b", "é", "x:y",
          "-", "0.0.1", "v1.2", "_1", "1__0", "0x", "--1", ".", "e3", "NaN", "nULL", "tRue", "3e", "0o8"]


def _outcome(text: str, *, fast: bool) -> Any:
    try:
        doc: Document = _Builder("f.yaml", text).build(fast=fast)
    except ConfigError as err:
        return ("error", [p.format() for p in err.problems])
    return ("ok", _normal(doc.data), doc.values, doc.keys)


def _normal(value: Any) -> Any:
    """NaN != NaN: compare it by name."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _same(text: str) -> None:
    assert _outcome(text, fast=True) == _outcome(text, fast=False), text


# --- a generator of block/flow YAML with the shapes cluster files have --------------------------

scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.sampled_from(TRICKY).map(lambda s: f"'{s}'"),
    st.sampled_from(TRICKY).map(lambda s: f'"{s}"'),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=8)
    .map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.from_regex(r"[a-z][a-z0-9.-]{0,6}", fullmatch=True),
    st.sampled_from(["!!str 3", "!!int 3", "! 5", "!!float 1", "!!bool true", "!!null", "!!str", "&a x", "*a"]),
)
keys = st.sampled_from(["a", "b", "c", "name", "ip", "1", "true", "<<", "'q'", '"d"', "x y"])


def _block(value: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, (child, comment) in value.items():
            text = _block(child, indent + 2)
            tail = "  # note" if comment else ""
            if isinstance(child, dict | list) and child:
                lines.append(f"{pad}{key}:{tail}\n{text}")
            elif isinstance(child, dict | list):
                lines.append(f"{pad}{key}: {'{}' if isinstance(child, dict) else '[]'}{tail}\n")
            elif child is None:
                lines.append(f"{pad}{key}:{tail}\n" + ("\n" if comment else ""))
            else:
                lines.append(f"{pad}{key}: {child}{tail}\n")
        return "".join(lines)
    if isinstance(value, list):
        out = []
        for child in value:
            if isinstance(child, dict) and child:
                inner = _block(child, indent + 2)
                out.append(f"{pad}- {inner[indent + 2:]}")
            elif isinstance(child, list) and child:
                out.append(f"{pad}-\n{_block(child, indent + 2)}")
            elif child is None:
                out.append(f"{pad}-\n")
            else:
                out.append(f"{pad}- {child if not isinstance(child, dict | list) else _flow(child)}\n")
        return "".join(out)
    return f"{pad}{value}\n"


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v[0])}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return "''" if value is None else str(value)


trees = st.recursive(
    st.one_of(scalars, st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, st.tuples(inner, st.booleans()), max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, st.tuples(trees, st.booleans()), min_size=1, max_size=5),
       st.booleans(), st.booleans())
def test_generated_block_yaml_reads_the_same(tree: dict[str, Any], flow: bool, start: bool) -> None:
    text = ("---\n" if start else "") + (_flow(tree) + "\n" if flow else _block(tree, 0))
    _same(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([*" :-[]{},#&*!|>'\"\n?abc01~.%@`\\", "  ", "\n  ", "\n- ", ": "]),
                max_size=40).map("".join))
def test_arbitrary_text_reads_the_same(text: str) -> None:
    """Whatever libyaml accepts reads as ruamel reads it; whatever it refuses is worded by ruamel."""
    _same(text)
    _same(text + "\n")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(TRICKY), st.text(max_size=12)), st.booleans())
def test_resolver_matches_ruamel(value: str, plain: bool) -> None:
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver

    implicit = (plain, not plain)
    expected = str(VersionedResolver(version=(1, 2)).resolve(ScalarNode, value, implicit))
    assert yaml12.resolve_plain(value, implicit) == expected


def test_reference_cluster_takes_the_fast_path_and_reads_the_same() -> None:
    text = (REPO / "clusters/home/cluster.yaml").read_text("utf-8")
    list(yaml12.events(text))  # raises Unsure if the file would fall back to ruamel
    _same(text)


@pytest.mark.parametrize("text", ["a:\tb\n", "a: 1", "%YAML 1.2\n---\na: 1\n", "{a: , b: 1}\n", "? \n: v\n",
                                  "a: [1, 2\n"])
def test_corners_go_to_ruamel(text: str) -> None:
    with pytest.raises(yaml12.Unsure):
        list(yaml12.events(text))
    _same(text)


def test_empty_block_value_is_marked_at_the_next_token() -> None:
    """ruamel marks `b:` with no value where the next key starts; libyaml at the ':'."""
    text = "a:\n  b:\n\n  # c\n  c: 1\nd:\n"
    doc = _Builder("f", text).build()
    assert doc.values[("a", "b")] == (5, 3)
    assert doc.values[("d",)] == (7, 1)
    from ruamel.yaml import YAML

    assert YAML(typ="safe", pure=True).load(io.StringIO(text)) == doc.data
