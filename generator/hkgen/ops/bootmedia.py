"""Flashable seeds: `hkgen boot-media` writes one node's or satellite's seed with its real secrets.

The committed seeds under clusters/<name>/nodes/ hold `${KEY}` placeholders only. Boot media
are rendered from cluster.yaml again, this time with the values decrypted from the cluster's
SOPS/age secrets file (real sops, `secrets.decrypt`) put into the seed data, so the templates
quote them like any other value. The result is checked with the same validation as `hkgen
render` (cloud-config schema, launch-config schema, Netplan structure) and must hold no
placeholder, then written to the output folder, normally the freshly flashed boot partition
(label `system-boot`):

* user-data, meta-data and network-config replace the image's templates of the same name;
* the kernel command line already on the partition (cmdline.txt, or current/cmdline.txt in
  the A/B boot layout) keeps its parameters and gets hkgen's added; without one, hkgen's full
  line for the release is written;
* every file is written atomically with mode 0600 (a FAT partition cannot store modes; its
  mount options decide, and the result says so).

Plaintext secrets never go near a Git work tree: an output folder inside one (or inside the
cluster folder) is refused, without an override. Nothing here prints or returns a secret value.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..config.model import Cluster, Node, Satellite
from ..core.errors import ConfigError, Problem, ToolError, UsageError, VerifyError

__all__ = ["BootMedia", "merge_cmdline", "refuse_unsafe_output", "write_boot_media"]


@dataclass(frozen=True)
class BootMedia:
    """What `write_boot_media` did: files written (relative to the output folder) and remarks."""

    host: str
    written: tuple[PurePosixPath, ...]
    notes: tuple[str, ...]


def _git_work_tree(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return None


def refuse_unsafe_output(out: Path, cluster_dir: Path) -> None:
    """Refuse an output folder where plaintext secrets could end up in Git."""
    target = out.resolve()
    if target == cluster_dir.resolve() or cluster_dir.resolve() in target.parents:
        raise UsageError(f"{out}: refusing to write decrypted secrets into the cluster folder; "
                         "write to the mounted boot partition or a temporary folder")
    repo = _git_work_tree(target)
    if repo is not None:
        raise UsageError(f"{out}: refusing to write decrypted secrets inside the Git work tree {repo}; "
                         "write to the mounted boot partition or a temporary folder outside any repository")


def merge_cmdline(existing: str, params: tuple[str, ...]) -> str:
    """The first line of an existing kernel command line with `params` appended where missing."""
    lines = existing.splitlines()
    tokens = lines[0].split() if lines else []
    tokens += [p for p in params if p not in tokens]
    return " ".join(tokens) + "\n"


def _host(cluster: Cluster, name: str) -> Node | Satellite:
    hosts: list[Node | Satellite] = [*cluster.nodes, *cluster.satellites]
    for host in hosts:
        if host.hostname == name:
            return host
    import difflib

    names = [h.hostname for h in hosts]
    match = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {match[0]}?" if match else f"; known: {', '.join(names)}"
    raise UsageError(f"no node or satellite called {name!r} in {cluster.source}{hint}")


def _render(cluster: Cluster, host: str, secrets: dict[str, str] | None) -> dict[PurePosixPath, str]:
    """Seed files of `host` (paths relative to its seed folder) as text."""
    from ..areas.seeds import host_files, seed_folder
    from ..render.jinja import render_file

    folder = seed_folder(cluster, host)
    source = f"clusters/{cluster.name}/cluster.yaml"
    # Seed templates read only `cluster`; the GitOps components are not needed for boot media.
    base = {"cluster": cluster, "components": ()}
    return {f.path.relative_to(folder): render_file(f, base, source).decode("utf-8")
            for f in host_files(cluster, host, secrets)}


def _redact(problem: Problem, values: Iterable[str]) -> Problem:
    message, hint = problem.message, problem.hint
    for value in values:
        if value:
            message, hint = message.replace(value, "<secret>"), hint.replace(value, "<secret>")
    return replace(problem, message=message, hint=hint)


def _problems(cluster: Cluster, host: str, files: dict[PurePosixPath, str], label: str,
              keys: list[str] | None) -> list[Problem]:
    from ..areas.seeds import seed_folder
    from ..verify.cloudinit import check_seed_file, seed_file_kind

    folder = seed_folder(cluster, host)
    node = folder.parts[0] == "nodes"
    problems: list[Problem] = []
    for rel, text in sorted(files.items()):
        kind = seed_file_kind(folder / rel)
        if kind is not None:
            problems += check_seed_file(f"{label}/{rel}", kind, text, node=node, secret_keys=keys)
    return problems


def _write(path: Path, text: str) -> None:
    """Write atomically, created with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.hkgen-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # FAT: modes come from the mount options; the caller reports it
        tmp.chmod(0o600)
    tmp.replace(path)


