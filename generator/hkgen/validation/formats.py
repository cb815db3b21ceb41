"""Machine forms of located problems, for CI and editors (`hkgen validate --format`).

- `github`: GitHub Actions workflow commands, `::error file=F,line=L,col=C,title=PATH::MESSAGE`,
  which annotate the line in the pull request (Forgejo/Gitea Actions print them in the log);
  values are escaped as the runner expects (`%`, CR, LF; also `:` and `,` in properties).
- `json`: one document for the whole run: every cluster file, whether it is valid, its problems.
Positions are 1-based (a problem about a whole file points at 1:1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import Problem

__all__ = ["FORMATS", "FileResult", "github_line", "json_document"]

FORMATS = ("text", "json", "github")


@dataclass(frozen=True)
class FileResult:
    """The problems found in one cluster file."""

    file: str
    problems: Sequence[Problem]

    @property
    def valid(self) -> bool:
        """True when no problem is an error."""
        return not any(p.severity == "error" for p in self.problems)


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(problem: Problem) -> str:
    """One GitHub Actions annotation for `problem`."""
    level = "warning" if problem.severity == "warning" else "error"
    message = problem.message + (f" (hint: {problem.hint})" if problem.hint else "")
    props = (f"file={_property(problem.file)},line={max(problem.line, 1)},col={max(problem.col, 1)},"
             f"title={_property(problem.path)}")
    return f"::{level} {props}::{_data(problem.path + ': ' + message)}"


def json_document(results: Sequence[FileResult]) -> str:
    """The whole run as one JSON document."""
    return json.dumps({"valid": all(r.valid for r in results), "files": [
        {"file": r.file, "valid": r.valid, "problems": [
            {"file": p.file, "line": max(p.line, 1), "col": max(p.col, 1), "path": p.path,
             "severity": p.severity, "message": p.message, "hint": p.hint} for p in r.problems]}
        for r in results]}, indent=2, sort_keys=True)
