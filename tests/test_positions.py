"""Every position hkgen shows is 1-based: a problem about a whole file (stored as 0:0) prints,
annotates and serialises as 1:1, never 0:0 (which editors and GitHub annotations cannot place)."""

from __future__ import annotations

from pathlib import Path

from hkgen.commands.verify_charts import _json
from hkgen.config.load import MAX_BYTES
from hkgen.core.errors import Problem
from hkgen.validation.formats import FileResult, github_line, json_document
from hkgen.verify.charts import Report

WHOLE = Problem("big.yaml", 0, 0, "$", f"file is larger than {MAX_BYTES} bytes")


def test_a_whole_file_problem_is_at_1_1_in_every_form() -> None:
    assert WHOLE.format().startswith("big.yaml:1:1: $: ")
    assert github_line(WHOLE).startswith("::error file=big.yaml,line=1,col=1,")
    assert '"line": 1' in json_document([FileResult("big.yaml", [WHOLE])])
    (problem,) = _json(Report((), (WHOLE,)), "1.34")["problems"]
    assert (problem["line"], problem["col"]) == (1, 1)


def test_a_too_large_file_is_reported_at_1_1_by_the_cli(hkgen, tmp_path: Path) -> None:
    big = tmp_path / "cluster.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    done = hkgen("validate", str(big))
    assert done.returncode == 1
    assert f"{big}:1:1: $: file is larger than {MAX_BYTES} bytes" in done.stdout
    assert ":0:0:" not in done.stdout + done.stderr
