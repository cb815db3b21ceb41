"""What hkgen creates from nothing: a GitOps repository, an age key, and the cluster's secret values.

- `init_repository`: a new repository from the cookiecutter template shipped in the package
  (`templates/scaffold/`), generated with hooks refused, no user configuration and replay/cache
  folders in a temp dir, into a staging folder that becomes DIR only once it is complete and
  `hkgen validate` accepts it. Nothing is written under HOME except the age key, where asked.
- Age keys (pyrage) live outside any repository; without the private key nobody can decrypt.
- Secret values: generated in the form each key needs (join token, Zigbee keys, passwords) or
  supplied by the user (S3 and Wi-Fi credentials, custom apps' keys); a key nobody supplied gets
  `PLACEHOLDER`, which fails every key's pattern, so `hkgen secrets check` and `boot-media` catch
  it. Plaintext goes to sops on stdin, never to disk; values never appear in messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets as rnd
import shutil
import string
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2.ext import Extension

from ..config.agekeys import default_key_file
from ..config.model import Cluster
from ..config.secrets import DEPLOY_KEY, SECRET_NAME, SecretKey, optional_keys, required_keys
from ..core.errors import ConfigError, ToolError, UsageError, WriteError
from ..validation.validate import STARTER_MAC_PREFIX, STARTER_MARK, STARTER_REPO_URL, STARTER_SSH_KEY

__all__ = [
    "PLACEHOLDER",
    "Answers",
    "Created",
    "SecretsAudit",
    "SecretsChange",
    "YamlFilters",
    "add_missing_secrets",
    "audit_secrets",
    "create_secrets_file",
    "default_key_file",
    "init_repository",
    "load_cluster",
    "read_recipient",
    "starter_layout",
    "user_supplied",
]

# Fails every secret pattern hkgen has (a space, and shorter than eight characters), so a value
# nobody entered can never pass for a real one.
PLACEHOLDER = "SET ME"
MAX_NODES = 100
_LOWER_DIGITS = string.ascii_lowercase + string.digits  # MicroK8s join tokens
_ALNUM = string.ascii_letters + string.digits  # passwords: no character any config format must escape
# sops encrypts the values of these keys only; names stay readable for `hkgen validate`.
ENCRYPTED_REGEX = "^(data|stringData)$"


# --- age keys --------------------------------------------------------------------------------------


def read_recipient(key_file: Path) -> str:
    """The public key (age1...) of the private key in `key_file`."""
    import pyrage

    try:
        text = key_file.read_text("utf-8")
    except OSError as err:
        raise UsageError(f"{key_file}: cannot read the age key ({err.strerror})") from err
    for line in text.splitlines():
        if line.strip().startswith("AGE-SECRET-KEY-1"):
            try:
                return str(pyrage.x25519.Identity.from_str(line.strip()).to_public())
            except pyrage.IdentityError as err:
                raise UsageError(f"{key_file}: not a valid age key") from err
    raise UsageError(f"{key_file}: holds no age private key (AGE-SECRET-KEY-1...)")


def _new_identity() -> tuple[str, str]:
    """(private key file text, public key) of a fresh age X25519 identity."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    return f"# hkgen age key\n# public key: {public}\n{identity}\n", public


def _write_key(key_file: Path, text: str) -> None:
    """Create `key_file` readable by its owner only; never overwrite an existing key."""
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WriteError(f"{key_file}: an age key already exists there; hkgen never overwrites a key") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


# --- secret values ---------------------------------------------------------------------------------


def user_supplied(cluster: Cluster) -> set[str]:
    """Keys only the user can know: credentials of things outside the cluster."""
    names = {k.name for k in required_keys(cluster)
             if k.name.startswith(("S3_", "WIFI_PASSPHRASE_"))}
    names |= {key for app in cluster.custom_apps for _var, key in app.secret_env}
    # Alert receivers outside the cluster (heartbeat, ntfy, SMTP, webhook); HA's webhook id is made up here.
    names |= {k.name for k in required_keys(cluster)
              if k.name.startswith("ALERTS_") and not k.name.endswith("_WEBHOOK_ID")}
    return names


def _family(name: str) -> str | None:
    """Zigbee values that must differ between the networks of one house share a family."""
    if not name.startswith("ZIGBEE_"):
        return None
    for suffix in ("_EXT_PAN_ID", "_PAN_ID", "_NETWORK_KEY"):
        if name.endswith(suffix):
            return suffix
    return None


