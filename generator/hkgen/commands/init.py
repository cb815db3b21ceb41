"""`hkgen init DIR`: a new GitOps repository with a starter cluster, its age key and encrypted secrets."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from ._common import err, out

CACHE = False  # a new user's first command leaves nothing under HOME but the age key
NAME = "init"
HELP = "create a new GitOps repository: starter cluster.yaml, .sops.yaml, pre-commit hooks, age key, secrets"

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")
_URL = re.compile(r"^(https://|ssh://)[A-Za-z0-9@._~:/+-]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_SSH_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
_PUBKEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( \S.*)?$")


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen init`."""
    parser.add_argument("dir", metavar="DIR", help="the new repository (must not exist, or be empty)")
    parser.add_argument("--name", help="cluster name (default: home)")
    parser.add_argument("--nodes", type=int, help="number of Raspberry Pis: 1 (single node) or 3+ (default: 3)")
    parser.add_argument("--engine", choices=("flux", "argocd"), help="GitOps engine (default: flux)")
    parser.add_argument("--repo-url", help="ssh:// or https:// URL the engine pulls this repository from")
    parser.add_argument("--timezone", help="IANA time zone of the nodes (default: Etc/UTC)")
    parser.add_argument("--domain", help="DNS domain of the home network (default: home.arpa)")
    parser.add_argument("--ssh-key", metavar="FILE",
                        help="admin's public SSH key (default: ~/.ssh/id_ed25519.pub etc. if present)")
    parser.add_argument("--age-key", metavar="FILE",
                        help="age key to create, or to reuse if it exists (default: ~/.config/hkgen/<name>.agekey)")
    parser.add_argument("--hooks-repo", metavar="URL",
                        help="use hkgen's hooks from this git repository in .pre-commit-config.yaml "
                             "(default: local hooks running the installed hkgen)")
    parser.add_argument("--hooks-rev", metavar="REV", help="revision of --hooks-repo (default: v<hkgen version>)")
    parser.add_argument("--no-input", action="store_true", help="never prompt; use flags and defaults")


def _ask(label: str, default: str, check: Callable[[str], str | None]) -> str:
    """Prompt until `check` accepts the answer (it returns an error message or None)."""
    while True:
        sys.stderr.write(f"{label} [{default}]: ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # end of input: take the default
            return default
        answer = line.strip() or default
        problem = check(answer)
        if problem is None:
            return answer
        err(f"  {problem}")


def _nodes_problem(text: str) -> str | None:
    if not text.isdigit() or int(text) == 2 or not 1 <= int(text) <= 100:
        return "1 (single node) or 3 to 100: two control planes cannot keep quorum"
    return None


def _zone_problem(text: str) -> str | None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {text!r} (e.g. Europe/Berlin, America/New_York, Etc/UTC)"
    return None


def _checked(value: str, problem: str | None, flag: str) -> str:
    from ..core.errors import UsageError

    if problem:
        raise UsageError(f"{flag} {value!r}: {problem}")
    return value


CHECKS: dict[str, Callable[[str], str | None]] = {
    "name": lambda v: None if _NAME.match(v) else "lowercase letters, digits and '-', starting with a letter",
    "nodes": _nodes_problem,
    "engine": lambda v: None if v in ("flux", "argocd") else "flux or argocd",
    "repo_url": lambda v: None if _URL.match(v) else "an ssh:// or https:// URL",
    "timezone": _zone_problem,
    "domain": lambda v: None if _DOMAIN.match(v) else "a lowercase DNS domain like home.arpa",
}


def _ssh_key(args: argparse.Namespace) -> str | None:
    from ..core.errors import UsageError

    candidates = [Path(args.ssh_key)] if args.ssh_key else [Path.home() / ".ssh" / n for n in _SSH_KEYS]
    for path in candidates:
        if path.is_file():
            text = path.read_text("utf-8", "replace").strip()
            if not _PUBKEY.match(text):
                raise UsageError(f"{path}: not an OpenSSH public key (one line 'ssh-ed25519 AAAA... comment')")
            return text
        if args.ssh_key:
            raise UsageError(f"{path}: no such file")
    return None


def run(args: argparse.Namespace) -> int:
    """Ask what is missing, create the repository, and say what to do next."""
    from ..ops.scaffold import Answers, default_key_file, init_repository

    defaults = Answers()
    given = {"name": args.name, "nodes": None if args.nodes is None else str(args.nodes), "engine": args.engine,
             "repo_url": args.repo_url, "timezone": args.timezone, "domain": args.domain}
    interactive = not args.no_input and sys.stdin.isatty()
    labels = {"name": "cluster name", "nodes": "number of Raspberry Pis", "engine": "GitOps engine (flux/argocd)",
              "repo_url": "repository URL the cluster pulls from", "timezone": "time zone", "domain": "home DNS domain"}
    values: dict[str, str] = {}
    for key, check in CHECKS.items():
        default = str(getattr(defaults, key))
        if given[key] is not None:
            values[key] = _checked(given[key], check(given[key]), "--" + key.replace("_", "-"))
        elif interactive:
            values[key] = _ask(labels[key], default, check)
        else:
            values[key] = default
    answers = Answers(name=values["name"], nodes=int(values["nodes"]), engine=values["engine"],
                      domain=values["domain"], timezone=values["timezone"], repo_url=values["repo_url"],
                      ssh_key=_ssh_key(args), hooks_repo=args.hooks_repo or "", hooks_rev=args.hooks_rev or "")
    key_file = Path(args.age_key) if args.age_key else default_key_file(answers.name, os.environ)
    created = init_repository(Path(args.dir), answers, key_file)

    for warning in created.warnings:
        out(warning)
    cluster = created.cluster_dir.relative_to(created.repo)
    out(f"created {created.repo}")
    if created.key_created:
        out(f"created age key {created.key_file} (public key {created.recipient}); back it up, it is the only "
            "way to decrypt the secrets")
    else:
        out(f"reused age key {created.key_file} (public key {created.recipient})")
    out(f"generated secrets: {', '.join(created.secrets.generated) or 'none'}")
    if created.secrets.deploy_public:
        from ..ops.deploykey import register_hint
        from ..ops.scaffold import load_cluster

        out(f"Git deploy key (public half): {created.secrets.deploy_public}")
        out(register_hint(load_cluster(created.cluster_dir / "cluster.yaml")[0]))
    if created.secrets.placeholders:
        out(f"still to enter (`hkgen secrets add-missing {cluster}`): {', '.join(created.secrets.placeholders)}")
    if answers.ssh_key is None:
        out("no SSH public key found: replace the placeholder under os.admins in cluster.yaml, or you cannot log in")
    out("next: fill in the REPLACE-... values and MAC addresses in "
        f"{cluster}/cluster.yaml (`hkgen validate` warns about each one left; `hkgen boot-media` refuses a Pi "
        f"that still has one), then: cd {created.repo} && hkgen validate {cluster} && hkgen render {cluster}")
    err(f"{created.repo}: ready ({answers.nodes} node(s), {answers.engine})")
    return 0
