"""`hkgen validate` on the example corpus in tests/cases/: exact messages, exit codes, nothing written.

An invalid case is `invalid/<name>.yaml` with `invalid/<name>.expected` (the exact lines
`hkgen validate` prints on stdout, paths relative to the case folder), or a folder
`invalid/<name>/` holding `cluster.yaml` (and whatever else the case needs, such as a secrets
file) plus `expected`. A valid case is `valid/<name>.yaml` with `valid/<name>.expected` (its
warnings, often none). Valid cases get a real SOPS-encrypted secrets file at test time, encrypted
with the real `sops` binary to the recipients the case lists (only public keys: no private key
exists anywhere). Every case is copied under tmp_path and checked twice: through the CLI's
`main()` in-process (its own exit code and stdout), and in one real `python -m hkgen validate`
process over the whole corpus (same lines, no traceback). Neither may touch the case's files.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import os
import re
import secrets as rnd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hkgen.config.load import load_file
from hkgen.config.secrets import SecretKey, required_keys, sops_command
from hkgen.core.yamlio import dump
from hkgen.ops.scaffold import _generate
from hkgen.validation.validate import validate_document

CASES = Path(__file__).resolve().parent / "cases"
REPO = CASES.parents[1]
INVALID = CASES / "invalid"
VALID = CASES / "valid"
# The folder cases: paths and secrets files need more than one file (or a folder) to show.
INVALID_FOLDERS = sorted(p.name for p in INVALID.iterdir() if p.is_dir())
INVALID_FILES = sorted(p.stem for p in INVALID.glob("*.yaml"))
VALID_FILES = sorted(p.stem for p in VALID.glob("*.yaml"))


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` with its kind, size, mtime and content hash."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(folder))] = f"{info.st_mode:o} {info.st_size} {info.st_mtime_ns} {digest}"
    return out


def _secret_value(key: SecretKey, taken: set[str]) -> str:
    """hkgen's own generator; a value a user must bring (S3, Wi-Fi) is a random URL-safe string."""
    value = _generate(key, taken) or rnd.token_urlsafe(18)
    assert re.match(key.pattern, value), (key.name, key.pattern)
    return value


def write_encrypted_secrets(cluster_file: Path) -> None:
    """Put next to `cluster_file` a secrets file holding every key it requires, encrypted with the
    real sops to the age recipients the file lists (public keys only)."""
    result = validate_document(load_file(cluster_file))
    assert result.cluster is not None, [p.format() for p in result.errors]
    from hkgen.ops.pki import DERIVED, derive  # the CA pair and the login hash, made from the others

    values: dict[str, str] = {}
    needs = required_keys(result.cluster)
    for need in needs:
        if need.name not in DERIVED:
            values[need.name] = _secret_value(need, set(values.values()))
    values.update(derive(result.cluster, {n.name for n in needs} & DERIVED, values))
    plain = cluster_file.parent.parent / f"{cluster_file.stem}.plain.yaml"
    plain.write_text(dump({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "cluster-secrets", "namespace": "flux-system"},
                           "type": "Opaque", "stringData": values}))
    done = subprocess.run(
        [sops_command(), "--disable-version-check", "--encrypt", "--age", ",".join(result.cluster.age_recipients),
         "--encrypted-regex", "^(data|stringData)$", "--input-type", "yaml", "--output-type", "yaml", str(plain)],
        capture_output=True, text=True, check=False, timeout=60,
    )
    plain.unlink()
    assert done.returncode == 0, done.stderr
    (cluster_file.parent / result.cluster.secrets_file).write_text(done.stdout)


@dataclass(frozen=True)
class Staged:
    """A case copied under tmp: its folder, the PATH argument, and the folder's state before any run."""

    folder: Path
    path: Path
    before: dict[str, str]


def _stage(kind: str, name: str, root: Path) -> Staged:
    dest = root / kind / name
    if kind == "invalid" and name in INVALID_FOLDERS:
        shutil.copytree(INVALID / name, dest, symlinks=True, ignore=shutil.ignore_patterns("expected"))
        return Staged(dest, dest, _snapshot(dest))
    dest.mkdir(parents=True)
    if kind == "reference":
        for file in ("cluster.yaml", "secrets.sops.yaml"):
            shutil.copy2(REPO / "clusters" / "home" / file, dest / file)
        return Staged(dest, dest, _snapshot(dest))
    source = (INVALID if kind == "invalid" else VALID) / f"{name}.yaml"
    shutil.copy2(source, dest / source.name)
    if kind == "valid":
        write_encrypted_secrets(dest / source.name)
    return Staged(dest, dest / source.name, _snapshot(dest))


