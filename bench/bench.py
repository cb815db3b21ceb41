#!/usr/bin/env python3
"""hkgen benchmarks: validate, render, render --check, no-op re-render and peak memory on
synthetic clusters (9/100/1,000 nodes; 5/50 apps), next to bare `kubectl kustomize` over the
same kustomization roots. Prints ratios, not only times.

    .venv/bin/python bench/bench.py            # full run (a few minutes on 2 cores)
    .venv/bin/python bench/bench.py --quick    # 9 nodes only, one repetition (CI smoke test)

Every figure is wall-clock time of a real process (interpreter start included), median of
--repeat runs; peak RSS comes from wait4() of that process. hkgen's bytecode is cached (in the
temporary folder), as in an installed hkgen.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "generator"))

from hkgen.config.load import load_file  # noqa: E402
from hkgen.core.yamlio import dump  # noqa: E402

HKGEN = [sys.executable, "-m", "hkgen"]
TARGETS = {
    "validate_ref_s": 0.3,
    "check_vs_kustomize": 1.5,
    "render_1000_s": 15.0,
    "rss_1000_mb": 400.0,
    "scale_1000_100": 12.0,
}


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


def median_run(argv: list[str], repeat: int, cwd: Path | None = None, prepare: Any = None) -> tuple[float, float, str]:
    times, rss, out = [], [], ""
    for _ in range(repeat):
        if prepare:
            prepare()
        t, m, code, out = run(argv, cwd)
        if code != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({code}):\n{out[-2000:]}")
        times.append(t)
        rss.append(m)
    return statistics.median(times), max(rss), out


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


def kustomize_roots(cluster_dir: Path) -> list[Path]:
    return sorted(p.parent for p in cluster_dir.rglob("kustomization.yaml"))


def bare_kustomize(roots: list[Path]) -> float:
    """Seconds for `kubectl kustomize` over every root, one after the other (like the peer's loop)."""
    start = time.perf_counter()
    for root in roots:
        subprocess.run(["kubectl", "kustomize", str(root)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def clean_tree(cluster_dir: Path) -> None:
    for child in cluster_dir.iterdir():
        if child.name not in ("cluster.yaml", "secrets.sops.yaml"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="9 nodes / 5 apps, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [(9, 5)] if args.quick else [(9, 5), (9, 50), (100, 5), (100, 50), (1000, 5), (1000, 50)]
    repeat = 1 if args.quick else args.repeat
    rows: dict[tuple[int, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="hkgen-bench-") as tmp:
        work = Path(tmp)
        ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        ref = work / "ref" / "clusters" / "home"
        ref.mkdir(parents=True)
        for name in ("cluster.yaml", "secrets.sops.yaml"):
            shutil.copy2(REPO / "clusters/home" / name, ref / name)
        run([*HKGEN, "validate", "-q", str(ref)])  # compiles and caches the bytecode
        # A quarter of a second each: 11 runs cost little and keep one busy moment of a shared
        # machine out of the median.
        validate_runs = repeat if args.quick else max(repeat, 11)
        t_validate_ref, _, _ = median_run([*HKGEN, "validate", "-q", str(ref)], validate_runs)
        for nodes, apps in sizes:
            cdir = synthetic(nodes, apps, work)
            t_validate, rss_v, _ = median_run([*HKGEN, "validate", "-q", str(cdir)], repeat)
            t_render, rss_r, _ = median_run(
                [*HKGEN, "render", "-q", str(cdir)], repeat, prepare=lambda c=cdir: clean_tree(c)
            )
            t_check, rss_c, _ = median_run([*HKGEN, "render", "--check", "-q", str(cdir)], repeat)
            _, _, noop_out = median_run([*HKGEN, "render", str(cdir)], 1)
            roots = kustomize_roots(cdir)
            t_kz = statistics.median(bare_kustomize(roots) for _ in range(repeat)) if roots else 0.0
            files = sum(1 for p in cdir.rglob("*") if p.is_file())
            noop_written = sum(
                int(x.split()[0])
                for x in noop_out.strip().splitlines()[-1].split(": ", 1)[1].split(", ")
                if x.split()[1] in ("created", "changed", "removed")
            )
            rows[(nodes, apps)] = {
                "validate": t_validate,
                "render": t_render,
                "check": t_check,
                "kustomize": t_kz,
                "roots": len(roots),
                "files": files,
                "rss": max(rss_v, rss_r, rss_c),
                "noop_written": noop_written,
            }
    print(
        f"hkgen benchmark ({'quick' if args.quick else 'full'}), median of {repeat} run(s), "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    print(
        f"validate clusters/home (interpreter start included, bytecode cached, median of {validate_runs}): "
        f"{t_validate_ref:.3f} s "
        f"[target <= {TARGETS['validate_ref_s']} s] {'OK' if t_validate_ref <= TARGETS['validate_ref_s'] else 'MISSED'}"
    )
    header = (
        f"{'nodes':>6} {'apps':>5} {'files':>6} {'roots':>5} {'validate':>9} {'render':>8} {'check':>8} "
        f"{'kustomize':>10} {'check/kz':>9} {'peak RSS':>9} {'no-op writes':>12}"
    )
    print(header)
    for (nodes, apps), r in rows.items():
        ratio = r["check"] / r["kustomize"] if r["kustomize"] else float("nan")
        print(
            f"{nodes:>6} {apps:>5} {r['files']:>6.0f} {r['roots']:>5.0f} {r['validate']:>8.2f}s {r['render']:>7.2f}s "
            f"{r['check']:>7.2f}s {r['kustomize']:>9.2f}s {ratio:>8.2f}x {r['rss']:>7.0f}MB {r['noop_written']:>12.0f}"
        )
    ref_row = rows[(9, 5)]
    ratio = ref_row["check"] / ref_row["kustomize"] if ref_row["kustomize"] else float("nan")
    print(
        f"render --check of a 9-node cluster vs bare kustomize over its roots: {ratio:.2f}x "
        f"[target <= {TARGETS['check_vs_kustomize']}x] {'OK' if ratio <= TARGETS['check_vs_kustomize'] else 'MISSED'}"
    )
    if (1000, 50) in rows and (100, 50) in rows:
        big, mid = rows[(1000, 50)], rows[(100, 50)]
        scale = big["render"] / mid["render"]
        for label, value, target in (
            ("render 1000 nodes/50 apps", big["render"], TARGETS["render_1000_s"]),
            ("peak RSS 1000 nodes/50 apps (MB)", big["rss"], TARGETS["rss_1000_mb"]),
            ("time(1000)/time(100)", scale, TARGETS["scale_1000_100"]),
        ):
            print(f"{label}: {value:.2f} [target <= {target}] {'OK' if value <= target else 'MISSED'}")
    print(f"no-op re-render files written: {max(r['noop_written'] for r in rows.values()):.0f} [target 0]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