def _generate(key: SecretKey, taken: set[str]) -> str | None:
    """A strong random value in the form `key` needs, or None if hkgen cannot make one up."""
    name = key.name
    if name == DEPLOY_KEY:
        from .deploykey import generate_deploy_key

        return generate_deploy_key("hkgen deploy key")[0]
    for _ in range(100):
        if name == "JOIN_TOKEN":
            value = "".join(rnd.choice(_LOWER_DIGITS) for _ in range(32))
        elif name.endswith("_NETWORK_KEY"):
            value = rnd.token_hex(16)
        elif name.endswith("_EXT_PAN_ID"):
            value = rnd.token_hex(8)
            if value in ("0" * 16, "f" * 16):
                continue
        elif name.endswith("_PAN_ID"):
            # 0x0001-0x3FFE: Zigbee PAN ids stay below 0x3FFF; 0x0000 and 0xFFFF are reserved.
            value = f"{rnd.randbelow(0x3FFE) + 1:04x}"
        elif name.endswith("_WEBHOOK_ID"):
            value = "".join(rnd.choice(_ALNUM) for _ in range(32))
        elif name.endswith("_TOKEN"):
            value = rnd.choice(string.ascii_letters) + "".join(rnd.choice(_ALNUM) for _ in range(31))
        elif "PASSWORD" in name:
            value = "".join(rnd.choice(_ALNUM) for _ in range(32))
        else:
            return None
        # Two Zigbee networks in one house must not share a PAN id, extended PAN id or key.
        if value not in taken:
            if not re.match(key.pattern, value):
                raise AssertionError(f"generated {name} does not match its own pattern")  # a bug in hkgen
            return value
    raise AssertionError(f"could not generate a distinct value for {name}")


@dataclass
class SecretsChange:
    """Which keys a secrets command generated, took from the user, or left as placeholders (names only)."""

    generated: list[str] = field(default_factory=list)
    supplied: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # keys whose (encrypted) value is new in the file
    deploy_public: str = ""  # public half of a GIT_DEPLOY_KEY generated now (to register with the Git host)


Supply = Callable[[SecretKey, bool], str | None]  # (key, must_supply) -> value or None


def _values_for(keys: list[SecretKey], cluster: Cluster, supply: Supply, existing: Mapping[str, str],
                change: SecretsChange) -> dict[str, str]:
    from .pki import DERIVED, derive

    manual = user_supplied(cluster)
    out: dict[str, str] = {}
    for key in keys:
        if key.name in DERIVED:
            continue  # made from the others below (the CA pair together, the hash from its password)
        value = supply(key, key.name in manual)
        if value is not None:
            if not re.match(key.pattern, value):
                raise UsageError(f"the value given for {key.name} does not have the expected form: {key.description}")
            out[key.name] = value
            change.supplied.append(key.name)
            continue
        if key.name not in manual:
            family = _family(key.name)
            taken = {v.lower() for k, v in [*existing.items(), *out.items()]
                     if family and _family(k) == family and k != key.name}
            generated = _generate(key, taken)
            if generated is not None:
                out[key.name] = generated
                change.generated.append(key.name)
                if key.name == DEPLOY_KEY:
                    from .deploykey import public_key

                    change.deploy_public = public_key(generated)
                continue
        out[key.name] = PLACEHOLDER
        change.placeholders.append(key.name)
    wanted = {k.name for k in keys if k.name in DERIVED and k.name not in out}
    if wanted:
        out.update(derive(cluster, wanted, {**existing, **out}))
        change.generated += sorted(wanted)
    return out


def secret_namespace(cluster: Cluster) -> str:
    """Namespace of the `cluster-secrets` Secret: where the GitOps engine reads it."""
    return "argocd" if cluster.engine == "argocd" else "flux-system"


def _sops(args: list[str], *, cwd: Path, stdin: str | None = None, key_file: Path | None = None) -> str:
    from ..config.secrets import sops_command
    from ..core.proc import run

    env = {"SOPS_AGE_KEY_FILE": str(key_file)} if key_file else None
    done = run([sops_command(), "--disable-version-check", *args], cwd=cwd, stdin=stdin, env=env, timeout=60)
    if done.returncode != 0:
        # sops' messages name files and keys, never values.
        raise ToolError(f"sops {args[0]} failed: {done.tail(3)}")
    return done.stdout


