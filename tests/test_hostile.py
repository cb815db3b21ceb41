"""Must-fail corpus: hostile cluster files, each refused with a located message and nothing else.

Every case starts from the reference cluster (`clusters/home`: cluster.yaml plus its encrypted
secrets file) copied under tmp_path and spoils it one way: names that are paths (`../x`), line
breaks and YAML injected into strings, `on`/`no`/`1:20` where booleans or times belong, C0 and C1
control characters (U+0085 too), 10,000-character strings, deep nesting, duplicate keys, alias
bombs, executable and unknown tags, bytes that are not UTF-8, a BOM, an empty file, a directory
or a FIFO where the file belongs. Most are data edits of the reference written back with hkgen's
own YAML writer (so the file is well-formed and only the edited value is wrong); the rest edit
the text or the bytes. For each: exit code 1 from the CLI's `main()`, at least one
`FILE:LINE:COL: $...` line naming the spoiled part, no traceback, no raw control character or
overlong line in the output, and the folder exactly as it was. The whole corpus then goes through
one real `python -m hkgen validate` process as well.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from hkgen.config.load import load_file
from hkgen.core.yamlio import dump

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / "clusters" / "home"
REFERENCE: dict[str, Any] = load_file(HOME / "cluster.yaml").data
TEXT = (HOME / "cluster.yaml").read_text()
LONG = "x" * 10_000
# Output must never carry a raw control character: a message is one line, and an ESC or CSI
# copied from a hostile file could drive the user's terminal.
_RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Case:
    """One hostile cluster folder: how to spoil it and which JSON path the message must name."""

    id: str
    spoil: Callable[[Path], None]  # gets the cluster folder (cluster.yaml + secrets.sops.yaml)
    path: str = "$"  # a reported line must name this path or one below it


def _data(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """Spoil by editing the reference data and writing it back with hkgen's YAML writer."""

    def spoil(folder: Path) -> None:
        data = copy.deepcopy(REFERENCE)
        edit(data)
        (folder / "cluster.yaml").write_text(dump(data))

    return spoil


def _text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        text = edit(TEXT)
        assert text != TEXT, "the edit did not apply: the reference cluster changed"
        (folder / "cluster.yaml").write_text(text)

    return spoil


