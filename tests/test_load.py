"""The loader and the validator's messages: positions, every hostile construct as one located
problem, limits that keep hostile files fast, and properties over generated hostile documents
(always a `Document` or a `ConfigError`, never another exception, never an unreadable message).
"""

from __future__ import annotations

import copy
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hkgen.config.load import MAX_BYTES, MAX_DEPTH, MAX_NODES, Document, json_path, load_bytes, load_file, load_text
from hkgen.core.errors import ConfigError, Problem, UsageError, printable, shown
from hkgen.core.yamlio import dump
from hkgen.validation.validate import validate_document

CASES = Path(__file__).resolve().parent / "cases"
BASE_TEXT = (CASES / "valid" / "ha-three-nodes.yaml").read_text()
BASE: dict[str, Any] = load_text(BASE_TEXT, "base.yaml").data
_RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def problems(text: str | bytes) -> list[str]:
    """The formatted problems loading `text` gives (it must give some)."""
    with pytest.raises(ConfigError) as caught:
        load_bytes(text, "f.yaml") if isinstance(text, bytes) else load_text(text, "f.yaml")
    return caught.value.lines()


# --- positions ----------------------------------------------------------------------------------


def test_positions_of_values_and_keys() -> None:
    doc = load_text("a:\n  b: [1, {c: x}]\n  'd e': ~\n", "f.yaml")
    assert doc.data == {"a": {"b": [1, {"c": "x"}], "d e": None}}
    assert doc.values[("a", "b", 1, "c")] == (2, 14)
    assert doc.keys[("a", "b", 1, "c")] == (2, 11)
    assert doc.keys[("a", "d e")] == (3, 3)
    # Missing paths fall back to the nearest ancestor (the key, when asked for the key).
    assert doc.where(("a", "b", 1, "zzz")) == (2, 10)
    assert doc.where(("a", "nope"), key=True) == (1, 1)
    assert doc.problem(("a", "b", 0), "m", "h").format() == "f.yaml:2:7: $.a.b[0]: m (hint: h)"


def test_positions_with_crlf_and_cr_line_endings() -> None:
    for newline in ("\r\n", "\r"):
        doc = load_text(newline.join(["a: 1", "b:", "  c: 2", ""]), "f.yaml")
        assert doc.values[("b", "c")] == (3, 6), newline


def test_alias_and_merge_positions_point_at_the_text_that_holds_the_value() -> None:
    doc = load_text("base: &b {x: 1, y: [2]}\nuse: *b\nm:\n  y: 9\n  <<: *b\n", "f.yaml")
    assert doc.data["use"] == {"x": 1, "y": [2]}
    assert doc.data["m"] == {"y": 9, "x": 1}  # an explicit key wins over the merge, wherever it is
    assert doc.values[("use",)] == (2, 6)  # the alias itself
    assert doc.values[("use", "y", 0)] == (1, 21)  # inside the anchor
    assert doc.values[("m", "y")] == (4, 6)  # the explicit value, not the merged one
    assert doc.values[("m", "x")] == (1, 14)


def test_keys_are_names_as_written() -> None:
    doc = load_text("1: a\ntrue: b\n~: c\n'<<': d\n0x10: e\n: f\n", "f.yaml")
    assert doc.data == {"1": "a", "true": "b", "~": "c", "<<": "d", "0x10": "e", "": "f"}


def test_scalars_follow_yaml_1_2() -> None:
    doc = load_text("a: on\nb: 1:20\nc: 0o17\nd: 0x1F\ne: 1_000\nf: .inf\ng: ! 12\nh: !!str 12\ni: 2001-12-14\n"
                    "j: yes\nk: -0b101\n", "f.yaml")
    assert doc.data == {"a": "on", "b": "1:20", "c": 15, "d": 31, "e": 1000, "f": float("inf"), "g": "12",
                        "h": "12", "i": "2001-12-14", "j": "yes", "k": -5}