def _replace_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.hkgen-new")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def create_secrets_file(cluster: Cluster, path: Path, supply: Supply) -> SecretsChange:
    """Encrypt every required key of `cluster` into a new SOPS file at `path` (never overwritten)."""
    from ..core.yamlio import dump

    if path.exists() or path.is_symlink():
        raise WriteError(f"{path}: already exists; `hkgen secrets add-missing` adds new keys and keeps the "
                         "others (new values would change the join token and Zigbee keys of a running house)")
    change = SecretsChange()
    values = _values_for(required_keys(cluster) + optional_keys(cluster), cluster, supply, {}, change)
    change.written = sorted(values)
    plain = dump({"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": SECRET_NAME, "namespace": secret_namespace(cluster)},
                  "type": "Opaque", "stringData": dict(sorted(values.items()))})
    encrypted = _sops(["encrypt", "--age", ",".join(cluster.age_recipients), "--encrypted-regex", ENCRYPTED_REGEX,
                       "--input-type", "yaml", "--output-type", "yaml", "--filename-override", path.name],
                      cwd=path.parent, stdin=plain)
    _replace_atomically(path, encrypted)
    return change


def add_missing_secrets(cluster: Cluster, path: Path, supply: Supply, *, key_file: Path | None) -> SecretsChange:
    """Add every required key `path` lacks (and fill placeholders the user now supplies); keep the rest.

    Uses `sops set` on a copy, so existing values keep their ciphertext (a small Git diff), then
    replaces the file in one rename.
    """
    from ..config.secrets import decrypt

    existing = decrypt(path, age_key_file=key_file)
    change = SecretsChange()
    needed = required_keys(cluster)
    missing = [k for k in needed + optional_keys(cluster) if k.name not in existing]
    filled: dict[str, str] = {}
    for key in needed:
        if existing.get(key.name) == PLACEHOLDER:
            value = supply(key, True)
            if value is not None:
                if not re.match(key.pattern, value):
                    raise UsageError(f"the value given for {key.name} does not have the expected form: "
                                     f"{key.description}")
                filled[key.name] = value
                change.supplied.append(key.name)
            else:
                change.placeholders.append(key.name)
    new = {**_values_for(missing, cluster, supply, existing, change), **filled}
    change.kept = sorted(k for k in existing if k not in new)
    change.written = sorted(new)
    if not new:
        return change
    with _edited_copy(path) as work:
        for name in sorted(new):
            _sops(["set", "--value-stdin", "--input-type", "yaml", "--output-type", "yaml", work.name,
                   f'["stringData"][{json.dumps(name)}]'], cwd=path.parent, stdin=json.dumps(new[name]),
                  key_file=key_file)
    return change


@contextlib.contextmanager
def _edited_copy(path: Path) -> Iterator[Path]:
    """A copy of `path` for sops to change in place; it replaces `path` in one rename when the
    block succeeds, and is removed whatever happens.
    """
    work = path.with_name(f".{path.name}.hkgen-new")
    shutil.copyfile(path, work)
    try:
        yield work
        work.replace(path)
    finally:
        work.unlink(missing_ok=True)


@dataclass
class Rekeyed:
    """What `rekey_secrets` changed: age recipients added and removed (public keys only)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def file_recipients(path: Path) -> list[str]:
    """The age recipients a SOPS file is encrypted to (from its metadata; nothing decrypted)."""
    from ..config.agekeys import sops_age_recipients
    from ..config.load import load_file

    recipients = sops_age_recipients(load_file(path).data)
    if recipients is None:
        raise UsageError(f"{path}: not a SOPS file encrypted with age (no sops.age metadata)")
    return recipients


def rekey_secrets(cluster: Cluster, path: Path, *, key_file: Path | None) -> Rekeyed:
    """Re-encrypt `path` for exactly the cluster's `secrets.ageRecipients`, with a new data key.

    For a new admin's key, a lost laptop or a departed housemate: edit the recipients in
    cluster.yaml, then rekey. `sops rotate` replaces the data key too, so a removed key cannot
    read any value written from now on. The file is rewritten on a copy and replaced in one
    rename; a key that cannot decrypt the file changes nothing.
    """
    from ..config.secrets import decrypt

    current = file_recipients(path)
    wanted = list(cluster.age_recipients)
    change = Rekeyed([r for r in wanted if r not in current], [r for r in current if r not in wanted])
    decrypt(path, age_key_file=key_file)  # the key must read the file before anything changes
    if not change.added and not change.removed:
        return change
    args = ["rotate", "--in-place", "--input-type", "yaml", "--output-type", "yaml"]
    if change.added:
        args += ["--add-age", ",".join(change.added)]
    if change.removed:
        args += ["--rm-age", ",".join(change.removed)]
    with _edited_copy(path) as work:
        _sops([*args, work.name], cwd=path.parent, key_file=key_file)
        now = file_recipients(work)
        if sorted(now) != sorted(wanted):  # sops did something else: keep the old file
            raise ToolError(f"sops rotate left {path.name} encrypted to {len(now)} recipient(s), "
                            f"not the {len(wanted)} of cluster.yaml; nothing was changed")
    return change


@dataclass
class SecretsAudit:
    """Findings of `hkgen secrets check`, by key name; never values."""

    missing: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    file_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every required key is present, real and well-formed."""
        return not (self.missing or self.placeholders or self.malformed or self.duplicates or self.file_problems)


