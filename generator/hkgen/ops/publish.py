"""`hkgen publish`: validate, render, commit only one cluster's folder, and push, with real git.
(A repository's first commit also takes `hkgen init`'s scaffold files along: repoinit.py.)

Publishing is where a mistake reaches the house, so it refuses rather than guesses:
- unrelated staged changes (they would not be in the commit, and the user meant something by them);
- drift: a file in the cluster folder that changed and that render does not produce (a hand edit,
  a stray decrypted secret, an editor backup) -- same rules as `hkgen render` for generated files;
- a generated file or input that .gitignore hides (the GitOps engine would never see it);
- an unfinished merge/rebase, a detached HEAD, or a branch that is behind or has diverged from the
  remote (fetched first). It never force-pushes.
What the GitOps engine cannot apply by itself (a StatefulSet's volume templates, transitions.py)
is compared with the remote's commit, the one the cluster follows, and comes back as warnings.
Everything is checked before anything is written, so a refusal leaves the work tree as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.errors import Problem, UsageError, WriteError
from ..output.write import MANIFEST, Report, parse_manifest, plan_changes, read_manifest, write_tree
from .git import Git, StatusEntry
from .repoinit import first_commit_scaffold

__all__ = ["Published", "publish"]


@dataclass
class Published:
    """What publish did (or, with dry_run, would do)."""

    cluster_dir: str  # relative to the top of the work tree ("." when the cluster is the repo)
    remote: str
    branch: str
    report: Report
    dry_run: bool
    files: list[str] = field(default_factory=list)  # paths in the commit, relative to the top
    commit: str | None = None
    pushed: list[str] = field(default_factory=list)  # "sha subject" of each commit sent
    notes: list[str] = field(default_factory=list)
    # Changes the GitOps engine cannot apply by itself (transitions.py), against what it has now.
    warnings: list[Problem] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        """True when the cluster was already committed and pushed as rendered."""
        return not self.files and not self.pushed


def _inside(path: str, folder: str) -> bool:
    return folder == "." or path == folder or path.startswith(folder + "/")


def _rel(path: str, folder: str) -> PurePosixPath:
    return PurePosixPath(path if folder == "." else path[len(folder) + 1:])


def _join(folder: str, rel: PurePosixPath | str) -> str:
    return str(rel) if folder == "." else f"{folder}/{rel}"


def _transitions(git: Git, commit: str, folder: str, tree: Mapping[PurePosixPath, bytes]) -> list[Problem]:
    """What the engine cannot apply by itself between the cluster's commit and the new tree."""
    from ..output.transitions import KINDS, changes, is_network_seed

    def rel_of(path: str) -> PurePosixPath:
        return PurePosixPath(path).relative_to(folder) if folder != "." else PurePosixPath(path)

    paths = set(git.files_containing(commit, folder, KINDS))
    # Network seeds: only those whose content changed are read (one ls-tree, not a read per Pi).
    for path, blob in git.blob_ids(commit, folder).items():
        new = tree.get(rel_of(path))
        if is_network_seed(rel_of(path)) and new is not None and git.blob_id(new, blob) != blob:
            paths.add(path)
    before = {}
    for path in sorted(paths):
        text = git.file_at(commit, path)
        if text is not None:
            before[rel_of(path)] = text.encode("utf-8")
    return changes(before, tree, folder)


def _drift(entries: list[StatusEntry], folder: str, produced: set[PurePosixPath],
           retired: set[PurePosixPath]) -> list[str]:
    """Changed paths in the cluster folder that are neither inputs nor produced by render.

    `retired` are files the committed render generated and this one does not (a disabled app, a
    removed node): `hkgen render` deleted them, and their deletion is part of the change.
    """
    drift = []
    for entry in entries:
        for path in (entry.path, entry.orig):
            if path is None or not _inside(path, folder) or _rel(path, folder) in produced:
                continue
            state = entry.index if entry.index not in (" ", "?") else entry.worktree
            # Gone, or the old side of a rename git saw in what an earlier publish staged.
            gone = state == "D" or (state == "R" and path == entry.orig)
            if gone and _rel(path, folder) in retired:
                continue
            what = {"?": "untracked", "D": "deleted", "A": "added", "R": "renamed"}.get(state, "modified")
            drift.append(f"{path} ({what})")
    return sorted(set(drift))


def _check_remote(git: Git, remote: str, branch: str, head: str | None) -> str | None:
    """The remote branch's commit after making sure pushing HEAD there is a fast-forward."""
    remote_sha = git.remote_head(remote, branch)
    if remote_sha is None:
        return None
    if not git.has_commit(remote_sha):
        git.fetch(remote, branch)
    if head is None:
        raise WriteError(f"{remote}/{branch} already has commits and this repository has none; "
                         f"clone it, or `git pull {remote} {branch}`, then publish")
    if git.is_ancestor(remote_sha, head):
        return remote_sha
    if git.is_ancestor(head, remote_sha):
        raise WriteError(f"{branch} is behind {remote}/{branch} (someone else published); run "
                         f"`git pull --ff-only {remote} {branch}`, then publish again")
    raise WriteError(f"{branch} has diverged from {remote}/{branch}; hkgen never force-pushes: "
                     f"`git pull --rebase {remote} {branch}` (or merge), check the result, then publish again")


