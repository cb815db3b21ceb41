"""Stage 1, load: read a YAML file into plain Python data plus a map of source positions.

hkgen builds the data from the YAML parser's event stream itself instead of letting a YAML
library construct objects, so it controls every way a file can be hostile: non-UTF-8 bytes, a
BOM, characters YAML readers disagree on (NEL, U+2028), tabs, duplicate keys, unknown or
executable tags (`!!python/object`), alias bombs, absurd nesting, several documents, a
`%YAML 1.1` directive. The build is iterative (no recursion, whatever the nesting) and each of
those becomes a located `Problem`; nothing here raises anything but `ConfigError`/`UsageError`.
"""

from __future__ import annotations

import io
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, Problem, UsageError, shown

__all__ = [
    "Document",
    "PathKey",
    "json_path",
    "load_bytes",
    "load_file",
    "load_generated",
    "load_generated_all",
    "load_text",
    "resolve_cluster_file",
]

PathKey = tuple[str | int, ...]

MAX_BYTES = 2_000_000
MAX_DEPTH = 40
MAX_NODES = 50_000  # ~20 values a node: far beyond any real cluster, and parsed in about a second
MAX_DIGITS = 40
MAX_CHAR_PROBLEMS = 20

_CORE = "tag:yaml.org,2002:"
_SCALAR_KINDS = {"str", "int", "float", "bool", "null", "timestamp"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}

# Characters refused anywhere in a file. YAML forbids the C0/C1 controls outright; NEL, LS and PS
# are line breaks to YAML 1.1 readers (cloud-init's PyYAML) but not to 1.2 ones, so a comment
# could hide a key from one reader and not the other; bidirectional controls make a reviewer
# read something other than what the file says; a BOM belongs only at the very start.
_BAD_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff]"
)
_CHAR_NAMES = {0x00: "NUL", 0x7F: "DEL", 0x85: "NEL, next line", 0x2028: "line separator",
               0x2029: "paragraph separator", 0xFEFF: "byte-order mark"}
_LINE_BREAKS = re.compile("\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_YAML_DIRECTIVE = re.compile(r"^%YAML[ \t]+(\S+)", re.M)


@dataclass(frozen=True)
class Document:
    """A loaded file: its data as plain dict/list/str/int/float/bool/None and where each part came from."""

    file: str
    data: Any
    # path -> (line, col) of the value, 1-based
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    # path -> (line, col) of the key that introduces the value (mapping entries only)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    # Fills `values` and `keys` on first use, for files whose positions are rarely needed
    # (hkgen's own output: only a problem needs a position).
    locate: Callable[[], tuple[dict[PathKey, tuple[int, int]], dict[PathKey, tuple[int, int]]]] | None = field(
        default=None, compare=False, repr=False)

    def where(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """Return the best source position for `path`: the value (or its key), else the nearest ancestor."""
        if self.locate is not None and not self.values:
            values, keys = self.locate()
            self.values.update(values)
            self.keys.update(keys)
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: PathKey, message: str, hint: str = "", *, key: bool = False,
                severity: str = "error") -> Problem:
        """Return a `Problem` located at `path` in this document."""
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, json_path(path), message, hint,
                       "warning" if severity == "warning" else "error")