# --- every hostile construct: one located problem ------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("a:\n\tb: 1\n", "f.yaml:2:1: $: YAML syntax error: tab character in indentation (hint: indent with spaces only)"),
    ("a: 1\na: 2\n", "f.yaml:2:1: $.a: duplicate key 'a' (first defined at line 1) (hint: keep one of the two)"),
    ("a: !!python/object/apply:os.system [x]\n",
     "f.yaml:1:4: $.a: unsupported YAML tag '!!python/object/apply:os.system' (hint: remove the tag)"),
    ("a: !!binary aGk=\n", "f.yaml:1:4: $.a: unsupported YAML tag '!!binary' (hint: remove the tag)"),
    ("a: !!int x\n", "f.yaml:1:4: $.a: a value tagged !!int must be a whole number"),
    ("a: 0755\n", "f.yaml:1:4: $.a: number with a leading zero (octal to YAML 1.1 readers, decimal to 1.2) "
                   "(hint: drop the leading zero, or quote the value if it is text)"),
    ("a: " + "9" * 50 + "\n",
     "f.yaml:1:4: $.a: number with more than 40 digits (hint: no setting takes a number this long)"),
    ("a: *x\n", "f.yaml:1:4: $.a: unknown alias '*x' (hint: define the anchor first)"),
    ("a: &x [*x]\n", "f.yaml:1:8: $.a[0]: alias '*x' is used inside its own anchor "
                     "(hint: an alias cannot refer to the value that contains it)"),
    ("a: {<<: 3}\n", "f.yaml:1:5: $.a: a merge key ('<<') takes a mapping or a list of mappings"),
    ("[a]: 1\n", "f.yaml:1:1: $: mapping keys must be plain strings"),
    ("a: 1\n---\nb: 2\n",
     "f.yaml:2:1: $: more than one YAML document in the file (hint: remove the extra '---' document)"),
    ("%YAML 1.1\n---\na: on\n",
     "f.yaml:1:1: $: hkgen reads YAML 1.2, this file declares %YAML 1.1 (hint: delete the %YAML line)"),
    ("a: \"\\ud800\"\n", "f.yaml:1:4: $.a: unpaired surrogate U+D800 (written as an escape) is not a character "
                         "(hint: delete the escape)"),
    ("a: [1, 2\n", "f.yaml:2:1: $: YAML syntax error: expected ',' or ']', but got '<stream end>' "
                   "(hint: a [list] is not closed, or an item holding ':' or ',' needs quotes)"),
    ("a: b: c\n", "f.yaml:1:5: $: YAML syntax error: mapping values are not allowed here "
                  "(hint: a value holding ': ' needs quotes)"),
    ("", "f.yaml:1:1: $: file is empty"),
    ("# only\n\n   \n", "f.yaml:1:1: $: file is empty"),
    ("---\n", "f.yaml:1:1: $: file is empty"),
])
def test_hostile_text_gives_one_located_problem(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize(("raw", "expected"), [
    (b"\xef\xbb\xbfa: 1\n",
     "f.yaml:1:1: $: file starts with a byte-order mark (hint: save the file as UTF-8 without BOM)"),
    (b"\xff\xfea\x00", "f.yaml:1:1: $: file is UTF-16, not UTF-8 (hint: save the file as UTF-8)"),
    ("a: 1\nb: \u00e4\xff\n".encode("latin-1"),
     "f.yaml:2:4: $: invalid UTF-8 byte 0xe4 (hint: save the file as UTF-8)"),
    (b"a: \xc3\xa9\nb: x\xff\n", "f.yaml:2:5: $: invalid UTF-8 byte 0xff (hint: save the file as UTF-8)"),
])
def test_hostile_bytes_give_one_located_problem(raw: bytes, expected: str) -> None:
    assert problems(raw) == [expected]


@pytest.mark.parametrize(("char", "name"), [
    ("\x00", "control character U+0000 (NUL) is not allowed in a YAML file"),
    ("\x1b", "control character U+001B is not allowed in a YAML file"),
    ("\x85", "character U+0085 (NEL, next line) is a line break to some YAML readers and not to others"),
    ("\u2028", "character U+2028 (line separator) is a line break to some YAML readers and not to others"),
    ("\u202e", "invisible bidirectional control U+202E can make the file read differently than it is"),
    ("\ufeff", "U+FEFF (byte-order mark) inside the file"),
    ("\ufffe", "U+FFFE is not a character"),
    ("\udc80", "unpaired surrogate U+DC80 is not a character"),
])
def test_bad_characters_are_located_in_the_value_or_key_that_holds_them(char: str, name: str) -> None:
    lines = problems(f"a:\n  key{char}: 1\n  b: x{char}y\n# c{char}\n")
    assert [re.sub(r" \(hint: .*\)$", "", line) for line in lines] == [
        f"f.yaml:2:6: $.a.key_: {name}", f"f.yaml:3:7: $.a.b: {name}", f"f.yaml:4:4: $: {name}"]


def test_bad_characters_are_capped_and_counted() -> None:
    lines = problems("a: " + "\x07" * 30 + "\n")
    assert len(lines) == 21
    assert lines[-1] == "f.yaml:1:24: $: 10 more such characters are not listed"


def test_problems_with_bad_characters_come_with_the_other_problems() -> None:
    assert problems("a: 1\x07\na: 2\n") == [
        "f.yaml:1:5: $.a: control character U+0007 is not allowed in a YAML file "
        "(hint: delete it; text must be printable)",
        "f.yaml:2:1: $.a: duplicate key 'a' (first defined at line 1) (hint: keep one of the two)"]


# --- limits: hostile files fail fast --------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "a: " + "[" * 200_000 + "]" * 200_000,  # the YAML scanner is quadratic in flow nesting
    "a: " + "{b: " * 50_000 + "1" + "}" * 50_000,
    "".join("  " * i + f"k{i}:\n" for i in range(1000)),
    "- " * 5000 + "x\n",
])
def test_deep_nesting_is_refused_quickly(text: str) -> None:
    start = time.perf_counter()
    lines = problems(text)
    assert time.perf_counter() - start < 5
    assert len(lines) == 1 and f"nested deeper than {MAX_DEPTH} levels" in lines[0]
    assert len(lines[0]) < 600


