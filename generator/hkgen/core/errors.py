"""The one error hierarchy of hkgen and the located `Problem` every stage reports.

Only the CLI turns these into output and exit codes: `HkgenError.exit_code` says which.
Anything that is not an `HkgenError` escaping to the CLI is a bug in hkgen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "HkgenError",
    "Problem",
    "ProblemsError",
    "RenderError",
    "Severity",
    "ToolError",
    "UsageError",
    "VerifyError",
    "WriteError",
    "printable",
    "shown",
]

Severity = Literal["error", "warning"]

# Characters that would break a message over lines, reorder it on screen or fail to encode:
# C0/C1 controls, line and paragraph separators, BOM, bidirectional overrides, lone surrogates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Return `text` with every control character escaped, so it prints as one readable line."""
    return _UNPRINTABLE.sub(_escape, text)


def shown(value: Any, limit: int = 60) -> str:
    """Return a value as a message shows it: quoted, escaped and cut to about `limit` characters.

    Strings are single-quoted with control characters escaped (a message stays one line whatever
    the file holds); mappings and lists are named, not dumped; huge numbers are not spelled out.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 160:
        return "a number with more than 48 digits"
    if not isinstance(value, str):
        return printable(str(value))[:limit]
    text = printable(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'"


@dataclass(frozen=True, order=True)
class Problem:
    """One located finding: `FILE:LINE:COL: $.json.path: message (hint: ...)`.

    Fields are ordered so that sorting a list of problems sorts them by position.
    Lines and columns are 1-based; 0 means "the file as a whole", which prints as 1:1 (the file's
    start): every position hkgen prints is one an editor or a CI annotation can place.
    """

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = field(default="", compare=False)
    severity: Severity = field(default="error", compare=False)

    def format(self) -> str:
        """Render the problem as one line, the form every hkgen command prints."""
        level = "warning: " if self.severity == "warning" else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        # Escaped once more here: whatever a stage put in a problem, it prints as one line.
        line, col = max(self.line, 1), max(self.col, 1)
        return printable(f"{self.file}:{line}:{col}: {self.path}: {level}{self.message}{hint}")


class HkgenError(Exception):
    """Base of every error hkgen raises on purpose; the CLI prints it without a traceback."""

    exit_code = 1

    def lines(self) -> list[str]:
        """Return the lines the CLI prints for this error."""
        return [str(self)]


class UsageError(HkgenError):
    """The command line itself is wrong (missing path, conflicting flags)."""

    exit_code = 2


class ProblemsError(HkgenError):
    """An error that carries located problems, all of them, sorted."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(p.format() for p in self.problems))

    def lines(self) -> list[str]:
        """Return one formatted line per problem, sorted by position."""
        return [p.format() for p in self.problems]


class ConfigError(ProblemsError):
    """The cluster file (or a file it refers to) is invalid."""


class RenderError(ProblemsError):
    """A template failed to render; problems name the template and the output path."""


class VerifyError(ProblemsError):
    """A rendered file failed verification (reparse, kustomize build or schema check)."""


class ToolError(HkgenError):
    """An external tool (kustomize, kubectl, git, sops) is missing, failed or timed out."""

    exit_code = 3


class WriteError(HkgenError):
    """The rendered tree could not be written safely (edited file, escaping path, I/O)."""