def json_path(path: PathKey) -> str:
    """Turn `('nodes', 1, 'ip')` into `$.nodes[1].ip`; odd keys are bracket-quoted, escaped and cut short."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("-", "_").isidentifier() and part.isascii() and len(part) <= 60:
            out += f".{part}"
        else:
            out += f"[{shown(part, 40)}]"
    return out


def resolve_cluster_file(path: Path) -> Path:
    """Return the cluster.yaml to load for a cluster folder or file given on the command line."""
    if path.is_dir() and not path.name.endswith((".yaml", ".yml")):
        return path / "cluster.yaml"
    return path


def load_file(path: Path, display: str | None = None) -> Document:
    """Read and load `path`; every problem with the file is raised as a located `ConfigError`."""
    name = display or str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ConfigError([Problem(name, 0, 0, "$", "is a symbolic link to a file that does not exist")]) from None
        raise UsageError(f"{name}: no such file") from None
    except OSError as err:
        raise ConfigError([Problem(name, 0, 0, "$", f"cannot read file: {err.strerror}")]) from err
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError([Problem(name, 0, 0, "$", "is a directory, expected a YAML file",
                                   "put the YAML file here, not a folder")])
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block or never end: refuse before opening it.
        raise ConfigError([Problem(name, 0, 0, "$", "is not a regular file, expected a YAML file")])
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError([Problem(name, 0, 0, "$", f"cannot read file: {err.strerror or err}")]) from err
    if len(raw) > MAX_BYTES:
        raise ConfigError([Problem(name, 0, 0, "$", f"file is larger than {MAX_BYTES} bytes")])
    from . import doccache  # a file that loaded and validated cleanly before is not parsed again

    key = doccache.document_key(raw)
    hit = doccache.lookup(key)
    if hit is not None:
        return Document(name, *hit)
    doc = load_bytes(raw, name)
    doccache.read(key, (doc.data, doc.values, doc.keys))
    return doc


def load_bytes(raw: bytes, name: str) -> Document:
    """Decode strictly as UTF-8 (no BOM) and load."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError([Problem(name, 1, 1, "$", "file starts with a byte-order mark",
                                   "save the file as UTF-8 without BOM")])
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([Problem(name, 1, 1, "$", "file is UTF-16, not UTF-8", "save the file as UTF-8")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start].decode("utf-8", errors="replace")
        line, col = _position(before, len(before))
        raise ConfigError([Problem(name, line, col, "$", f"invalid UTF-8 byte 0x{raw[err.start]:02x}",
                                   "save the file as UTF-8")]) from None
    return load_text(text, name)


def load_text(text: str, name: str) -> Document:
    """Parse `text` (one YAML 1.2 document) into plain data with positions."""
    if not any(ln.strip() and not ln.lstrip().startswith("#") for ln in _LINE_BREAKS.split(text)):
        raise ConfigError([Problem(name, 1, 1, "$", "file is empty")])
    bad = list(_BAD_CHARS.finditer(text))
    if not bad:
        return _Builder(name, text).build()
    # Locate each character in the document: build from a copy where each one is replaced by a
    # harmless character of the same length, then name the value or key it sits in.
    clean = _BAD_CHARS.sub("_", text)
    builder = _Builder(name, clean)
    try:
        builder.build()
        others: list[Problem] = []
    except ConfigError as err:
        others = list(err.problems)
    problems = [_char_problem(name, clean, m.start(), m[0], builder.path_at(m.start()))
                for m in bad[:MAX_CHAR_PROBLEMS]]
    if len(bad) > MAX_CHAR_PROBLEMS:
        line, col = _position(clean, bad[MAX_CHAR_PROBLEMS].start())
        problems.append(Problem(name, line, col, "$",
                                f"{len(bad) - MAX_CHAR_PROBLEMS} more such characters are not listed"))
    raise ConfigError([*problems, *others])


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `index`, counting line breaks the way the YAML reader does."""
    before = text[:index]
    breaks = list(_LINE_BREAKS.finditer(before))
    line_start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - line_start + 1


def _char_problem(name: str, text: str, index: int, char: str, path: PathKey) -> Problem:
    line, col = _position(text, index)
    code = ord(char)
    label = f"U+{code:04X}" + (f" ({_CHAR_NAMES[code]})" if code in _CHAR_NAMES else "")
    if code in (0x85, 0x2028, 0x2029):
        message = f"character {label} is a line break to some YAML readers and not to others"
        hint = "delete it, or use an ordinary line break"
    elif 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069:
        message = f"invisible bidirectional control {label} can make the file read differently than it is"
        hint = "delete it"
    elif code == 0xFEFF:
        message = f"{label} inside the file"
        hint = "delete it"
    elif 0xD800 <= code <= 0xDFFF:
        message = f"unpaired surrogate {label} is not a character"
        hint = "delete it"
    elif code in (0xFFFE, 0xFFFF):
        message = f"{label} is not a character"
        hint = "delete it"
    else:
        message = f"control character {label} is not allowed in a YAML file"
        hint = "delete it; text must be printable"
    return Problem(name, line, col, json_path(path), message, hint)


class _Fatal(Exception):
    """Internal: stop building (the problem is already recorded)."""


@dataclass
class _Frame:
    """A collection being built, or a skipped subtree (`keep` false) whose events are consumed."""

    kind: str  # "map" | "seq"
    path: PathKey
    mark: Any
    keep: bool = True
    anchor: str | None = None
    log_start: int = 0
    size: int = 1
    weak: bool = False  # content of a merge key ('<<'): explicit keys win over it
    merge_list: bool = False  # the list of mappings after '<<': items belong to the mapping itself
    is_key: bool = False  # a collection used as a mapping key: consumed, then its value skipped
    items: list[Any] = field(default_factory=list)
    # mapping state
    pending: tuple[str, Any, bool] | None = None  # (key text, key mark, is a merge key) awaiting its value
    skip_value: bool = False
    first: dict[str, Any] = field(default_factory=dict)  # key -> mark of its first occurrence
    merged: list[Any] = field(default_factory=list)


@dataclass
class _Anchor:
    value: Any
    size: int
    path: PathKey
    log: tuple[int, int]
    text: str | None  # the scalar text, for an alias used as a key
    open: bool = False


class _Builder:
    """Parser events -> plain data, positions, and problems; iterative, so nesting cannot crash it."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text
        self._reset()

    def _reset(self) -> None:
        self.problems: list[Problem] = []
        # (path, is_key, (line, col), weak) in document order; a subtree is a contiguous slice,
        # which lets an alias copy its anchor's positions under its own path.
        self.log: list[tuple[PathKey, bool, tuple[int, int], bool]] = []
        self.spans: list[tuple[int, int, PathKey]] = []
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Frame] = []
        self.expanded = 0
        self.through_aliases = False
        self.root: Any = None
        self.root_set = False
        self.root_empty = False

    # -- entry points ---------------------------------------------------------------------

    def build(self, *, fast: bool = True) -> Document:
        """The document; `fast` false reads with ruamel only (the reference the fast path is tested against)."""
        from .yaml12 import Unsure, events

        self._check_directive()
        try:
            # libyaml's events where they are known to match ruamel's (10x faster); any problem
            # at all is found and worded again on ruamel's events, so every refusal reads as before.
            if fast:
                self._consume(events(self.text))
                return self._finish()
        except (Unsure, ConfigError):
            self._reset()
        from ruamel.yaml import YAML
        from ruamel.yaml.error import MarkedYAMLError, YAMLError

        try:
            self._consume(YAML(typ="safe", pure=True).parse(io.StringIO(self.text)))
        except MarkedYAMLError as err:
            self._syntax(err)
        except YAMLError as err:
            self.problems.append(Problem(self.name, 1, 1, "$", f"YAML error: {shown(str(err), 200)}"))
        return self._finish()

    def _consume(self, stream: Iterable[Any]) -> None:
        documents = 0
        try:
            for event in stream:
                kind = type(event).__name__
                if kind == "DocumentStartEvent":
                    documents += 1
                    if documents > 1:
                        self._add(event.start_mark, (), "more than one YAML document in the file",
                                  "remove the extra '---' document")
                        raise _Fatal
                elif kind in ("ScalarEvent", "AliasEvent", "MappingStartEvent", "SequenceStartEvent",
                              "MappingEndEvent", "SequenceEndEvent"):
                    self._event(kind, event)
        except _Fatal:
            pass

    def _finish(self) -> Document:
        if self.problems:
            raise ConfigError(self.problems)
        if not self.root_set or self.root_empty:
            raise ConfigError([Problem(self.name, 1, 1, "$", "file is empty")])
        values: dict[PathKey, tuple[int, int]] = {}
        keys: dict[PathKey, tuple[int, int]] = {}
        weak: list[tuple[PathKey, bool, tuple[int, int]]] = []
        for path, is_key, pos, is_weak in self.log:
            if is_weak:
                weak.append((path, is_key, pos))
            else:
                (keys if is_key else values)[path] = pos
        for path, is_key, pos in weak:
            (keys if is_key else values).setdefault(path, pos)
        return Document(self.name, self.root, values, keys)

    def path_at(self, index: int) -> PathKey:
        """Path of the innermost scalar (value or key) whose text covers `index`, else the root."""
        best: tuple[int, PathKey] | None = None
        for start, end, path in self.spans:
            if start <= index < end and (best is None or end - start < best[0]):
                best = (end - start, path)
        return best[1] if best else ()

    # -- problems -------------------------------------------------------------------------

    def _add(self, mark: Any, path: PathKey, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.name, mark.line + 1, mark.column + 1, json_path(path), message, hint))

    def _syntax(self, err: Any) -> None:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(err.problem or err.context or "YAML syntax error").split())
        hint = ""
        if "'\\t'" in message or "\\t" in message or "tab" in message.lower():
            lines = self.text.splitlines()
            before = lines[line - 1][: col - 1] if 0 < line <= len(lines) else ""
            if before.strip(" \t"):
                message = "tab character where YAML allows only spaces"
                hint = "replace it with spaces (or quote the text if the tab belongs to it)"
            else:
                message, hint = "tab character in indentation", "indent with spaces only"
        elif "expected ',' or ']'" in message:
            hint = "a [list] is not closed, or an item holding ':' or ',' needs quotes"
        elif "expected ',' or '}'" in message:
            hint = "a {mapping} is not closed, or a value holding ':' or ',' needs quotes"
        elif "mapping values are not allowed" in message:
            hint = "a value holding ': ' needs quotes"
        elif "found undefined alias" in message:
            message, hint = message.replace("found undefined alias", "unknown alias"), "define the anchor first"
        self.problems.append(Problem(self.name, line, col, "$", f"YAML syntax error: {shown(message, 120)[1:-1]}",
                                     hint))

    def _check_directive(self) -> None:
        # `%YAML 1.1` would switch the reader to YAML 1.1 rules (`on` a boolean, `0755` octal,
        # `1:20` a number): one meaning per file, so only 1.2 is accepted.
        for match in _YAML_DIRECTIVE.finditer(self.text):
            if match[1] != "1.2":
                line, col = _position(self.text, match.start())
                version = shown(match[1], 20)[1:-1]
                self.problems.append(Problem(self.name, line, col, "$",
                                             f"hkgen reads YAML 1.2, this file declares %YAML {version}",
                                             "delete the %YAML line"))
                raise ConfigError(self.problems)

    # -- events ---------------------------------------------------------------------------

    def _event(self, kind: str, event: Any) -> None:
        if kind in ("MappingEndEvent", "SequenceEndEvent"):
            self._end()
            return
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.kind == "map" and parent.pending is None and not parent.skip_value:
            self._key(parent, kind, event)
            return
        path, keep, weak = self._child_slot(parent)
        if kind == "AliasEvent":
            self._alias(event, path, keep, weak)
        elif kind == "ScalarEvent":
            self._scalar_event(event, path, keep, weak)
        else:
            self._start(kind, event, path, keep, weak)

    def _child_slot(self, parent: _Frame | None) -> tuple[PathKey, bool, bool]:
        """Path of the next value in `parent`, whether it is kept, and whether it is merge content."""
        if parent is None:
            return (), True, False
        if parent.kind == "seq":
            path = parent.path if parent.merge_list else (*parent.path, len(parent.items))
            return path, parent.keep, parent.weak
        if parent.skip_value:
            return parent.path, False, parent.weak
        assert parent.pending is not None  # noqa: S101 - a mapping with no pending key takes a key
        key, _mark, merge = parent.pending
        if merge:
            return parent.path, parent.keep, True
        return (*parent.path, key), parent.keep, parent.weak

    def _record(self, path: PathKey, mark: Any, *, weak: bool, is_key: bool = False) -> None:
        self.log.append((path, is_key, (mark.line + 1, mark.column + 1), weak))

    def _count(self, mark: Any, path: PathKey, size: int, *, alias: bool = False) -> None:
        self.expanded += size
        self.through_aliases = self.through_aliases or alias
        if self.expanded > MAX_NODES:
            if self.through_aliases:
                self._add(mark, path, f"the document expands to more than {MAX_NODES} values through aliases",
                          "aliases of aliases multiply; write the data out instead")
            else:
                self._add(mark, path, f"the document holds more than {MAX_NODES} values")
            raise _Fatal

    def _key(self, frame: _Frame, kind: str, event: Any) -> None:
        mark = event.start_mark
        if kind in ("MappingStartEvent", "SequenceStartEvent"):
            if frame.keep:
                self._add(mark, frame.path, "mapping keys must be plain strings")
            # Consume the key collection; its end makes the mapping skip the value that follows.
            self.stack.append(_Frame("map" if kind == "MappingStartEvent" else "seq", frame.path, mark,
                                     keep=False, is_key=True))
            return
        text: str
        merge = False
        if kind == "AliasEvent":
            anchor = self.anchors.get(event.anchor)
            if anchor is None or anchor.text is None:
                if frame.keep and anchor is None:
                    self._add(mark, frame.path, f"unknown alias {shown('*' + event.anchor)}", "define the anchor first")
                elif frame.keep:
                    self._add(mark, frame.path, "mapping keys must be plain strings")
                frame.skip_value = True
                return
            text = anchor.text
        else:
            tag = self._scalar_tag(event)
            if tag == f"{_CORE}merge":
                text, merge = "<<", True  # plain `<<` only: a quoted '<<' is an ordinary key
            elif tag[len(_CORE):] in _SCALAR_KINDS and tag.startswith(_CORE):
                # Keys are names here: `1: x`, `true: x`, `~: x` are taken as written.
                text = event.value
                if not self._is_text(mark, frame.path, text):
                    frame.skip_value = True
                    return
            else:
                if frame.keep:
                    self._add(mark, frame.path, "mapping keys must be plain strings")
                frame.skip_value = True
                return
            if event.anchor is not None:
                self.anchors[event.anchor] = _Anchor(text, 1, frame.path, (0, 0), text)
        child = (*frame.path, text)
        if not merge and frame.keep:
            if text in frame.first:
                prev = frame.first[text]
                self._add(mark, child, f"duplicate key {shown(text)} (first defined at line {prev.line + 1})",
                          "keep one of the two")
                frame.skip_value = True
                return
            frame.first[text] = mark
            self._record(child, mark, weak=frame.weak, is_key=True)
            end = event.end_mark.index if kind == "ScalarEvent" else mark.index
            self.spans.append((mark.index, end, child))
        frame.pending = (text, mark, merge)

    def _attach(self, parent: _Frame | None, value: Any, size: int) -> None:
        """Hand a finished value to its parent collection (or make it the document)."""
        if parent is None:
            self.root, self.root_set = value, True
            return
        parent.size += size
        if parent.kind == "seq":
            parent.items.append(value)
            return
        if parent.skip_value:
            parent.skip_value = False
            return
        assert parent.pending is not None  # noqa: S101 - a value always follows its key
        key, mark, merge = parent.pending
        parent.pending = None
        if not parent.keep:
            return
        if merge:
            sources = value if isinstance(value, list) and value is not None else [value]
            for source in sources:
                if isinstance(source, dict):
                    parent.merged.append(source)
                else:
                    self._add(mark, parent.path, "a merge key ('<<') takes a mapping or a list of mappings")
            return
        parent.items.append((key, value))

    def _is_text(self, mark: Any, path: PathKey, text: str) -> bool:
        # An escape such as "\ud800" yields a lone surrogate: not text, and no writer or YAML 1.1
        # reader (libyaml) can carry it on into a rendered file.
        found = _SURROGATE.search(text)
        if found:
            self._add(mark, path, f"unpaired surrogate U+{ord(found[0]):04X} (written as an escape) is not a character",
                      "delete the escape")
        return not found

    def _scalar_tag(self, event: Any) -> str:
        tag = event.tag
        if tag == "!":
            return f"{_CORE}str"  # the non-specific tag: a string, whatever it looks like
        if tag is None:
            from .yaml12 import resolve_plain  # parsing only: a cached document needs no resolver

            return resolve_plain(event.value, tuple(event.implicit))
        return str(tag)

    def _scalar_event(self, event: Any, path: PathKey, keep: bool, weak: bool) -> None:
        parent = self.stack[-1] if self.stack else None
        mark = event.start_mark
        self._count(mark, path, 1)
        if not keep:
            self._attach(parent, None, 1)
            return
        self._record(path, mark, weak=weak)
        self.spans.append((mark.index, event.end_mark.index, path))
        if parent is None and event.value == "" and event.tag is None and not event.style:
            self.root_empty = True
        tag = self._scalar_tag(event)
        value = self._convert(event, tag, path)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, 1, path, (len(self.log) - 1, len(self.log)),
                                                 event.value if tag == f"{_CORE}str" else None)
        self._attach(parent, value, 1)

    def _alias(self, event: Any, path: PathKey, keep: bool, weak: bool) -> None:
        parent = self.stack[-1] if self.stack else None
        mark = event.start_mark
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            self._add(mark, path, f"unknown alias {shown('*' + event.anchor)}", "define the anchor first")
            self._attach(parent, None, 1)
            return
        if anchor.open:
            self._add(mark, path, f"alias {shown('*' + event.anchor)} is used inside its own anchor",
                      "an alias cannot refer to the value that contains it")
            self._attach(parent, None, 1)
            return
        self._count(mark, path, anchor.size, alias=anchor.size > 1)
        if keep:
            # The alias's own position for its path; the anchor's inner positions, re-rooted.
            self._record(path, mark, weak=weak)
            cut = len(anchor.path)
            start, end = anchor.log
            for sub, is_key, pos, was_weak in self.log[start + 1:end]:
                self.log.append(((*path, *sub[cut:]), is_key, pos, weak or was_weak))
        self._attach(parent, anchor.value if keep else None, anchor.size)

    def _start(self, kind: str, event: Any, path: PathKey, keep: bool, weak: bool) -> None:
        mark = event.start_mark
        is_map = kind == "MappingStartEvent"
        self._count(mark, path, 1)
        frame = _Frame("map" if is_map else "seq", path, mark, keep=keep, weak=weak, log_start=len(self.log))
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.kind == "map" and parent.pending and parent.pending[2] and not is_map:
            frame.merge_list = True
        if len(self.stack) >= MAX_DEPTH:
            # Stop here: the YAML scanner slows down with every further level of nesting.
            self._add(mark, path, f"nested deeper than {MAX_DEPTH} levels", "flatten the structure")
            raise _Fatal
        tag = event.tag
        expected = f"{_CORE}{'map' if is_map else 'seq'}"
        if frame.keep and tag not in (None, "!", expected):
            self._add(mark, path, f"unsupported YAML tag {shown(_short_tag(tag))}", "remove the tag")
            frame.keep = False
        if frame.keep:
            self._record(path, mark, weak=weak)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(None, 0, path, (len(self.log) - 1, 0), None, open=True)
            frame.anchor = event.anchor
        self.stack.append(frame)

    def _end(self) -> None:
        frame = self.stack.pop()
        parent = self.stack[-1] if self.stack else None
        if frame.is_key:
            assert parent is not None  # noqa: S101 - a key collection always has its mapping
            parent.skip_value = True
            return
        value: Any = None
        if frame.keep:
            if frame.kind == "seq":
                value = frame.items
            else:
                value = dict(frame.items)
                for source in frame.merged:
                    for k, v in source.items():
                        value.setdefault(k, v)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = _Anchor(value, frame.size, frame.path, (frame.log_start, len(self.log)),
                                                 None)
        self._attach(parent, value, frame.size)

    # -- scalars --------------------------------------------------------------------------

    def _convert(self, event: Any, tag: str, path: PathKey) -> Any:
        text: str = event.value
        mark = event.start_mark
        if not tag.startswith(_CORE) or tag[len(_CORE):] not in (*_SCALAR_KINDS, "merge"):
            self._add(mark, path, f"unsupported YAML tag {shown(_short_tag(tag))}", "remove the tag")
            return None
        kind = tag[len(_CORE):]
        if kind in ("str", "timestamp", "merge"):
            return text if self._is_text(mark, path, text) else None
        if kind == "null":
            if text not in ("", "~", "null", "Null", "NULL"):
                self._add(mark, path, "a value tagged !!null must be empty, ~ or null")
            return None
        if kind == "bool":
            if text not in _BOOL:
                # Never echo the text: a mistagged value may be anything, a secret included.
                self._add(mark, path, "a value tagged !!bool must be true or false")
                return None
            return _BOOL[text]
        clean = text.replace("_", "")
        digits = clean.lstrip("+-")
        if len(digits) > MAX_DIGITS:
            self._add(mark, path, f"number with more than {MAX_DIGITS} digits", "no setting takes a number this long")
            return None
        if kind == "int":
            sign = -1 if clean.startswith("-") else 1
            try:
                if digits[:2] in ("0o", "0O"):
                    return sign * int(digits[2:], 8)
                if digits[:2] in ("0x", "0X"):
                    return sign * int(digits[2:], 16)
                if digits[:2] in ("0b", "0B"):
                    return sign * int(digits[2:], 2)
                if len(digits) > 1 and digits.startswith("0"):
                    # 0755 is octal to YAML 1.1 readers and decimal to 1.2 ones: refuse to guess.
                    # The number is not repeated: decrypted secrets files are read by this loader too.
                    self._add(mark, path, "number with a leading zero (octal to YAML 1.1 readers, decimal to 1.2)",
                              "drop the leading zero, or quote the value if it is text")
                    return None
                return sign * int(digits)
            except ValueError:
                self._add(mark, path, "a value tagged !!int must be a whole number")
                return None
        low = clean.lower().lstrip("+")
        if low in (".inf", "-.inf"):
            return float(low.replace(".", ""))
        if low == ".nan":
            return float("nan")
        try:
            return float(clean)
        except ValueError:
            self._add(mark, path, "a value tagged !!float must be a number")
            return None