def publish(path: Path, *, remote: str = "origin", branch: str | None = None, message: str | None = None,
            dry_run: bool = False, verify: bool = True) -> Published:
    """Validate, render and verify the cluster at `path`, then commit its folder and push it.

    `verify=False` skips the kustomize builds and schema checks, as `hkgen render --no-verify` does.
    """
    from .. import __version__
    from ..pipeline import render_cluster

    rendering = render_cluster(path, verify=verify)
    root = rendering.root
    git = Git.containing(root)
    folder = git.relative(root)
    if (what := git.in_progress()) is not None:
        raise WriteError(f"{git.top}: a {what} is in progress; finish or abort it, then publish")
    current = git.current_branch()
    if current is None:
        raise WriteError(f"{git.top}: HEAD is detached; check out the branch to publish (e.g. "
                         f"`git switch {rendering.blueprint.cluster.repo_branch}`)")
    target = branch or current
    notes: list[str] = []
    if target != rendering.blueprint.cluster.repo_branch:
        notes.append(f"the cluster's GitOps engine follows branch {rendering.blueprint.cluster.repo_branch!r} "
                     f"(gitops.repository.branch), not {target!r}")
    if message is not None and not message.strip():
        raise UsageError("the commit message is empty")
    if not git.knows_committer():
        # Found now, not when `git commit` fails after the tree was written and staged.
        what = "cannot publish" if not dry_run else "publish would fail"
        problem = (f"{what}: git does not know who commits here; set it with `git config user.name \"Your Name\"` "
                   "and `git config user.email you@example.com` (add --global for every repository)")
        if not dry_run:
            raise WriteError(problem)
        notes.append(problem)

    # Same rules as `hkgen render`: hand-edited generated files and files in the way are refused
    # (and an interrupted render is finished first, unless this is a dry run).
    report = plan_changes(root, rendering.tree, read_only=dry_run)
    entries = git.status()
    # The first commit takes `hkgen init`'s scaffold along (hooks, schema, CI: repoinit.py).
    scaffold = first_commit_scaffold(git) if git.head() is None else []
    unrelated = sorted({e.path for e in entries if e.staged and not (_inside(e.path, folder) and
                                                                      (e.orig is None or _inside(e.orig, folder)))
                        and not any(_inside(e.path, s) for s in scaffold)})
    if unrelated:
        raise WriteError("refusing to publish: changes outside the cluster are staged and would be left out "
                         f"of the commit: {', '.join(unrelated)}; commit or unstage them (`git restore --staged`) "
                         "first")
    inputs = {PurePosixPath("cluster.yaml"), PurePosixPath(rendering.blueprint.cluster.secrets_file)}
    produced = {*rendering.tree, PurePosixPath(MANIFEST)}
    committed = git.file_at("HEAD", _join(folder, MANIFEST))  # None before the first commit too
    retired = set(parse_manifest(committed, f"HEAD:{_join(folder, MANIFEST)}")) - produced if committed else set()
    drift = _drift(entries, folder, produced | inputs | set(read_manifest(root)), retired)
    if drift:
        raise WriteError(f"refusing to publish: {folder} has changes that `hkgen render` does not produce: "
                         f"{', '.join(drift)}; move edits into cluster.yaml, delete stray files, or commit "
                         "them yourself first")
    ignored = git.ignored([_join(folder, p) for p in sorted(produced | inputs)])
    if ignored:
        raise WriteError(f"refusing to publish: .gitignore hides {', '.join(ignored)}, so the cluster would "
                         "never see it; remove the matching .gitignore pattern")

    head = git.head()
    remote_sha = _check_remote(git, remote, target, head)
    result = Published(folder, remote, target, report, dry_run, notes=notes)
    from ..config.load import load_file
    from ..validation.dayafter import day2_problems

    # Renames, an engine switch... seen from the last render on disk, before this one replaces it.
    result.warnings = day2_problems(rendering.blueprint.cluster, root,
                                    load_file(root / "cluster.yaml", _join(folder, "cluster.yaml")))
    if remote_sha is not None:
        from ..output.locate import at_cluster_lines

        # Located at the cluster.yaml line the user changed; the generated file follows as a note.
        result.warnings += at_cluster_lines(_transitions(git, remote_sha, folder, rendering.tree),
                                           root / "cluster.yaml", _join(folder, "cluster.yaml"), folder)

    if dry_run:
        changed = {e.path for e in entries if _inside(e.path, folder) or any(_inside(e.path, s) for s in scaffold)}
        changed |= {_join(folder, c.path) for c in report.changes if c.action != "unchanged"}
        result.files = sorted(changed)
        result.pushed = git.commits_between(remote_sha, head) if head else []
        if result.files:
            result.pushed.append("(the new commit)")
        return result

    write_tree(root, rendering.tree, modes=rendering.modes)
    git.run("add", "--all", "--", folder, *scaffold)
    staged = git.out("diff", "--cached", "--name-only", "-z", "--", folder, *scaffold)
    result.files = sorted(p for p in staged.split("\0") if p)
    if result.files:
        name = rendering.blueprint.cluster.name
        subject = message.strip() if message else f"{folder}: publish rendered cluster {name}"
        body = f"Rendered by hkgen {__version__}: {report.summary()}."
        # The repository's own commit hooks run (hkgen's pre-commit hooks re-render): give them time.
        git.run("commit", "--quiet", "-m", subject, "-m", body, "--", folder, *scaffold, timeout=900)
        result.commit = git.out("rev-parse", "HEAD")
    head = git.head()
    if head is None or head == remote_sha:
        return result
    result.pushed = git.commits_between(remote_sha, head)
    code, out, err = git.run("push", "--porcelain", remote, f"HEAD:refs/heads/{target}", check=False,
                             timeout=120)
    if code != 0:
        where = f"committed locally as {result.commit[:12]}; " if result.commit else ""
        raise WriteError(f"push to {remote} {target} was refused ({where}nothing was forced): "
                         f"{(err or out).strip().splitlines()[-1] if (err or out).strip() else 'no message'}; "
                         f"run `git pull --rebase {remote} {target}` and publish again")
    return result