@dataclass(frozen=True)
class Batch:
    """One run of the real `python -m hkgen validate` on many staged cases at once."""

    returncode: int
    stdout: dict[Path, list[str]]  # case folder -> its lines, paths made relative to the folder
    status: dict[Path, str]  # case folder -> its status line on stderr ("valid ..." / "invalid ...")
    stderr: str


@pytest.fixture(scope="module")
def staged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Staged]:
    """Every case selected in this session, copied under tmp (valid ones with their secrets file)."""
    wanted = sorted({tuple(item.callspec.params["case"]) for item in request.session.items
                     if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), tuple)})
    if not wanted:  # e.g. only test_batch_exit_code selected: run the whole corpus
        wanted = [("invalid", n) for n in INVALID_FILES + INVALID_FOLDERS] + [("valid", n) for n in VALID_FILES]
    root = tmp_path_factory.mktemp("cases")
    return {case: _stage(case[0], case[1], root) for case in wanted}


@pytest.fixture(scope="module")
def batch(staged: dict[tuple[str, str], Staged]) -> Batch:
    """All staged cases (but the one that stops at a usage error) through one real CLI process.

    One process instead of one per case keeps the corpus fast; each case's exit code is checked
    in-process through the same `main()` below.
    """
    cases = {case: st for case, st in staged.items() if case[1] != "cluster-file-is-a-directory"}
    root = next(iter(staged.values())).folder.parents[1] if staged else Path()
    args = [str(st.path.relative_to(root)) for st in cases.values()]
    done = subprocess.run([sys.executable, "-m", "hkgen", "validate", *args], cwd=root, capture_output=True,
                          text=True, timeout=300, check=False, env=dict(os.environ))
    stdout: dict[Path, list[str]] = {st.folder: [] for st in cases.values()}
    status: dict[Path, str] = {}
    folders = sorted(stdout, key=lambda f: -len(str(f)))
    for line in done.stdout.splitlines():
        folder = next(f for f in folders if line.startswith(f"{f.relative_to(root)}/"))
        stdout[folder].append(line.replace(f"{folder.relative_to(root)}/", ""))
    for line in done.stderr.splitlines():
        for folder in folders:
            if line.startswith(f"{folder.relative_to(root)}"):
                status[folder] = line.rsplit(": ", 1)[-1]
                break
    return Batch(done.returncode, stdout, status, done.stderr)


def _main(staged: Staged) -> tuple[int, list[str], str]:
    """`hkgen validate PATH` through the CLI's own `main()`, in-process: exit code, stdout lines
    (the case folder's absolute path made relative), stderr."""
    from hkgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(staged.path)])
    lines = [line.replace(f"{staged.folder}/", "") for line in out.getvalue().splitlines()]
    return code, lines, err.getvalue()


def _expected(kind: str, name: str) -> list[str]:
    if kind == "invalid" and name in INVALID_FOLDERS:
        return (INVALID / name / "expected").read_text().splitlines()
    return ((INVALID if kind == "invalid" else VALID) / f"{name}.expected").read_text().splitlines()


@pytest.mark.parametrize("case", [("invalid", n) for n in INVALID_FILES] + [("invalid", n) for n in INVALID_FOLDERS],
                         ids=lambda c: c[1])
def test_invalid_case(case: tuple[str, str], staged: dict[tuple[str, str], Staged], batch: Batch) -> None:
    st = staged[case]
    code, lines, err = _main(st)
    assert code == 1, "\n".join(lines) + err
    assert lines == _expected(*case)
    assert "Traceback" not in err
    if case[1] != "cluster-file-is-a-directory":
        # The same lines from the real `python -m hkgen validate` process.
        assert batch.stdout[st.folder] == _expected(*case)
        assert batch.status[st.folder].startswith("invalid"), batch.stderr
        assert "Traceback" not in batch.stderr
    assert _snapshot(st.folder) == st.before, "validate wrote, changed or removed a file"


