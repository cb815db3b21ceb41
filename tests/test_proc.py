"""proc.fork_call: a pure function computed in a forked child, with the parent as the fallback."""

from __future__ import annotations

import os
import threading
import time

import pytest

from hkgen.core import proc
from hkgen.core.errors import Problem

PARENT = os.getpid()


def _pid_and_problems(n: int) -> tuple[int, list[Problem]]:
    return os.getpid(), [Problem("f", i, 1, "$", f"problem {i}") for i in range(n)]


def _fails_in_child() -> str:
    if os.getpid() != PARENT:
        raise RuntimeError("only in the child")
    return "computed by the parent"


def _fails_everywhere() -> None:
    raise ValueError("a real bug")


def _dies_in_child() -> str:
    if os.getpid() != PARENT:
        os.kill(os.getpid(), 9)
    return "computed by the parent"


def _sleeps() -> None:
    time.sleep(60)


def test_the_result_is_computed_in_a_child_and_comes_back_whole() -> None:
    child = proc.fork_call(_pid_and_problems, 5000)
    assert child is not None
    pid, problems = child.result()
    assert pid != PARENT  # it ran elsewhere
    assert problems == _pid_and_problems(5000)[1]  # ~300 KB through the pipe, intact


@pytest.mark.parametrize("fn", [_fails_in_child, _dies_in_child])
def test_a_failing_child_is_replaced_by_the_parent(fn) -> None:
    child = proc.fork_call(fn)
    assert child is not None
    assert child.result() == "computed by the parent"


def test_an_error_of_the_function_itself_surfaces_as_without_the_fork() -> None:
    child = proc.fork_call(_fails_everywhere)
    assert child is not None
    with pytest.raises(ValueError, match="a real bug"):
        child.result()


def test_cancel_stops_the_child() -> None:
    child = proc.fork_call(_sleeps)
    assert child is not None
    pid = child._pid
    start = time.monotonic()
    child.cancel()
    assert time.monotonic() - start < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind
    child.cancel()  # a second cancel does nothing (the pid may be someone else's by now)


def test_no_fork_while_other_threads_run() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert proc.fork_call(_pid_and_problems, 1) is None
    finally:
        stop.set()
        worker.join()


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_no_fork_outside_linux(monkeypatch, platform: str) -> None:
    monkeypatch.setattr(proc.sys, "platform", platform)
    assert proc.fork_call(_pid_and_problems, 1) is None