def write_boot_media(path: Path, host: str, out: Path, *, age_key: Path | None = None) -> BootMedia:
    """Render, fill in, check and write the seed of node or satellite `host` into `out`."""
    from ..areas.seeds import cmdline_params, seed_folder
    from ..config.secrets import decrypt, required_keys
    from ..pipeline import cluster_file_for, validate_cluster
    from ..validation.validate import starter_placeholders
    from ..verify.cloudinit import placeholders

    cluster_file = cluster_file_for(path)
    doc, validation = validate_cluster(cluster_file)
    if validation.errors or validation.cluster is None:
        raise ConfigError(validation.problems)
    cluster = validation.cluster
    target = _host(cluster, host)
    # A seed with the starter's MAC, key or device ids leaves the Pi unreachable or without its
    # disk: refuse before anything is written.
    section = "nodes" if isinstance(target, Node) else "satellites"
    left = [doc.problem(p, f"{message}; replace it before writing {host}'s seed", hint=hint)
            for p, message, hint in starter_placeholders(cluster)
            if p[0] == "os" or p[:2] == (section, target.index)]
    if left:
        raise ConfigError(left)
    cluster_dir = cluster_file.parent
    refuse_unsafe_output(out, cluster_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: not a folder")
    if age_key is not None and not age_key.is_file():
        raise UsageError(f"{age_key}: no such age key file")

    folder = seed_folder(cluster, host)
    shown = f"{out}"
    keys = {k.name: k for k in required_keys(cluster)}
    notes: list[str] = []

    # 1. The committed form: proves the templates, and tells which secrets this host needs.
    committed = _render(cluster, host, None)
    problems = _problems(cluster, host, committed, f"clusters/{cluster.name}/{folder}", list(keys))
    if problems:
        raise VerifyError(problems)

    needed = sorted(set().union(*(placeholders(t) for t in committed.values())))
    on_disk = cluster_dir / folder
    stale = [rel for rel, text in committed.items()
             if (on_disk / rel).is_file() and (on_disk / rel).read_text("utf-8") != text]
    if stale:
        notes.append(f"the committed seed in {on_disk} is not current ({', '.join(map(str, sorted(stale)))}); "
                     f"run `hkgen render {cluster_dir}` and commit it")

    # 2. The real values (names only in every message).
    values: dict[str, str] = {}
    decrypted: dict[str, str] = {}
    if needed:
        decrypted = decrypt(cluster_dir / cluster.secrets_file, age_key_file=age_key)
        wrong = []
        for name in needed:
            value = decrypted.get(name)
            if value is None:
                wrong.append(f"{name}: missing")
            elif not re.match(keys[name].pattern, value):
                wrong.append(f"{name}: does not have the expected form ({keys[name].description})")
            else:
                values[name] = value
        if wrong:
            raise ToolError(f"{cluster.secrets_file}: cannot write the seed of {host}: " + "; ".join(wrong))
    filled = _render(cluster, host, values) if needed else committed

    # 3. Same checks on what goes onto the card, and no placeholder may be left. Messages that
    # quote a value get the secret values blanked out.
    problems = _problems(cluster, host, filled, shown, None)
    problems += [Problem(f"{shown}/{rel}", 0, 0, "$", f"secret placeholder left unfilled: {', '.join(sorted(left))}")
                 for rel, left in ((rel, placeholders(t)) for rel, t in sorted(filled.items())) if left]
    if problems:
        raise VerifyError([_redact(p, values.values()) for p in problems])

    # Control planes only: the age key and the deploy key for the GitOps bootstrapper (ops/bootsecrets.py).
    from .bootsecrets import control_plane_secrets

    extra, extra_notes = control_plane_secrets(cluster, target, decrypted, age_key)
    notes += extra_notes
    filled = {**filled, **extra}

    # 4. Write. The kernel command line joins the one already on the partition, if any.
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    written: list[PurePosixPath] = []
    params = cmdline_params(cluster, target)
    for rel, text in sorted(filled.items()):
        dest = out / rel
        if rel.name == "cmdline.txt":
            existing = next((out / c for c in ("current/cmdline.txt", "cmdline.txt") if (out / c).is_file()), None)
            if existing is not None:
                dest = existing
                text = merge_cmdline(existing.read_text("utf-8"), params)
                notes.append(f"kept the kernel command line in {existing.relative_to(out)} and added "
                             "hkgen's parameters")
        _write(dest, text)
        written.append(PurePosixPath(dest.relative_to(out).as_posix()))
    modes = {oct((out / w).stat().st_mode & 0o777) for w in written}
    if modes != {oct(0o600)}:
        notes.append(f"the filesystem at {out} does not keep file modes (a FAT boot partition): the files have "
                     f"mode {', '.join(sorted(modes))}; keep the card safe, it holds the join token")
    return BootMedia(host, tuple(written), tuple(notes))