def audit_secrets(cluster: Cluster, values: Mapping[str, str]) -> SecretsAudit:
    """Compare decrypted `values` with what `cluster` needs."""
    audit = SecretsAudit()
    needed = required_keys(cluster)
    for key in needed:
        value = values.get(key.name)
        if value is None:
            audit.missing.append(f"{key.name}: missing ({key.description})")
        elif value == PLACEHOLDER:
            audit.placeholders.append(f"{key.name}: not set yet ({key.description})")
        elif not re.match(key.pattern, value):
            audit.malformed.append(f"{key.name}: does not have the expected form ({key.description})")
    for family in ("_NETWORK_KEY", "_EXT_PAN_ID", "_PAN_ID"):
        _same(audit, [k.name for k in needed if _family(k.name) == family], values)
    wanted = {k.name for k in needed}
    audit.unused = sorted(k for k in values if k not in wanted)
    return audit


def _same(audit: SecretsAudit, names: list[str], values: Mapping[str, str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        value = values.get(name)
        if value is None or value == PLACEHOLDER:
            continue
        if value.lower() in seen:
            audit.duplicates.append(f"{name}: same value as {seen[value.lower()]} (two Zigbee networks must differ)")
        seen.setdefault(value.lower(), name)


def load_cluster(path: Path) -> tuple[Cluster, Path]:
    """The validated model of the cluster at `path` (its secrets file may be missing) and its folder."""
    from ..config.load import load_file
    from ..pipeline import cluster_file_for, display_name
    from ..validation.validate import validate_document

    file = cluster_file_for(path)
    result = validate_document(load_file(file, display_name(file)))
    if result.cluster is None:
        raise ConfigError(result.problems)
    return result.cluster, file.parent


# --- the repository template -------------------------------------------------------------------------


class YamlFilters(Extension):
    """Cookiecutter Jinja extension: hkgen's `yaml` filter, so every answer is quoted safely."""

    def __init__(self, environment: Any) -> None:
        from ..core.yamlio import scalar

        super().__init__(environment)
        environment.filters["yaml"] = scalar


@dataclass(frozen=True)
class Answers:
    """What `hkgen init` asks (flags or prompts)."""

    name: str = "home"
    nodes: int = 3
    engine: str = "flux"
    domain: str = "home.arpa"
    timezone: str = "Etc/UTC"
    repo_url: str = STARTER_REPO_URL
    ssh_key: str | None = None  # one OpenSSH public key line; None -> an obvious placeholder
    hooks_repo: str = ""  # "" -> local hooks running the installed hkgen
    hooks_rev: str = ""


# Nobody holds the private half of this key, so it opens nothing; `hkgen validate` warns about it
# and `hkgen boot-media` refuses it (validate.starter_placeholders), like the starter's MACs and ids.
PLACEHOLDER_SSH_KEY = STARTER_SSH_KEY


def starter_layout(nodes: int) -> dict[str, Any]:
    """Nodes, addresses and apps of a starter cluster of `nodes` Raspberry Pi 4 (4 GB, USB SSD each).

    1 node is a declared single-node cluster; 3 or more are HA with three control planes (MicroK8s
    keeps three dqlite voters); from six nodes on, cp2 and cp3 only keep the datastore, as in the
    reference cluster. 2 nodes cannot keep quorum and are refused.
    """
    if nodes == 2 or not 1 <= nodes <= MAX_NODES:
        raise UsageError(f"--nodes {nodes}: a cluster has 1 node (single-node) or 3 to {MAX_NODES} "
                         "(two control planes cannot keep quorum)")
    single = nodes == 1
    cps = 1 if single else 3
    out: list[dict[str, Any]] = []
    for i in range(nodes):
        cp = i < cps
        host = f"cp{i + 1}" if cp else f"w{i - cps + 1}"
        ip = f"192.168.1.{11 + i}" if cp else f"192.168.1.{21 + i - cps}"
        schedulable = not (cp and i > 0 and nodes >= 6)
        out.append({"hostname": host, "role": "control-plane" if cp else "worker", "schedulable": schedulable,
                    "ip": ip, "mac": f"{STARTER_MAC_PREFIX}{(i + 1) // 256:02x}:{(i + 1) % 256:02x}",
                    "disk": f"usb-{STARTER_MARK}-WITH-SSD-ID-of-{host}-0:0" if schedulable else None})
    zigbee_node = next((n["hostname"] for n in out if n["role"] == "worker"), out[0]["hostname"])
    return {
        "single": single,
        "replicas": 1 if single else 3,
        "nodes": out,
        "zigbee_node": zigbee_node,
        "monitoring": not single,
        # Three 4 GB Pis cannot hold Grafana's three Postgres instances and still move everything
        # off any one of them: the plan's verdict (and so validate) would refuse `topology: ha`.
        "grafana": nodes >= 4,
    }


def init_repository(dest: Path, answers: Answers, key_file: Path, *, template: Path | None = None) -> Created:
    """Create the repository at `dest` (absent or empty) and the age key at `key_file` if absent."""
    from cookiecutter.main import cookiecutter

    from .. import __version__
    from ..config.schema import cluster_schema, composed_schema_text
    from ..core.resources import data_dir
    from ..pipeline import display_name, validate_cluster

    dest = dest.absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: already exists and is not empty; hkgen init creates a new repository")
    if key_file.absolute().resolve().is_relative_to(dest.resolve()):
        raise UsageError(f"{key_file}: the age key must live outside the repository (it decrypts every secret)")
    from .repoinit import hkgen_requirement, init_git, refuse_nested

    refuse_nested(dest)
    layout = starter_layout(answers.nodes)
    if key_file.exists():
        key_text, recipient = None, read_recipient(key_file)
    else:
        key_text, recipient = _new_identity()
    context = {
        "repo_dir": dest.name, "cluster_name": answers.name, "nodes": answers.nodes, "engine": answers.engine,
        "domain": answers.domain, "timezone": answers.timezone, "repo_url": answers.repo_url,
        "ssh_key": answers.ssh_key or PLACEHOLDER_SSH_KEY, "age_recipient": recipient,
        "hooks_repo": answers.hooks_repo, "hooks_rev": answers.hooks_rev or f"v{__version__}",
        "hkgen_version": __version__,
        "hkgen_pip": hkgen_requirement(answers.hooks_repo, answers.hooks_rev, __version__),
        "format_version": cluster_schema()["properties"]["version"]["const"],
        "_layout": layout,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hkgen-init-", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="hkgen-cookiecutter-") as scratch:
            config = {"cookiecutters_dir": str(Path(scratch) / "templates"),
                      "replay_dir": str(Path(scratch) / "replay"), "default_context": {}, "abbreviations": {}}
            project = Path(cookiecutter(
                str(template or data_dir("templates") / "scaffold"), no_input=True, extra_context=context,
                output_dir=str(staging), default_config=config, accept_hooks=False,
            ))
        cluster_dir = project / "clusters" / answers.name
        # The schema beside the clusters, for editors (cluster.yaml's first line points at it).
        (project / "schemas").mkdir()
        (project / "schemas" / "cluster.schema.json").write_text(composed_schema_text(), "utf-8")
        cluster, _ = load_cluster(cluster_dir)
        change = create_secrets_file(cluster, cluster_dir / cluster.secrets_file, lambda _key, _manual: None)
        _doc, validation = validate_cluster(cluster_dir)
        if validation.errors:
            raise ConfigError(validation.problems)
        # Located at the file's final place, not the staging folder.
        final = display_name(dest / "clusters" / answers.name / "cluster.yaml")
        warnings = [dataclasses.replace(p, file=final).format() for p in validation.warnings]
        if key_text is not None:
            _write_key(key_file, key_text)
        if dest.exists():  # an empty folder (perhaps the shell's current one): fill it, keep it
            for child in sorted(project.iterdir()):
                child.replace(dest / child.name)
        else:
            project.replace(dest)
        init_git(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Created(dest, dest / "clusters" / answers.name, key_file, key_text is not None, recipient, change,
                   warnings)


@dataclass(frozen=True)
class Created:
    """What `hkgen init` made."""

    repo: Path
    cluster_dir: Path
    key_file: Path
    key_created: bool
    recipient: str
    secrets: SecretsChange
    warnings: list[str]