def _short_tag(tag: str) -> str:
    return tag.replace(_CORE, "!!")


def _fast_loader() -> Any:
    """libyaml's parser with PyYAML's safe constructor, timestamps left as strings (as JSON Schema wants)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class GeneratedLoader(base):  # type: ignore[valid-type,misc]
        """Loader for files hkgen generated itself (trusted, already reparse-checked)."""

    GeneratedLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    return GeneratedLoader


_GENERATED_LOADER: Any = None


def load_generated(text: str, name: str) -> Document:
    """Load a YAML document hkgen rendered itself, fast (libyaml), with positions for messages.

    Only for hkgen's own output: user input goes through `load_text`, which refuses hostile YAML.
    """
    import yaml

    global _GENERATED_LOADER
    if _GENERATED_LOADER is None:
        _GENERATED_LOADER = _fast_loader()
    try:
        node = yaml.compose(text, Loader=_GENERATED_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {getattr(err, 'problem', err)}"
        raise ConfigError([Problem(name, line, col, "$", message)]) from None
    if node is None:
        raise ConfigError([Problem(name, 1, 1, "$", "file is empty")])
    data = _GENERATED_LOADER("").construct_document(node)
    # Positions are found again from the text when a problem needs one: keeping them (or the
    # node graph) for every file would cost ~1 MB per user-data of a 1,000-node cluster.
    return Document(name, data, locate=lambda: _positions(yaml.compose(text, Loader=_GENERATED_LOADER)))


def _positions(node: Any) -> tuple[dict[PathKey, tuple[int, int]], dict[PathKey, tuple[int, int]]]:
    """(value positions, key positions) of a composed YAML node graph, 1-based."""
    import yaml

    values: dict[PathKey, tuple[int, int]] = {}
    keys: dict[PathKey, tuple[int, int]] = {}
    stack: list[tuple[Any, PathKey]] = [(node, ())]
    while stack:
        current, path = stack.pop()
        values[path] = (current.start_mark.line + 1, current.start_mark.column + 1)
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                child = (*path, str(key_node.value))
                keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                stack.append((value_node, child))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(current.value))
    return values, keys


def load_generated_all(text: str) -> list[Any]:
    """All documents of a multi-document YAML stream hkgen or kustomize produced, as plain data."""
    import yaml

    global _GENERATED_LOADER
    if _GENERATED_LOADER is None:
        _GENERATED_LOADER = _fast_loader()
    return list(yaml.load_all(text, Loader=_GENERATED_LOADER))