def _bytes(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        raw = edit(TEXT.encode())
        assert raw != TEXT.encode(), "the edit did not apply: the reference cluster changed"
        (folder / "cluster.yaml").write_bytes(raw)

    return spoil


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
        target[path[-1]] = value

    return edit


def _json(path: tuple[str | int, ...]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if re.fullmatch(r"[A-Za-z_][\w-]*", part) else ""
    return out


def _value_cases(prefix: str, paths: list[tuple[str | int, ...]], values: dict[str, Any]) -> list[Case]:
    return [Case(f"{prefix}-{vid}-{_json(p)[2:]}", _data(_set(p, v)), _json(p))
            for vid, v in values.items() for p in paths]


def _replace_line(pattern: str, new: str) -> Callable[[str], str]:
    """Replace the first line matching `pattern` (a regex over one line) with `new`."""
    return lambda text: re.sub(pattern, lambda _m: new, text, count=1, flags=re.M)


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


def _bomb(levels: int = 9) -> str:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _fifo(folder: Path) -> None:
    (folder / "cluster.yaml").unlink()
    os.mkfifo(folder / "cluster.yaml")


def _device(folder: Path) -> None:
    (folder / "cluster.yaml").unlink()
    (folder / "cluster.yaml").symlink_to("/dev/zero")


def _directory(name: str) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()
        (folder / name / "note").write_text("a folder where the file belongs\n")

    return spoil


NAME_PATHS: list[tuple[str | int, ...]] = [
    ("cluster", "name"), ("nodes", 0, "hostname"), ("satellites", 0, "hostname"),
    ("zigbee", "networks", 1, "name"), ("nodes", 3, "usbDevices", 0, "name"), ("secrets", "file"),
]
TRAVERSAL = {"dotdot-x": "../x", "a-dotdot-b": "a/../b", "absolute": "/etc/passwd", "dot": ".", "backslash": "x\\y"}
INJECTION = {
    "newline-key": "cp1\nrole: worker",
    "comment": "cp1 # worker",
    "flow": "{role: worker}",
    "document": "x\n---\nversion: 2",
    "alias": "*anchor",
    "tag": "!!python/object:os.system",
    "quote": "cp1\"\nrole: \"worker",
}
CONTROL = {f"U+{ord(c):04X}": f"Pi{c}rack" for c in "\x00\x07\x1b\x7f\x85\x9b\u2028\u2029"}

CASES: list[Case] = [
    # --- names that are paths ---------------------------------------------------------------
    *_value_cases("traversal", NAME_PATHS, TRAVERSAL),
    Case("traversal-data-path", _data(_set(("storage", "longhorn", "dataPath"), "/var/lib/longhorn/../../etc")),
         "$.storage.longhorn.dataPath"),
    Case("traversal-backup-prefix", _data(_set(("storage", "backup", "s3", "prefix"), "../other-cluster")),
         "$.storage.backup.s3.prefix"),
    Case("traversal-disk-id", _data(_set(("nodes", 0, "disks", 0, "id"), "../../sda")), "$.nodes[0].disks[0].id"),
    Case("traversal-branch", _data(_set(("gitops", "repository", "branch"), "-x/../../main")),
         "$.gitops.repository.branch"),
    # --- line breaks and YAML injected into strings --------------------------------------------
    *_value_cases("inject", [("nodes", 0, "hostname"), ("cluster", "domain")], INJECTION),
    Case("inject-description", _data(_set(("cluster", "description"), "ok\nnodes: []")), "$.cluster.description"),
    Case("inject-ssid", _data(_set(("nodes", 8, "wifi", "ssid"), "home\"\npsk: \"x")), "$.nodes[8].wifi.ssid"),
    Case("inject-ssh-key", _data(_set(("os", "admins", 0, "sshKeys", 0),
                                      "ssh-ed25519 AAAA ops\nssh-rsa BBBB attacker")), "$.os.admins[0].sshKeys[0]"),
    Case("inject-raw-text", _text(_replace_line(r"^  name: home\b.*$", "  name: home\n  name: evil")),
         "$.cluster.name"),
    # --- YAML 1.1 look-alikes: on/no/yes/1:20 and unquoted versions ------------------------------
    Case("yaml11-on", _text(_replace_line(r"^(    schedulable: )true", "    schedulable: on")),
         "$.nodes[0].schedulable"),
    Case("yaml11-no", _data(_set(("os", "upgrades", "enabled"), "no")), "$.os.upgrades.enabled"),
    Case("yaml11-yes", _data(_set(("apps", "home-assistant", "hostNetwork"), "yes")),
         "$.apps.home-assistant.hostNetwork"),
    Case("yaml11-off", _data(_set(("apps", "monitoring", "thanos"), "off")), "$.apps.monitoring.thanos"),
    Case("yaml11-y", _data(_set(("os", "energy", "disableHdmi"), "y")), "$.os.energy.disableHdmi"),
    Case("yaml11-sexagesimal", _data(_set(("os", "upgrades", "rebootTime"), "1:20")), "$.os.upgrades.rebootTime"),
    Case("yaml11-sexagesimal-raw", _text(_replace_line(r"^    rebootTime: .*$", "    rebootTime: 1:20")),
         "$.os.upgrades.rebootTime"),
    Case("yaml11-octal", _text(_replace_line(r"^    staggerMinutes: .*$", "    staggerMinutes: 030")),
         "$.os.upgrades.staggerMinutes"),
    Case("yaml11-directive", _text(lambda t: "%YAML 1.1\n---\n" + t), "$"),
    Case("unquoted-release", _text(_replace_line(r"^  release: .*$", "  release: 24.04")), "$.os.release"),
    Case("string-version", _data(_set(("version",), "1")), "$.version"),
    Case("float-version", _data(_set(("version",), 1.0)), "$.version"),
    Case("float-port", _data(_set(("satellites", 0, "serialDevices", 0, "port"), 6638.0)),
         "$.satellites[0].serialDevices[0].port"),
    Case("nan-replicas", _data(_set(("storage", "longhorn", "replicas"), float("nan"))), "$.storage.longhorn.replicas"),
    Case("inf-size", _data(_set(("nodes", 0, "disks", 0, "sizeGB"), float("inf"))), "$.nodes[0].disks[0].sizeGB"),
    Case("huge-number", _text(_replace_line(r"^    replicas: .*$", "    replicas: " + "9" * 5000)),
         "$.storage.longhorn.replicas"),
    Case("bool-name", _data(_set(("cluster", "name"), True)), "$.cluster.name"),
    Case("null-required", _data(_set(("network", "lan"), None)), "$.network.lan"),
    Case("list-for-mapping", _data(_set(("network",), ["lan"])), "$.network"),
    # --- control characters, as escapes (well-formed YAML) and as raw bytes ----------------------
    *_value_cases("control", [("cluster", "description"), ("nodes", 8, "wifi", "ssid")], CONTROL),
    Case("control-raw-nel-comment", _text(lambda t: t.replace("\n", "  # c\u0085evil: 1\n", 1)), "$"),
    Case("control-raw-nel-value", _text(_replace_line(r"^  domain: .*$", "  domain: home.arpa\u0085")),
         "$.cluster.domain"),
    Case("control-raw-esc", _text(_replace_line(r"^  domain: .*$", "  domain: home\x1b[31m.arpa")), "$.cluster.domain"),
    Case("control-raw-nul", _text(_replace_line(r"^  domain: .*$", "  domain: home\x00arpa")), "$.cluster.domain"),
    Case("control-raw-line-separator", _text(_replace_line(r"^  description: .*$", "  description: a\u2028b")),
         "$.cluster.description"),
    Case("control-raw-bidi", _text(_replace_line(r"^  - hostname: cp1$", "  - hostname: \u202ecp1")),
         "$.nodes[0].hostname"),
    # --- 10,000-character strings ---------------------------------------------------------------
    *_value_cases("long", [("cluster", "description"), ("nodes", 0, "hostname"), ("cluster", "domain"),
                           ("nodes", 8, "wifi", "ssid"), ("os", "admins", 0, "sshKeys", 0),
                           ("gitops", "repository", "url"), ("microk8s", "addons", 0, "args")], {"10k": LONG}),
    Case("long-key", _data(_set(("network", LONG), 1)), "$.network"),
    Case("long-env-value", _data(_set(("customApps",), [{"name": "x", "image": "ghcr.io/x/y:1", "port": 80,
                                                         "env": {"TOKEN": LONG}}])), "$.customApps[0].env.TOKEN"),
    Case("long-line-file", _text(lambda t: t + "# " + "y" * 1_000_000 + "\nextra: 1\n"), "$.extra"),
    # --- nesting, duplicate keys, aliases -------------------------------------------------------
    Case("deep-mapping", _data(_set(("nodes", 0, "labels"), _nest(60))), "$.nodes[0].labels"),
    Case("deep-flow-list", _text(_replace_line(r"^  dns: .*$", "  dns: " + "[" * 5000 + "]" * 5000)),
         "$.network.dns"),
    Case("deep-block", _text(lambda t: t + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"),
         "$.k0"),
    Case("duplicate-top-level", _text(lambda t: t + "version: 1\n"), "$.version"),
    Case("duplicate-nested", _text(_replace_line(r"^  - hostname: cp2$", "  - hostname: cp2\n    hostname: cp9")),
         "$.nodes[1].hostname"),
    Case("duplicate-flow", _text(_replace_line(r"^  dns: .*$", "  dns: {a: 1, a: 2}")), "$.network.dns"),
    Case("duplicate-quoted", _text(lambda t: t + "'version': 1\n"), "$.version"),
    Case("alias-bomb", _text(lambda t: t + _bomb()), "$"),
    Case("alias-bomb-in-list", _text(_replace_line(
        r"^  dns: .*$", "  dns: &a [" + ",".join(["x"] * 60) + "]\n  ntp: &b [" + ",".join(["*a"] * 60)
        + "]\n  apiServerNames: [" + ",".join(["*b"] * 60) + "]")), "$.network"),
    Case("alias-loop", _text(_replace_line(r"^  dns: .*$", "  dns: &loop [*loop]")), "$.network.dns"),
    Case("alias-undefined", _text(_replace_line(r"^  dns: .*$", "  dns: *nowhere")), "$.network.dns"),
    Case("merge-of-scalar", _text(_replace_line(r"^  - hostname: cp2$", "  - <<: 42\n    hostname: cp2")),
         "$.nodes[1]"),
    Case("mapping-as-key", _text(lambda t: t + "? {a: 1}\n: 2\n"), "$"),
    # --- tags -----------------------------------------------------------------------------------
    *[Case(f"tag-{tid}", _text(_replace_line(r"^  domain: .*$", f"  domain: {tag}")), "$.cluster.domain")
      for tid, tag in {
        "python-object-apply": '!!python/object/apply:os.system ["touch /tmp/hkgen-pwned"]',
        "python-name": "!!python/name:os.system",
        "python-object-new": "!!python/object/new:subprocess.Popen [[true]]",
        "binary": "!!binary aG9tZS5hcnBh",
        "set": "!!set {a, b}",
        "omap": "!!omap [a: 1]",
        "include": "!include other.yaml",
        "secret": "!secret domain",
        "env": "!env_var DOMAIN",
        "verbatim": "!<tag:example.com,2000:x> home.arpa",
        "int-on-text": "!!int home",
        "bool-on-text": "!!bool home",
    }.items()],
    Case("tag-on-mapping", _text(_replace_line(r"^cluster:$", "cluster: !!python/object:__main__.Cluster")),
         "$.cluster"),
    Case("tag-directive",
         _text(lambda t: "%TAG !e! tag:example.com,2000:\n---\n" + t.replace("version: 2", "version: !e!v 2", 1)),
         "$.version"),
    # --- bytes ----------------------------------------------------------------------------------
    Case("bytes-bom", _bytes(lambda b: b"\xef\xbb\xbf" + b), "$"),
    Case("bytes-bom-inside", _text(_replace_line(r"^  domain: .*$", "  domain: home\ufeff.arpa")), "$.cluster.domain"),
    Case("bytes-latin1", _bytes(lambda b: b.replace(b"utility room", b"utility r\xe4um", 1)), "$"),
    Case("bytes-lone-continuation", _bytes(lambda b: b.replace(b"home.arpa", b"home\x80.arpa", 1)), "$"),
    Case("bytes-overlong-slash", _bytes(lambda b: b.replace(b"Europe/Berlin", b"Europe\xc0\xafBerlin", 1)), "$"),
    Case("bytes-utf8-surrogate", _bytes(lambda b: b.replace(b"home.arpa", b"home\xed\xa0\x80.arpa", 1)), "$"),
    Case("bytes-truncated", _bytes(lambda b: b + b"# \xe2\x82"), "$"),
    Case("bytes-utf16", _bytes(lambda b: b.decode().encode("utf-16")), "$"),
    Case("bytes-nul-padding", _bytes(lambda b: b + b"\x00" * 64), "$"),
    Case("bytes-too-large", _bytes(lambda b: b + b"#" * 2_100_000), "$"),
    # --- empty and non-mapping files ---------------------------------------------------------------
    *[Case(f"empty-{eid}", _bytes(lambda _b, c=content: c), "$") for eid, content in {
        "zero-bytes": b"", "whitespace": b"  \n\n \n", "comments": b"# nothing\n# here\n", "document-marker": b"---\n",
        "document-end": b"...\n", "null": b"~\n", "list": b"[]\n", "mapping": b"{}\n", "scalar": b"home\n",
        "two-documents": TEXT.encode() + b"---\n" + TEXT.encode(),
    }.items()],
    # --- file system: a directory, a FIFO or a device where a file belongs -------------------------
    Case("fs-secrets-file-is-a-directory", _directory("secrets.sops.yaml"), "$.secrets"),
    Case("fs-cluster-file-is-a-fifo", _fifo, "$"),
    Case("fs-cluster-file-is-a-device", _device, "$"),
]
# Kept apart: it needs the pipeline fix described in test_cases.py (exit 2 today).
DIRECTORY = Case("fs-cluster-file-is-a-directory", _directory("cluster.yaml"), "$")


def _snapshot(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        out[str(path.relative_to(folder))] = f"{info.st_mode:o} {info.st_size} {info.st_mtime_ns} {digest}"
    return out


def _prepare(case: Case, root: Path) -> Path:
    folder = root / case.id
    folder.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(HOME / name, folder / name)
    case.spoil(folder)
    return folder


def _check_output(folder: Path, case: Case, stdout: str, stderr: str) -> None:
    located = re.compile(r"^(?P<file>[^:]+):\d+:\d+: (?P<path>\$[^ ]*): ")
    matches = [m for m in map(located.match, stdout.splitlines()) if m]
    # FILE is the cluster file or its secrets file, shown relative to the working directory.
    assert all(Path(os.path.normpath(Path.cwd() / m["file"])).parent == folder for m in matches), stdout
    paths = [m["path"] for m in matches]
    assert paths, f"no located message:\n{stdout}{stderr}"
    # The message names the spoiled part (or something inside it).
    assert any(p == case.path or p.startswith((case.path + ".", case.path + "[")) for p in paths), paths
    assert not _RAW_CONTROL.search(stdout + stderr), "raw control character in the output"
    assert all(len(line) < 600 for line in stdout.splitlines()), "a message line is not cut short"
    assert "Traceback" not in stdout + stderr
    assert "internal error" not in stderr


def _main(path: Path) -> tuple[int, str, str]:
    from hkgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_corpus_size() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_file_is_refused(case: Case, tmp_path: Path) -> None:
    folder = _prepare(case, tmp_path)
    before = _snapshot(folder)
    code, stdout, stderr = _main(folder)
    assert code == 1, stdout + stderr
    _check_output(folder, case, stdout, stderr)
    assert _snapshot(folder) == before, "validate wrote, changed or removed a file"


def test_directory_where_the_cluster_file_belongs(tmp_path: Path) -> None:
    folder = _prepare(DIRECTORY, tmp_path)
    before = _snapshot(folder)
    code, stdout, stderr = _main(folder)
    assert code == 1, stdout + stderr
    _check_output(folder, DIRECTORY, stdout, stderr)
    assert _snapshot(folder) == before


def test_whole_corpus_through_the_real_cli(tmp_path: Path) -> None:
    """One real `python -m hkgen validate` process over every hostile folder: exit 1, every
    folder reported invalid with located lines, no traceback, nothing touched."""
    folders = [_prepare(case, tmp_path) for case in CASES]
    before = {f: _snapshot(f) for f in folders}
    done = subprocess.run([sys.executable, "-m", "hkgen", "validate", *map(str, folders)], capture_output=True,
                          text=True, timeout=600, check=False, env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr and "internal error" not in done.stderr
    assert not _RAW_CONTROL.search(done.stdout + done.stderr)
    for folder, case in zip(folders, CASES, strict=True):
        status = [line for line in done.stderr.splitlines() if line.startswith(f"{case.id}/") or
                  line.startswith(f"{folder}/") or line.startswith(f"{case.id}:")]
        assert status and "invalid" in status[-1], (case.id, status)
        # Shown relative to the working directory, or in full when it resolves elsewhere (a symlink).
        assert any(line.startswith((f"{case.id}/", f"{folder}/")) for line in done.stdout.splitlines()), case.id
        assert _snapshot(folder) == before[folder], case.id


# --- output confinement: any name the schema accepts plans paths inside the cluster folder ----------

_NAME = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_NAMED = load_file(REPO / "tests" / "cases" / "valid" / "network-coordinator.yaml").data


@settings(max_examples=150)
@given(_NAME, _NAME, _NAME)
@example("longhorn", "cert-manager", "longhorn")  # a custom app named like a platform component
@example("a" * 63, "0", "namespaces")
def test_schema_accepted_names_plan_paths_inside_the_cluster_folder(node: str, network: str, app: str) -> None:
    """A node, a Zigbee network and a custom app named with anything the hostname pattern accepts:
    the file validates (or, for an app name the platform already uses, is refused at that name),
    and every planned output stays inside the cluster folder."""
    from pathlib import PurePosixPath

    from hkgen.areas.blueprint import build_blueprint
    from hkgen.config.load import load_text
    from hkgen.validation.validate import validate_document

    assume(node not in ("cp2", "cp3") and app not in ("mosquitto", "zigbee2mqtt"))
    data = copy.deepcopy(_NAMED)
    data["nodes"][0]["hostname"] = node
    data["zigbee"]["networks"][0]["name"] = network
    data["customApps"] = [{"name": app, "image": "ghcr.io/example/app:1.0", "port": 8080, "expose": "none"}]
    result = validate_document(load_text(dump(data), "cluster.yaml"))
    if result.errors:
        assert [p.path for p in result.errors] == ["$.customApps[0].name"], [p.format() for p in result.errors]
        assert "already taken by a platform component" in result.errors[0].message
        return
    assert result.cluster is not None
    plan = build_blueprint(result.cluster)
    root = Path("/clusters/lab")
    for planned in plan.files:
        path = PurePosixPath(planned.path)
        assert not path.is_absolute() and ".." not in path.parts and "" not in path.parts, path
        assert os.path.normpath(root / path).startswith(f"{root}/"), path
    assert any(node in PurePosixPath(f.path).parts for f in plan.files), "the node's seed folder is missing"
