#!/usr/bin/env python3
"""hkgen benchmarks: every figure a paired ratio against a yardstick run in alternation with it.

    .venv/bin/python bench/bench.py            # reference + 9/100/1,000 nodes (10-15 minutes on 2 cores)
    .venv/bin/python bench/bench.py --quick    # reference (3 pairs) + 9 nodes (1 pair): a smoke test

A pair is one run of hkgen and one of its yardstick, back to back, alternating which goes first;
the ratio of a figure is the median of its pairs' ratios (>= 7 pairs in a full run), so a busy
moment of a shared machine hits both sides. Yardsticks:
- validate: `python -I -c "import ruamel.yaml, jinja2"` (the interpreter and the YAML/Jinja
  imports any Python tool of this kind pays);
- render --check: a sequential `kustomize build` (as hkgen runs it) of the roots hkgen builds (the
  top roots), and separately of all roots; cold = hkgen's verification and render caches emptied
  first;
- clean render: the write floor, the same files (bytes, modes, folders) written by plain Python
  from a blob in a fresh interpreter; the verification and render caches are emptied before each
  clean render;
- no-op re-render (tree current, caches warm): the clean render.
Every run is a real process (interpreter start included); peak RSS comes from wait4(). hkgen's
bytecode and its cache folder live in the temporary folder, as in an installed hkgen.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import marshal
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "generator"))

from hkgen.config.load import load_file  # noqa: E402
from hkgen.core.yamlio import dump  # noqa: E402

HKGEN = [sys.executable, "-m", "hkgen"]
FLOOR_VALIDATE = [sys.executable, "-I", "-c", "import ruamel.yaml, jinja2"]
TARGETS = {
    "validate_vs_floor": 1.2,
    "check_vs_kustomize_built": 1.5,
    "noop_vs_clean": 0.3,
    "render_1000_vs_write_floor": 2.5,
    "rss_1000_mb": 150.0,
}
# Writes the files of a marshalled [(relative path, bytes, mode)] under a folder: the least any
# generator of the same tree must do.
WRITE_FLOOR = (
    "import marshal, os, sys\n"
    "dest = sys.argv[2]\n"
    "made = set()\n"
    "for rel, data, mode in marshal.load(open(sys.argv[1], 'rb')):\n"
    "    path = os.path.join(dest, rel)\n"
    "    folder = os.path.dirname(path)\n"
    "    if folder not in made:\n"
    "        os.makedirs(folder, exist_ok=True)\n"
    "        made.add(folder)\n"
    "    with open(path, 'wb') as fh:\n"
    "        fh.write(data)\n"
    "    os.chmod(path, mode)\n"
)


# hkgen runs with its bytecode cached, as an installed hkgen has it (pip compiles .pyc files at
# install; pre-commit installs hkgen that way), but in a throw-away folder: a checkout on a machine
# with PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(argv: list[str], cwd: Path | None = None) -> tuple[float, float, int, str]:
    """Run argv; return (seconds, peak RSS MiB, exit code, stdout+stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, output


def checked(argv: list[str]) -> tuple[float, float, str]:
    seconds, rss, code, out = run(argv)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({code}):\n{out[-2000:]}")
    return seconds, rss, out


Side = Callable[[], tuple[float, float]]  # one timed run: (seconds, peak RSS MiB)


def command(argv: list[str], prepare: Callable[[], None] | None = None) -> Side:
    def side() -> tuple[float, float]:
        if prepare:
            prepare()
        seconds, rss, _out = checked(argv)
        return seconds, rss

    return side


def sequence(argvs: list[list[str]]) -> Side:
    """The commands one after the other, as one timed run (a shell loop without the shell)."""
    def side() -> tuple[float, float]:
        total, peak = 0.0, 0.0
        for argv in argvs:
            seconds, rss, _out = checked(argv)
            total, peak = total + seconds, max(peak, rss)
        return total, peak

    return side


class Pair:
    """Medians of A, B and of the paired ratios A/B, and A's peak RSS."""

    def __init__(self, a: Side, b: Side, pairs: int) -> None:
        ta: list[float] = []
        tb: list[float] = []
        self.rss = 0.0
        for i in range(pairs):
            order = ((0, a), (1, b)) if i % 2 == 0 else ((1, b), (0, a))
            for which, side in order:
                seconds, rss = side()
                (ta if which == 0 else tb).append(seconds)
                if which == 0:
                    self.rss = max(self.rss, rss)
        self.a, self.b = statistics.median(ta), statistics.median(tb)
        self.ratio = statistics.median(x / y for x, y in zip(ta, tb, strict=True))


def synthetic(nodes: int, apps: int, dest: Path) -> Path:
    """A valid cluster with `nodes` nodes and `apps` apps (5 catalogue apps + custom ones)."""
    data: dict[str, Any] = copy.deepcopy(load_file(REPO / "clusters/home/cluster.yaml").data)
    lan = ipaddress.ip_network("10.20.0.0/20")
    hosts = list(lan.hosts())
    data["network"].update(
        {
            "lan": str(lan),
            "gateway": str(hosts[0]),
            "dns": [str(hosts[0])],
            "ntp": [str(hosts[0])],
            "loadBalancerPool": f"{hosts[4000]}-{hosts[4050]}",
            "ingressIP": str(hosts[4001]),
            "dnsServerIP": str(hosts[4002]),
        }
    )
    data["apps"]["mosquitto"]["loadBalancerIP"] = str(hosts[4000])
    template_nodes = data["nodes"]
    out_nodes = []
    for i in range(nodes):
        base = copy.deepcopy(template_nodes[min(i, 3)] if i < 3 else template_nodes[4 + (i % 5)])
        base["hostname"] = f"cp{i + 1}" if i < 3 else f"w{i - 2}"
        base["ip"] = str(hosts[10 + i])
        base["mac"] = f"dc:a6:32:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        for j, disk in enumerate(base.get("disks", [])):
            disk["id"] = f"usb-Bench_SSD_{i:05d}_{j}-0:0"
        if i == 3:
            base["usbDevices"] = template_nodes[3]["usbDevices"]
        else:
            base.pop("usbDevices", None)
        out_nodes.append(base)
    data["nodes"] = out_nodes
    data["zigbee"]["networks"][0]["coordinator"]["node"] = out_nodes[3]["hostname"]
    for k, sat in enumerate(data["satellites"]):
        sat["ip"] = str(hosts[3000 + k])
    data["customApps"] = [
        {
            "name": f"app{k:02d}",
            "image": f"ghcr.io/example/app{k:02d}:1.0.{k}",
            "port": 8000 + k,
            "memoryMiB": 32,
            "cpuMillis": 10,
            "expose": "ingress",
            **({"storage": {"sizeGiB": 1, "mountPath": "/data"}} if k % 3 == 0 else {}),
        }
        for k in range(max(apps - 5, 0))
    ]
    folder = dest / f"n{nodes}-a{apps}"
    (folder / "clusters" / "bench").mkdir(parents=True)
    data["cluster"]["name"] = "bench"
    cluster_dir = folder / "clusters" / "bench"
    (cluster_dir / "cluster.yaml").write_text(dump(data))
    make_secrets(cluster_dir)
    return cluster_dir


def make_secrets(cluster_dir: Path) -> None:
    """An encrypted secrets file with every required key (throw-away age key)."""
    import secrets as rnd

    import pyrage

    from hkgen.config.load import load_file as lf
    from hkgen.config.secrets import required_keys, sops_command
    from hkgen.validation.validate import validate_document

    key = pyrage.x25519.Identity.generate()
    doc = lf(cluster_dir / "cluster.yaml")
    doc.data["secrets"]["ageRecipients"] = [str(key.to_public())]
    (cluster_dir / "cluster.yaml").write_text(dump(doc.data))
    result = validate_document(lf(cluster_dir / "cluster.yaml"))
    if result.cluster is None:
        raise SystemExit("synthetic cluster invalid:\n" + "\n".join(p.format() for p in result.problems))
    from hkgen.ops.scaffold import _generate

    values: dict[str, str] = {}
    for k in required_keys(result.cluster):
        values[k.name] = _generate(k, set(values.values())) or rnd.token_urlsafe(18)
    plain = cluster_dir / "plain.yaml"
    plain.write_text(
        dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "cluster-secrets", "namespace": "flux-system"},
                "stringData": values,
            }
        )
    )
    enc = subprocess.run(
        [
            sops_command(),
            "--disable-version-check",
            "--encrypt",
            "--age",
            str(key.to_public()),
            "--encrypted-regex",
            "^(data|stringData)$",
            str(plain),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    plain.unlink()
    (cluster_dir / "secrets.sops.yaml").write_text(enc.stdout)


def tree_of(cluster_dir: Path) -> dict[PurePosixPath, tuple[bytes, int]]:
    """The rendered files under a cluster folder (inputs excluded): path -> (bytes, mode)."""
    out = {}
    for path in sorted(cluster_dir.rglob("*")):
        if path.is_file() and path.name not in ("cluster.yaml", "secrets.sops.yaml"):
            rel = PurePosixPath(path.relative_to(cluster_dir).as_posix())
            out[rel] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out


def roots_of(cluster_dir: Path) -> tuple[list[Path], list[Path]]:
    """(the top roots hkgen builds, all kustomization roots) of a rendered cluster folder."""
    from hkgen.verify.tree import kustomize_roots, top_roots

    tree = {p: data for p, (data, _mode) in tree_of(cluster_dir).items() if p.name == "kustomization.yaml"}
    return [cluster_dir / r for r in top_roots(tree)], [cluster_dir / r for r in kustomize_roots(tree)]


def clean_tree(cluster_dir: Path) -> None:
    for child in cluster_dir.iterdir():
        if child.name not in ("cluster.yaml", "secrets.sops.yaml"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def forget_verification(cache: Path) -> None:
    """Empty the caches of this tree: verification verdicts and the render cache (a cold run renders
    and verifies for real; only the compiled templates, keyed by hkgen's code, stay)."""
    for kind in ("verified", "rendered"):
        shutil.rmtree(cache / "hkgen" / kind, ignore_errors=True)


def measure(cdir: Path, work: Path, cache: Path, pairs: int) -> dict[str, Any]:
    """Every paired figure of one cluster folder."""
    from hkgen.verify.kustomize import kustomize_command

    checked([*HKGEN, "render", "-q", str(cdir)])  # the tree to compare with, caches warm
    tree = tree_of(cdir)
    built, every = roots_of(cdir)
    kz = list(kustomize_command())
    row: dict[str, Any] = {"files": len(tree), "built": len(built), "roots": len(every)}

    def clean() -> None:
        clean_tree(cdir)
        forget_verification(cache)

    render = command([*HKGEN, "render", "-q", str(cdir)], prepare=clean)
    blob = work / f"{cdir.parent.parent.name}.marshal"
    blob.write_bytes(marshal.dumps([(str(p), data, mode) for p, (data, mode) in tree.items()]))
    floor_dest = work / "floor"
    floor = command([sys.executable, "-c", WRITE_FLOOR, str(blob), str(floor_dest)],
                    prepare=lambda: shutil.rmtree(floor_dest, ignore_errors=True))
    row["render"] = Pair(render, floor, pairs)
    checked([*HKGEN, "render", "-q", str(cdir)])
    noop = command([*HKGEN, "render", "-q", str(cdir)])
    row["noop"] = Pair(noop, render, pairs)
    checked([*HKGEN, "render", "-q", str(cdir)])  # current again (the pair above ends on either side)
    check_cold = command([*HKGEN, "render", "--check", "-q", str(cdir)], prepare=lambda: forget_verification(cache))
    row["check_cold"] = Pair(check_cold, sequence([[*kz, str(r)] for r in built]), pairs)
    row["check_cold_all"] = Pair(check_cold, sequence([[*kz, str(r)] for r in every]),
                                 pairs if pairs <= 3 else max(3, pairs // 2))
    row["check_warm"] = Pair(command([*HKGEN, "render", "--check", "-q", str(cdir)]),
                             sequence([[*kz, str(r)] for r in built]), pairs)
    _, _, noop_out = checked([*HKGEN, "render", str(cdir)])
    row["noop_written"] = sum(
        int(x.split()[0])
        for x in noop_out.strip().splitlines()[-1].split(": ", 1)[1].split(", ")
        if x.split()[1] in ("created", "changed", "removed")
    )
    row["rss"] = max(row["render"].rss, row["check_cold"].rss)
    return row


def verdict(value: float, target: float) -> str:
    return f"[target <= {target}] {'OK' if value <= target else 'MISSED'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reference (3 pairs) + 9 nodes / 5 apps (1 pair)")
    parser.add_argument("--pairs", type=int, default=7, help="pairs per figure (default 7)")
    parser.add_argument("--sizes", default="9x5,100x50,1000x50", help="NODESxAPPS,... (default 9x5,100x50,1000x50)")
    args = parser.parse_args()
    sizes = [(9, 5)] if args.quick else [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]
    pairs = 3 if args.quick else max(args.pairs, 1)
    rows: dict[str, dict[str, Any]] = {}
    print(f"hkgen benchmark ({'quick' if args.quick else 'full'}), paired ratios, median of {pairs} pairs, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hkgen-bench-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        ENV["XDG_CACHE_HOME"] = str(cache)
        ref = work / "ref" / "clusters" / "home"
        ref.mkdir(parents=True)
        for name in ("cluster.yaml", "secrets.sops.yaml"):
            shutil.copy2(REPO / "clusters/home" / name, ref / name)
        checked([*HKGEN, "validate", "-q", str(ref)])  # compiles the bytecode, fills the caches
        # A quarter of a second each: 11 pairs cost little and keep one busy moment out of the median.
        validate = Pair(command([*HKGEN, "validate", "-q", str(ref)]), command(FLOOR_VALIDATE),
                        pairs if args.quick else max(pairs, 11))
        print(f"validate clusters/home: {validate.a:.3f} s vs floor (import ruamel.yaml, jinja2) {validate.b:.3f} s: "
              f"{validate.ratio:.2f}x {verdict(validate.ratio, TARGETS['validate_vs_floor'])}")
        print(f"{'cluster':>10} {'files':>6} {'built/roots':>11} {'render':>8} {'write floor':>11} "
              f"{'render/floor':>12} {'no-op/render':>12} {'check/kz (built, cold)':>22} "
              f"{'check/kz (all, cold)':>20} {'check/kz (built, warm)':>22} {'peak RSS':>9}", flush=True)
        clusters = [("reference", ref, pairs)]
        # --quick: one pair for the synthetic 9 nodes (it only proves the generator works).
        clusters += [(f"{n}x{a}", (n, a), 1 if args.quick else pairs) for n, a in sizes]
        for name, where, count in clusters:
            cdir = where if isinstance(where, Path) else synthetic(where[0], where[1], work)
            r = rows[name] = measure(cdir, work, cache, count)
            print(f"{name:>10} {r['files']:>6} {r['built']:>5}/{r['roots']:<5} "
                  f"{r['render'].a:>7.2f}s {r['render'].b:>10.2f}s "
                  f"{r['render'].ratio:>11.2f}x {r['noop'].ratio:>11.2f}x {r['check_cold'].ratio:>21.2f}x "
                  f"{r['check_cold_all'].ratio:>19.2f}x {r['check_warm'].ratio:>21.2f}x {r['rss']:>7.0f}MB",
                  flush=True)
    ref_row = rows["reference"]
    cold = ref_row["check_cold"].ratio
    print(f"render --check of clusters/home (cold) vs sequential kustomize of the {ref_row['built']} roots it builds: "
          f"{cold:.2f}x {verdict(cold, TARGETS['check_vs_kustomize_built'])}")
    print(f"no-op re-render vs clean render (clusters/home): {ref_row['noop'].ratio:.2f}x "
          f"{verdict(ref_row['noop'].ratio, TARGETS['noop_vs_clean'])}")
    if "1000x50" in rows:
        big = rows["1000x50"]
        print(f"clean render 1000 nodes/50 apps vs write floor: {big['render'].ratio:.2f}x "
              f"{verdict(big['render'].ratio, TARGETS['render_1000_vs_write_floor'])}")
        print(f"peak RSS 1000 nodes/50 apps: {big['rss']:.0f} MB {verdict(big['rss'], TARGETS['rss_1000_mb'])}")
        if "100x50" in rows:
            mid = rows["100x50"]
            scale, files = big["render"].a / mid["render"].a, big["files"] / mid["files"]
            print(f"t(1000)/t(100), 50 apps: {scale:.2f} [target <= files ratio {files:.2f}] "
                  f"{'OK' if scale <= files else 'MISSED'}")
    print(f"no-op re-render files written: {max(r['noop_written'] for r in rows.values()):.0f} [target 0]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
