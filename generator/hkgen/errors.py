"""The one error hierarchy of hkgen and the located `Problem` every stage reports.

Only the CLI turns these into output and exit codes: `HkgenError.exit_code` says which.
Anything that is not an `HkgenError` escaping to the CLI is a bug in hkgen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

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
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One located finding: `FILE:LINE:COL: $.json.path: message (hint: ...)`.

    Fields are ordered so that sorting a list of problems sorts them by position.
    Lines and columns are 1-based; 0 means "the file as a whole".
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
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {level}{self.message}{hint}"


class HkgenError(Exception):
    """Base of every error hkgen raises on purpose; the CLI prints it without a traceback."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The lines the CLI prints for this error."""
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
