"""hkgen's YAML writer: whatever the string, a YAML 1.1 reader (PyYAML, as cloud-init uses) and a
YAML 1.2 reader (ruamel, like kustomize/Flux/Argo CD) read back exactly that string.

Properties run on hypothesis' whole Unicode range plus a list of strings known to trip one reader
or the other; hkgen's own loader must read the writer's output back too.
"""

from __future__ import annotations

import copy
import io
import math
from typing import Any

import pytest
import yaml as pyyaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from hkgen.config.load import load_text
from hkgen.core.yamlio import _fast_dump, dump, dump_all, make_yaml, needs_quotes, scalar

_RUAMEL = YAML(typ="safe", pure=True)
_LOADERS_11 = [pyyaml.SafeLoader] + ([pyyaml.CSafeLoader] if hasattr(pyyaml, "CSafeLoader") else [])

# Strings whose plain form means something else to one reader or the other, or that YAML folds.
TRICKY = [
    "on", "off", "yes", "no", "y", "n", "Y", "N", "ON", "No", "true", "False", "~", "null", "Null", "",
    "1:20", "190:20:30", "0o17", "017", "0x1F", "0b101", "1_000", "1e3", ".5", "+1", "-0", ".inf", "-.Inf",
    ".NaN", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "=", "<<", "-", "- a", "? x", ": y", "#c", "a #b",
    "'", '"', "''", "\\", "\n", "\n\n", " x", "x ", " ", "\t", "a\tb", "\r", "\r\n", "a\rb", "x\n ", " \n",
    "a\n\nb\n", "\x85", "a\x85b", "\u2028", "\u2029", "\ufeff", "\ufeffx", "\x00", "\x1b[31m", "\x7f", "\x9b",
    "\ufffe", "\uffff", "%YAML", "@x", "`x", "!x", "!!str", "&a", "*a", "|", "> x",
    "{a: 1}", "[a]", "a: b", "a,b", "{{ x }}", "${KEY}", "${{ x }}", "---", "...", "--- x", "... x",
    "é", "😀", "x" * 5000, "a" + " " * 100 + "b", "\n" * 3 + "x",
]
# Any code point but lone surrogates (not text: see test_lone_surrogates_are_refused).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80) | st.sampled_from(TRICKY)


def _read_12(text: str) -> Any:
    return _RUAMEL.load(io.StringIO(text))


def _read_11(text: str, loader: Any) -> Any:
    return pyyaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader/CSafeLoader only


def _same_everywhere(text: str, expected: Any) -> None:
    assert _read_12(text) == expected, text
    for loader in _LOADERS_11:
        assert _read_11(text, loader) == expected, (loader.__name__, text)


@settings(max_examples=1500)
@given(ANY_TEXT)
@example("on")
@example("1:20")
@example("\x85")
def test_dump_of_any_string_reads_back_the_same(text: str) -> None:
    _same_everywhere(dump({"value": text}), {"value": text})
    _same_everywhere(dump([text, {"nested": [text]}]), [text, {"nested": [text]}])


@settings(max_examples=1000)
@given(ANY_TEXT, ANY_TEXT)
def test_dump_of_any_key_reads_back_the_same(key: str, value: str) -> None:
    data = {key: value, "list": [{key: [value]}]} if key != "list" else {key: value}
    _same_everywhere(dump(data), data)


@settings(max_examples=1500)
@given(ANY_TEXT)
@example("- a")
@example("a: b")
def test_inline_scalar_of_any_string_reads_back_the_same(text: str) -> None:
    # The filter templates use for every user-derived value: as a block value, a list item and
    # inside flow collections, where ',', ']' and '}' end a plain scalar.
    quoted = scalar(text)
    assert "\n" not in quoted and "\r" not in quoted
    _same_everywhere(f"key: {quoted}\n", {"key": text})
    _same_everywhere(f"- {quoted}\n", [text])
    _same_everywhere(f"{{k: [{quoted}, {quoted}]}}\n", {"k": [text, text]})
    _same_everywhere(f"nested:\n  deeper:\n    - {quoted}\n", {"nested": {"deeper": [text]}})


@settings(max_examples=500)
@given(st.none() | st.booleans() | st.integers(min_value=-(2**62), max_value=2**62)
       | st.floats(allow_nan=False, allow_infinity=False))
def test_inline_scalar_keeps_the_type_of_numbers_and_booleans(value: Any) -> None:
    _same_everywhere(f"key: {scalar(value)}\n", {"key": value})


def test_inline_scalar_refuses_what_is_not_a_scalar() -> None:
    with pytest.raises(TypeError):
        scalar(["a list"])


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**15), max_value=10**15)
    | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(_JSONISH)
def test_hkgens_own_loader_reads_its_writer_back(data: Any) -> None:
    text = dump({"root": data})
    assert load_text(text, "x.yaml").data == {"root": data}
    _same_everywhere(text, {"root": data})


def test_dump_all_separates_documents() -> None:
    text = dump_all([{"a": "on"}, {"b": "1:20"}])
    assert list(_RUAMEL.load_all(io.StringIO(text))) == [{"a": "on"}, {"b": "1:20"}]
    assert list(pyyaml.safe_load_all(text)) == [{"a": "on"}, {"b": "1:20"}]