def test_alias_bomb_is_refused_quickly() -> None:
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 12))
    start = time.perf_counter()
    lines = problems(text)
    assert time.perf_counter() - start < 2
    assert lines == [f"f.yaml:5:25: $.a4[3]: the document expands to more than {MAX_NODES} values through aliases "
                     "(hint: aliases of aliases multiply; write the data out instead)"]


def test_too_many_values_are_refused() -> None:
    lines = problems("[" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n")
    assert lines[0].endswith(f"the document holds more than {MAX_NODES} values")


def test_deep_but_allowed_nesting_loads() -> None:
    value = "x"
    for _ in range(MAX_DEPTH - 1):
        value = "[" + value + "]"
    assert load_text("a: " + value + "\n", "f.yaml").data["a"] is not None


# --- files -----------------------------------------------------------------------------------------


def test_load_file_refuses_what_is_not_a_regular_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        load_file(tmp_path / "missing.yaml")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_BYTES + 1))
    expected = {
        "dir.yaml": "dir.yaml:1:1: $: is a directory, expected a YAML file "
                    "(hint: put the YAML file here, not a folder)",
        "dangling.yaml": "dangling.yaml:1:1: $: is a symbolic link to a file that does not exist",
        "fifo.yaml": "fifo.yaml:1:1: $: is not a regular file, expected a YAML file",
        "big.yaml": f"big.yaml:1:1: $: file is larger than {MAX_BYTES} bytes",
    }
    for name, line in expected.items():
        with pytest.raises(ConfigError) as caught:
            load_file(tmp_path / name, name)
        assert caught.value.lines() == [line]


# --- messages ----------------------------------------------------------------------------------------


def test_messages_escape_control_characters_and_stay_one_line() -> None:
    problem = Problem("f\n.yaml", 1, 2, "$['a\x1b[2J']", "bad \x85 value\u202e", "fix\ud800 it")
    line = problem.format()
    assert "\n" not in line and not _RAW_CONTROL.search(line)
    assert line == "f\\x0a.yaml:1:2: $['a\\x1b[2J']: bad \\x85 value\\u202e (hint: fix\\ud800 it)"


def test_shown_values_are_quoted_escaped_and_cut() -> None:
    assert shown("a\nb") == "'a\\x0ab'"
    assert shown("x" * 100) == "'" + "x" * 57 + "...'"
    assert shown(True) == "true" and shown(None) == "null" and shown({"a": 1}) == "a mapping" and shown([1]) == "a list"
    assert shown(10**100) == "a number with more than 48 digits"
    assert printable("ok\u2028") == "ok\\u2028"


def test_json_paths() -> None:
    assert json_path(("nodes", 1, "ip")) == "$.nodes[1].ip"
    assert json_path(("apps", "home-assistant", "x")) == "$.apps.home-assistant.x"
    assert json_path(("labels", "room name")) == "$.labels['room name']"
    assert json_path(("x" * 100,)) == "$['" + "x" * 37 + "...']"
    assert json_path(("a\nb",)) == "$['a\\x0ab']"


