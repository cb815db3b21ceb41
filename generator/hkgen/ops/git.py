"""The little of git that `hkgen publish` needs, run through `hkgen.core.proc` (argv lists, timeouts).

Output is read in machine form (`-z`, `--porcelain`) so file names with spaces or non-ASCII
characters are never mis-split. git's own configuration (identity, credentials, SSH) is the
user's: the variables that point git at it are passed through, and git never prompts on a
terminal (a push that needs a password fails with git's message instead of hanging).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ToolError, UsageError

__all__ = ["Git", "StatusEntry"]

# Variables that carry the user's git setup; anything pointing git at another repository or
# index (GIT_DIR, GIT_INDEX_FILE, set when hkgen runs inside a git hook) is deliberately dropped.
_PASS = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_SYSTEM", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
         "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH",
         "GIT_SSH_VARIANT", "GIT_TERMINAL_PROMPT", "GIT_EDITOR")
NETWORK_TIMEOUT = 120.0
LOCAL_TIMEOUT = 60.0


@dataclass(frozen=True)
class StatusEntry:
    """One line of `git status --porcelain=v1 -z`."""

    index: str  # staged state: ' ', M, A, D, R, C, U, ?
    worktree: str  # unstaged state
    path: str  # relative to the top of the work tree
    orig: str | None = None  # the old name of a rename or copy

    @property
    def staged(self) -> bool:
        """True when the index differs from HEAD for this path."""
        return self.index not in (" ", "?", "!")


class Git:
    """A work tree and the commands hkgen runs in it."""

    def __init__(self, top: Path) -> None:
        self.top = top

    @staticmethod
    def binary() -> str:
        """The git program, or a `ToolError` saying how to get it."""
        from ..core.proc import find

        found = find("git")
        if not found:
            raise ToolError("git is not installed or not on PATH; install git to publish")
        return found

    @classmethod
    def containing(cls, path: Path) -> Git:
        """The work tree that holds `path`."""
        from ..core.proc import run

        folder = path if path.is_dir() else path.parent
        done = run([cls.binary(), "-C", str(folder), "rev-parse", "--show-toplevel"], env=cls.env(),
                   timeout=LOCAL_TIMEOUT)
        if done.returncode != 0:
            raise UsageError(f"{folder}: not inside a git work tree (publish commits and pushes with git; "
                             "run `git init` or clone your GitOps repository first)")
        return cls(Path(done.stdout.strip()))

    @staticmethod
    def env() -> dict[str, str]:
        """Environment additions for every git command."""
        extra = {k: v for k, v in os.environ.items() if k in _PASS}
        extra.setdefault("GIT_TERMINAL_PROMPT", "0")
        return extra

    def run(self, *args: str, timeout: float = LOCAL_TIMEOUT, stdin: str | None = None,
            check: bool = True) -> tuple[int, str, str]:
        """Run `git -C top ARGS`; a failure (with `check`) becomes a `ToolError` with git's message."""
        from ..core.proc import run

        done = run([self.binary(), "-C", str(self.top), "-c", "core.quotepath=off", *args], env=self.env(),
                   timeout=timeout, stdin=stdin)
        if check and done.returncode != 0:
            raise ToolError(f"`git {' '.join(args)}` failed: {done.tail(5)}")
        return done.returncode, done.stdout, done.stderr

    def out(self, *args: str, timeout: float = LOCAL_TIMEOUT) -> str:
        """Stdout of a git command that must succeed, stripped."""
        return self.run(*args, timeout=timeout)[1].strip()

    def relative(self, path: Path) -> str:
        """`path` relative to the top of the work tree, POSIX style."""
        return path.resolve().relative_to(self.top.resolve()).as_posix()

    def status(self, *pathspec: str) -> list[StatusEntry]:
        """Changed, staged and untracked files (not ignored ones), optionally below `pathspec`."""
        raw = self.run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *pathspec)[1]
        parts = raw.split("\0")
        entries: list[StatusEntry] = []
        i = 0
        while i < len(parts):
            item = parts[i]
            i += 1
            if len(item) < 4:
                continue
            x, y, path = item[0], item[1], item[3:]
            orig = None
            if x in "RC":  # a rename or copy is followed by its source path
                orig = parts[i]
                i += 1
            entries.append(StatusEntry(x, y, path, orig))
        return entries

    def ignored(self, paths: list[str]) -> list[str]:
        """Those of `paths` (relative to the top) that .gitignore rules hide from `git add`."""
        if not paths:
            return []
        code, out, err = self.run("check-ignore", "-z", "--stdin", stdin="\0".join(paths) + "\0", check=False)
        if code > 1:
            raise ToolError(f"git check-ignore failed: {err.strip()}")
        return sorted(p for p in out.split("\0") if p)

    def current_branch(self) -> str | None:
        """The checked-out branch, or None on a detached HEAD."""
        code, out, _ = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return out.strip() if code == 0 else None

    def head(self) -> str | None:
        """The commit HEAD points to, or None in a repository without commits."""
        code, out, _ = self.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
        return out.strip() if code == 0 else None

    def in_progress(self) -> str | None:
        """The name of an unfinished merge, rebase, cherry-pick or revert, if any."""
        for name, what in (("MERGE_HEAD", "merge"), ("rebase-merge", "rebase"), ("rebase-apply", "rebase"),
                           ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert")):
            marker = Path(self.out("rev-parse", "--git-path", name))
            if not marker.is_absolute():
                marker = self.top / marker
            if marker.exists():
                return what
        return None

    def remote_head(self, remote: str, branch: str) -> str | None:
        """The commit `branch` has on `remote`, or None when the remote has no such branch."""
        code, out, err = self.run("ls-remote", "--exit-code", "--heads", remote, f"refs/heads/{branch}",
                                  timeout=NETWORK_TIMEOUT, check=False)
        if code == 2:
            return None
        if code != 0:
            raise ToolError(f"cannot read branch {branch} of remote {remote!r}: {(err or out).strip()}")
        return out.split()[0]

    def fetch(self, remote: str, branch: str) -> None:
        """Bring the remote branch's commits here (without touching the work tree)."""
        self.run("fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}", timeout=NETWORK_TIMEOUT)

    def is_ancestor(self, older: str, newer: str) -> bool:
        """True when `older` is `newer` or one of its ancestors."""
        code, _, err = self.run("merge-base", "--is-ancestor", older, newer, check=False)
        if code > 1:
            raise ToolError(f"git merge-base failed: {err.strip()}")
        return code == 0

    def has_commit(self, sha: str) -> bool:
        """True when the object store holds commit `sha`."""
        return self.run("cat-file", "-e", f"{sha}^{{commit}}", check=False)[0] == 0

    def files_containing(self, commit: str, folder: str, needles: tuple[str, ...]) -> list[str]:
        """Paths (relative to the top) below `folder` in `commit` whose text holds any of `needles`."""
        args = [a for needle in needles for a in ("-e", needle)]
        code, out, err = self.run("grep", "-l", "-F", *args, commit, "--", folder, check=False)
        if code not in (0, 1):  # 1: no match
            raise ToolError(f"`git grep` failed: {err.strip()}")
        # Each line is "<commit>:<path>".
        return [line.split(":", 1)[1] for line in out.splitlines() if ":" in line]

    def blob_ids(self, commit: str, folder: str) -> dict[str, str]:
        """Path (relative to the top) -> blob id of every file below `folder` in `commit`."""
        text = self.out("ls-tree", "-r", commit, "--", folder)
        ids = {}
        for line in text.splitlines():
            meta, _, path = line.partition("\t")
            parts = meta.split()
            if len(parts) == 3 and parts[1] == "blob":
                ids[path] = parts[2]
        return ids

    @staticmethod
    def blob_id(data: bytes, like: str) -> str:
        """The id git gives a file holding `data`, in the hash of `like` (SHA-1, or SHA-256 repositories)."""
        import hashlib

        algorithm = hashlib.sha256 if len(like) == 64 else hashlib.sha1
        return algorithm(b"blob %d\0" % len(data) + data).hexdigest()

    def knows_committer(self) -> bool:
        """True when git can make a commit here: user.name and user.email are set (or derivable)."""
        return self.run("var", "GIT_COMMITTER_IDENT", check=False)[0] == 0

    def file_at(self, commit: str, path: str) -> str | None:
        """The text of `path` (relative to the top) in `commit`, or None when it has no such file."""
        code, text, _ = self.run("show", f"{commit}:{path}", check=False)
        return text if code == 0 else None

    def commits_between(self, base: str | None, tip: str) -> list[str]:
        """One-line summaries of the commits in `tip` that `base` lacks, oldest first."""
        spec = [f"{base}..{tip}"] if base else [tip]
        text = self.out("log", "--reverse", "--format=%h %s", *spec)
        return text.splitlines() if text else []
