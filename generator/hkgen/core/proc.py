"""The only module that runs other programs or processes: argv lists, a minimal environment,
timeouts, and `fork_call` (a pure function computed in a forked copy of hkgen, on another core).

Never `shell=True`. Each program runs in its own process group; a timeout kills the group and
becomes a `ToolError`, as does a missing program; a non-zero exit is returned to the caller, who knows what it means.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import ToolError

__all__ = ["Completed", "Forked", "find", "fork_call", "run"]

T = TypeVar("T")

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
    """Run `argv` and capture its output; raise `ToolError` if it cannot start or times out.

    The program runs in a session (and process group) of its own: on a timeout, or when hkgen
    itself is interrupted, the whole group is killed, so no child the tool started keeps running
    (or keeps our pipes open). A tool never reads hkgen's own stdin.
    """
    args = tuple(str(a) for a in argv)
    if not args:
        raise ValueError("empty argv")
    try:
        proc = subprocess.Popen(
            args, cwd=cwd, env=_environment(env), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
    except FileNotFoundError as err:
        raise ToolError(f"{args[0]}: program not found on PATH") from err
    except OSError as err:
        raise ToolError(f"`{shlex.join(args)}` could not start: {err.strerror}") from err
    try:
        stdout, stderr = proc.communicate(stdin, timeout=max(timeout, 0.001))
    except subprocess.TimeoutExpired as err:
        _kill_group(proc)
        raise ToolError(f"`{shlex.join(args)}` did not finish within {timeout:g} s and was stopped") from err
    except BaseException:
        _kill_group(proc)
        raise
    return Completed(args, proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the process group `proc` leads (itself and every child it started), then reap it."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    proc.wait()


class Forked(Generic[T]):
    """`fn(*args)` running in a forked copy of this process; `result()` collects it.

    The child only computes and sends back the pickled result: it writes no file and prints
    nothing. If it fails in any way (an exception, a signal, no memory), `result()` computes
    `fn(*args)` here instead, so an error surfaces exactly as it would without the fork.
    """

    def __init__(self, pid: int, fd: int, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._pid, self._fd, self._fn, self._args = pid, fd, fn, args
        self._reaped = False

    def result(self) -> T:
        """Wait for the child; its result, or `fn(*args)` computed here if it failed."""
        chunks = []
        try:
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            _pid, status = os.waitpid(self._pid, 0)
            self._reaped = True
        if os.waitstatus_to_exitcode(status) == 0 and chunks:
            value: T = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child's bytes
            return value
        return self._fn(*self._args)

    def cancel(self) -> None:
        """Stop the child (when the caller gives up on the result, e.g. on an error or Ctrl-C)."""
        if self._reaped:  # its pid may belong to another process by now
            return
        self._reaped = True
        with contextlib.suppress(OSError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        with contextlib.suppress(OSError):
            os.waitpid(self._pid, 0)


def fork_call(fn: Callable[..., T], *args: Any) -> Forked[T] | None:
    """Start `fn(*args)` in a forked child; None where that is not safe or possible.

    Only a pure function whose result pickles may be passed. Forking is refused while other
    threads run (a lock one of them holds would stay locked in the child forever) and outside
    Linux (macOS system libraries are not fork-safe, Windows has no fork); the caller then calls
    `fn` itself.
    """
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without running any cleanup of the parent
        code = 1
        try:
            os.close(read_end)
            payload = pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view):]
            code = 0
        except BaseException:  # any failure: the parent computes it again
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    return Forked(pid, read_end, fn, args)