def test_messages_never_repeat_what_may_be_a_secret() -> None:
    # Made-up key and token, in the shapes people paste by mistake; assembled at run time so
    # secret scanners of the repository do not take the fixtures for real keys.
    secret = "AGE-SECRET-" + "KEY-1QZ3XW0Y5NMN7J3VLKQ8X7D6TQ2GZ2T4R6S9E7C4U2N0HJ5P9M3KQ8VN0SQQ"
    token = "glpat-0123456789abcdef"  # noqa: S105
    data = copy.deepcopy(BASE)
    data["secrets"]["ageRecipients"] = [secret]
    data["os"]["admins"][0]["sshKeys"] = ["-----BEGIN OPENSSH " + "PRIVATE KEY----- b3BlbnNzaC1rZXktdjE"]
    data["gitops"]["repository"]["url"] = f"https://ops:{token}@git.example/x.git"
    data["customApps"] = [{"name": "x", "image": "ghcr.io/x/y:1", "port": 80, "expose": "none",
                           "env": {"PASSWORD": 12345678}, "secretEnv": {"TOKEN": "not a key name"}}]
    result = validate_document(load_text(dump(data), "f.yaml"))
    text = "\n".join(p.format() for p in result.problems)
    assert len(result.errors) == 4, text  # the URL is checked once the schema is satisfied (below)
    for value in (secret, "PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjE", token, "12345678", "not a key name"):
        assert value not in text
    assert "this looks like a private key" in text
    data["gitops"]["repository"]["url"] = f"https://ops:{token}@git.example.com/x.git"
    data["secrets"]["ageRecipients"] = BASE["secrets"]["ageRecipients"]
    data["os"]["admins"] = BASE["os"]["admins"]
    data["customApps"] = []
    result = validate_document(load_text(dump(data), "f.yaml"))
    assert [p.message for p in result.errors] == [
        "the URL carries credentials; they would be written into the rendered tree"]


def test_floats_and_quoted_numbers_get_a_hint() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"][0]["memoryGiB"] = 8.0
    data["nodes"][0]["disks"][0]["sizeGB"] = "256"
    data["storage"]["longhorn"]["replicas"] = 3.0
    hints = sorted(p.hint for p in validate_document(load_text(dump(data), "f.yaml")).problems)
    assert hints == ["write 3 without a decimal point", "write 8 without a decimal point",
                     "write it without quotes: it is a number"]


# --- properties: hostile documents ---------------------------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "a", "b", "key", "nodes", "hostname", ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "? ", "&a ", "*a", "&b ",
    "*b", "<<", "<<: ", "!!python/object:os.system ", "!!binary ", "!foo ", "!!str ", "! ", "|", ">", "|-", "'",
    '"', "\\", "#", " # c", "\n", "\n  ", "\n    ", "\n- ", "\t", "\r", "\r\n", "---\n", "...\n", "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n", "on", "no", "1:20", "0o17", "0755", "~", "null", ".inf", "9" * 60, "\x00", "\x85",
    "\u2028", "\ufeff", "\u202e", "\ud800", "\\ud800", "\\x85", "é", "😀", "x" * 300,
])
_HOSTILE_TEXT = st.lists(_FRAGMENTS | st.text(max_size=8), max_size=60).map("".join)


def _check_problems(error: ConfigError, text: str) -> None:
    assert error.problems, "a ConfigError without problems"
    lines = text.count("\n") + text.count("\r") + 2
    for problem in error.problems:
        assert 0 <= problem.line <= lines and problem.col >= 0, problem
        assert problem.path.startswith("$"), problem
        line = problem.format()
        assert "\n" not in line and not _RAW_CONTROL.search(line), line


def _load_and_validate(text: str) -> None:
    try:
        doc = load_text(text, "f.yaml")
    except ConfigError as error:
        _check_problems(error, text)
        return
    assert isinstance(doc, Document)
    result = validate_document(doc)
    for problem in result.problems:
        assert problem.line >= 1 and problem.path.startswith("$"), problem
        assert not _RAW_CONTROL.search(problem.format())


@settings(max_examples=1200)
@given(_HOSTILE_TEXT)
def test_any_text_gives_a_document_or_located_problems(text: str) -> None:
    _load_and_validate(text)


@settings(max_examples=300)
@given(st.binary(max_size=200) | _HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_give_a_document_or_located_problems(raw: bytes) -> None:
    try:
        doc = load_bytes(raw, "f.yaml")
    except ConfigError as error:
        _check_problems(error, raw.decode("utf-8", "replace"))
        return
    validate_document(doc)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["../x", "a/../b", "on", "no", "1:20", "cp1\nrole: worker", "\x85", "x" * 10_000,
                       "AGE-SECRET-KEY-1X"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=6,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


_BASE_PATHS = _paths(BASE)[1:]


@settings(max_examples=250)
@given(st.lists(st.tuples(st.sampled_from(_BASE_PATHS), _VALUES), min_size=1, max_size=3))
def test_any_edit_of_a_valid_cluster_is_validated_without_a_crash(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    """Replace parts of a valid cluster with arbitrary values: validation reports problems at the
    edited places (or accepts the file), and never fails in another way."""
    data = copy.deepcopy(BASE)
    for path, value in edits:
        target: Any = data
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced this part
    try:
        text = dump(data)
    except ValueError:
        return  # a lone surrogate from st.text: not text, refused by the writer itself
    _load_and_validate(text)
