"""The only module that runs other programs: argv lists, a minimal environment, timeouts.

Never `shell=True`. A timeout kills the child (subprocess.run does) and becomes a `ToolError`,
as does a missing program; a non-zero exit is returned to the caller, who knows what it means.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolError

__all__ = ["Completed", "find", "run"]

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Completed:
    """A finished program run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def command(self) -> str:
        """The command line, shell-quoted, for messages."""
        return shlex.join(self.argv)

    def tail(self, lines: int = 20) -> str:
        """The last lines of stderr (or stdout), for error messages."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return "\n".join(text[-lines:])


def find(program: str) -> str | None:
    """Absolute path of `program` on PATH, or None."""
    return shutil.which(program)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Tools get only what they need; HOME is kept so git/sops find their own config
    # when the user wants that, and callers pass overrides (e.g. a temp HOME in tests).
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY",
            "GIT_SSH_COMMAND", "SSH_AUTH_SOCK", "KUBECONFIG", "XDG_CONFIG_HOME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None, stdin: str | None = None) -> Completed:
    """Run `argv` and capture its output; raise `ToolError` if it cannot start or times out."""
    args = tuple(str(a) for a in argv)
    if not args:
        raise ValueError("empty argv")
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=_environment(env), input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except FileNotFoundError as err:
        raise ToolError(f"{args[0]}: program not found on PATH") from err
    except subprocess.TimeoutExpired as err:
        raise ToolError(f"`{shlex.join(args)}` did not finish within {timeout:g} s and was stopped") from err
    except OSError as err:
        raise ToolError(f"`{shlex.join(args)}` could not start: {err.strerror}") from err
    return Completed(args, proc.returncode, proc.stdout, proc.stderr)