@pytest.mark.parametrize("text", ["on", "no", "1:20", "0o17", "~", "null", "true", "1e3", "<<", "0x1F", "017", ""])
def test_strings_that_look_like_other_types_need_quotes(text: str) -> None:
    assert needs_quotes(text) or text == ""
    assert scalar(text).startswith(("'", '"'))


@pytest.mark.parametrize("text", ["home", "cp1", "home.arpa", "192.168.10.0/24", "1.34/stable", "zigbee2mqtt/house"])
def test_plain_names_stay_plain(text: str) -> None:
    assert not needs_quotes(text)
    assert scalar(text) == text
    assert dump({"k": text}) == f"k: {text}\n"


def test_lone_surrogates_are_refused() -> None:
    # Not text: no UTF-8 file holds one, and libyaml rejects even the escape. The loader refuses
    # them, so reaching the writer with one is a bug that must not pass silently.
    for write in (scalar, lambda t: dump({"k": t}), lambda t: dump({t: "v"})):
        with pytest.raises(ValueError, match="surrogate"):
            write("a\ud800b")


def test_control_characters_are_escaped_not_written_raw() -> None:
    for text in ("\x85", "\u2028", "\x00", "\x1b[2J", "\ufeff", "\ufffe"):
        for out in (scalar(text), dump({"k": text})):
            assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\ufeff"
                           for c in out), repr(out)


def test_floats_round_trip_exactly() -> None:
    for value in (0.1, 1e-300, 123456789.123, -0.0, 1e16):
        back = _read_12(f"k: {scalar(value)}\n")["k"]
        assert back == value and math.copysign(1, back) == math.copysign(1, value)


# --- the fast writer for plain data must write exactly what ruamel writes -------------------------

_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12) | st.sampled_from(
    ["on", "1:20", "- a", "a: b", "#x", "a #b", "'x", "it's", "?x", "? x", ":x", "::1", "x:", "---x", "...",
     "y", "~", "null", "1.5", "0o17", " x", "x ", "", "-", "dc:a6:32:00:00:01", "fe80::1/64", "a" * 101]
) | st.sampled_from(  # values the fast writer takes up to its value limit: long, quoted, escaped
    ["the primary's disk: full", 'say "hi": it\'s \\ fine', "x: 'y'", "it's", "a 'b' c #d",
     "word " * 199 + "it's: x", "word " * 201 + ": y", "w" * 999 + "'", "sum(rate(x{a=\"b\"}[5m])) > 0: it's"]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=95, max_size=1100)
_PLAIN_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _ASCII | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_ASCII, children, max_size=4),
    max_leaves=16,
)


def _ruamel_dump(data: Any) -> str:
    buf = io.StringIO()
    make_yaml().dump(data, buf)
    return buf.getvalue()


@settings(max_examples=1500)
@given(st.dictionaries(_ASCII, _PLAIN_DATA, max_size=5) | st.lists(_PLAIN_DATA, max_size=5))
@example({"a": [[1, [2]], {"b": None}, [], {}, None], "c": {"d": {}}})
@example([[{"a": 1}], None])
def test_fast_writer_is_byte_identical_to_ruamel(data: Any) -> None:
    fast = _fast_dump(data)
    if fast is not None:  # None: the value is left to ruamel
        assert fast == _ruamel_dump(data)


def test_fast_writer_takes_network_and_launch_configs() -> None:
    # The blocks every node's seed holds: they must not fall back to the slow writer.
    network = {"version": 2, "ethernets": {"eth0": {"match": {"macaddress": "dc:a6:32:10:00:11"},
               "dhcp4": False, "addresses": ["192.168.10.11/24"], "routes": [{"to": "default", "via": "192.168.10.1"}],
               "nameservers": {"addresses": ["192.168.10.1"], "search": ["home.arpa"]}}}}
    launch = {"version": "0.2.0", "extraKubeletArgs": {"--node-ip": "192.168.10.11"},
              "extraKubeAPIServerArgs": {"--default-not-ready-toleration-seconds": "15"},
              "extraSANs": ["k8s.home.arpa"]}
    for data in (network, launch):
        assert _fast_dump(data) is not None
        assert dump(data) == _ruamel_dump(data)


def test_fast_writer_takes_alert_rules() -> None:
    # Alert rules hold long expressions and descriptions with ': ' and apostrophes (double-quoted
    # by ruamel): the fast writer takes them, byte-identical, up to its value limit.
    expr = 'sum(rate(cnpg_pg_stat_archiver_failed_count{namespace="db"}[5m])) > 0'
    rule = {"alert": "WalArchivingFails", "expr": expr, "for": "10m", "labels": {"severity": "warning"},
            "annotations": {"summary": "WAL files are not reaching the S3 target",
                            "description": "WAL files are not reaching the S3 target: point-in-time recovery falls "
                                           "behind and the primary's disk fills. " * 3}}
    data = {"groups": [{"name": "hkgen", "rules": [rule, copy.deepcopy(rule)]}]}  # no shared objects
    assert _fast_dump(data) is not None
    assert dump(data) == _ruamel_dump(data)
    too_long = {"a": "word " * 201}
    assert _fast_dump(too_long) is None and dump(too_long) == _ruamel_dump(too_long)
