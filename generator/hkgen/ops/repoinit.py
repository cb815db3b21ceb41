"""The Git side of `hkgen init` and of the first `hkgen publish`.

- `hkgen init DIR` makes DIR a Git repository of its own (branch `main`), and refuses, before
  writing anything, a DIR inside another repository's work tree: the scaffold's files
  (.sops.yaml, .pre-commit-config.yaml, the CI workflows) only work at the top of a repository.
- SCAFFOLD names the files `hkgen init` puts beside `clusters/`. The first publish of a repository
  (no commit yet) commits those that exist along with the cluster's folder, so the remote has the
  hooks, the schema cluster.yaml points at, and the CI workflows from the first push.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ToolError, UsageError
from .git import LOCAL_TIMEOUT, Git

__all__ = ["SCAFFOLD", "enclosing_repository", "first_commit_scaffold", "hkgen_requirement", "init_git",
           "refuse_nested"]

SCAFFOLD: tuple[str, ...] = (".gitignore", ".sops.yaml", ".pre-commit-config.yaml", "README.md", "schemas",
                             "renovate.json", ".github/workflows/hkgen.yaml", ".forgejo/workflows/hkgen.yaml")


def enclosing_repository(dest: Path) -> Path | None:
    """The top of the Git work tree that would contain `dest` (which may not exist yet), or None."""
    from ..core.proc import run

    folder = dest.absolute()
    while not folder.is_dir():
        folder = folder.parent
    done = run([Git.binary(), "-C", str(folder), "rev-parse", "--show-toplevel"], env=Git.env(),
               timeout=LOCAL_TIMEOUT)
    if done.returncode != 0:
        return None
    return Path(done.stdout.strip())


def refuse_nested(dest: Path) -> None:
    """`UsageError` when `dest` would be inside another repository's work tree."""
    top = enclosing_repository(dest)
    if top is not None:
        raise UsageError(f"{dest}: is inside the Git repository {top}; hkgen init creates a repository of its "
                         "own (its .sops.yaml, hooks and CI workflows work only at a repository's top): "
                         "choose a folder outside it")


def init_git(dest: Path) -> None:
    """`git init` with branch main in `dest` (a new, complete scaffold)."""
    from ..core.proc import run

    done = run([Git.binary(), "init", "--quiet", "--initial-branch=main", str(dest)], env=Git.env(),
               timeout=LOCAL_TIMEOUT)
    if done.returncode != 0:
        raise ToolError(f"`git init {dest}` failed: {done.tail(5)}")


def first_commit_scaffold(git: Git) -> list[str]:
    """The scaffold files a repository's first commit takes along (those present and not ignored)."""
    present = [p for p in SCAFFOLD if (git.top / p).exists()]
    hidden = set(git.ignored(present))
    return [p for p in present if p not in hidden]


def hkgen_requirement(hooks_repo: str, hooks_rev: str, version: str) -> str:
    """The pip requirement the generated CI workflows install hkgen with.

    No package index has hkgen: with `--hooks-repo` it is that Git repository at `--hooks-rev`;
    otherwise a placeholder URL at this version's tag, which the user replaces (the workflow says so).
    """
    rev = hooks_rev or f"v{version}"
    if hooks_repo:
        return f"hkgen @ git+{hooks_repo}@{rev}"
    return f"hkgen @ git+https://REPLACE-WITH-HKGEN-GIT-URL@{rev}"