@pytest.mark.parametrize("case", [("valid", n) for n in VALID_FILES], ids=lambda c: c[1])
def test_valid_case(case: tuple[str, str], staged: dict[tuple[str, str], Staged], batch: Batch) -> None:
    st = staged[case]
    code, lines, err = _main(st)
    assert code == 0, "\n".join(lines) + err
    assert lines == _expected(*case)
    assert all(": warning: " in line for line in lines)
    assert batch.stdout[st.folder] == _expected(*case)
    assert batch.status[st.folder].startswith("valid"), batch.stderr
    assert _snapshot(st.folder) == st.before, "validate wrote, changed or removed a file"


@pytest.mark.parametrize("case", [("reference", "home")], ids=lambda c: c[1])
def test_reference_cluster(case: tuple[str, str], staged: dict[tuple[str, str], Staged], batch: Batch) -> None:
    """The committed reference cluster with its committed secrets file: valid, warnings only."""
    st = staged[case]
    code, lines, err = _main(st)
    assert code == 0, "\n".join(lines) + err
    assert all(re.match(r"^cluster\.yaml:\d+:\d+: \$\S*: warning: ", line) for line in lines)
    assert batch.stdout[st.folder] == lines
    assert batch.status[st.folder].startswith("valid")
    assert _snapshot(st.folder) == st.before


def test_batch_exit_code(batch: Batch) -> None:
    """The real process judged the whole corpus without crashing: 1 (some files are invalid)."""
    assert batch.returncode == 1, batch.stderr[-2000:]
    assert "Traceback" not in batch.stderr and "internal error" not in batch.stderr


def test_every_case_has_its_expectation() -> None:
    """No case without expected lines, no expectation without its case, and enough cases."""
    for folder, names in ((INVALID, INVALID_FILES), (VALID, VALID_FILES)):
        assert sorted(p.stem for p in folder.glob("*.expected")) == names
    for name in INVALID_FOLDERS:
        assert (INVALID / name / "expected").is_file(), name
    assert len(INVALID_FILES) + len(INVALID_FOLDERS) >= 40
    assert len(VALID_FILES) >= 10


# --- every rule of the validator is exercised by a case -----------------------------------------


def _rule_calls() -> dict[tuple[int, int], str]:
    """Source line ranges of every `self.err(...)`/`self.warn(...)` call in validate._Checks."""
    import hkgen.validation.validate as module

    tree = ast.parse(Path(module.__file__).read_text())
    checks = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Checks")
    calls: dict[tuple[int, int], str] = {}
    for node in ast.walk(checks):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("err", "warn") and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self"):
            assert node.end_lineno is not None
            calls[(node.lineno, node.end_lineno)] = ast.unparse(node.args[1])[:70] if len(node.args) > 1 else "?"
    return calls


def _cluster_files() -> Iterator[Path]:
    yield from sorted(INVALID.glob("*.yaml"))
    yield from sorted(VALID.glob("*.yaml"))
    for name in INVALID_FOLDERS:
        if (INVALID / name / "cluster.yaml").is_file():
            yield INVALID / name / "cluster.yaml"


def test_every_semantic_rule_has_a_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the validator in-process over the corpus and record which rule call sites fired: a rule
    added to validate.py without an example case fails here, naming the rule."""
    import hkgen.validation.validate as module
    from hkgen.core.errors import ConfigError

    fired: set[int] = set()

    def recorder(original: Callable[..., None]) -> Callable[..., None]:
        def record(self: object, *args: object, **kwargs: object) -> None:
            fired.add(sys._getframe(1).f_lineno)
            original(self, *args, **kwargs)
        return record

    monkeypatch.setattr(module._Checks, "err", recorder(module._Checks.err))
    monkeypatch.setattr(module._Checks, "warn", recorder(module._Checks.warn))
    for path in _cluster_files():
        with contextlib.suppress(ConfigError):
            validate_document(load_file(path))
    missing = [text for (start, end), text in sorted(_rule_calls().items())
               if not any(start <= line <= end for line in fired)]
    assert not missing, f"rules without an example case in tests/cases: {missing}"
