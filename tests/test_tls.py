"""HTTPS, logins and trust: the internal CA and the web login made by `hkgen secrets` (real sops,
real openssl), `hkgen ca export`, the cert-manager objects against cert-manager's own CRDs, and the
rendered tree's promise that no web UI is reachable through the ingress without TLS and a login.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import secret_in, write_secrets
from hkgen.config.secrets import decrypt
from hkgen.core.yamlio import make_yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CERT_MANAGER_CHART = SHARED / "charts" / "cert-manager-1.19.1"
PROMETHEUS_CHART = SHARED / "charts" / "kube-prometheus-stack-88.5.3"
SAFE = YAML(typ="safe", pure=True)
# Web UIs with a login of their own (Home Assistant's users, Grafana's, zigbee2mqtt's frontend token).
OWN_LOGIN = {"home-assistant", "grafana", "zigbee2mqtt-house", "zigbee2mqtt-garden", "zigbee2mqtt-attic"}
AUTH = "nginx.ingress.kubernetes.io/auth-type"


def _helm_docs(out: dict[str, str]) -> list[dict[str, Any]]:
    """Objects of a Helm render: templates only (not NOTES.txt), split where Helm splits ('---' at a
    line start, which cert-manager follows with a comment)."""
    docs: list[dict[str, Any]] = []
    for name, text in out.items():
        if name.endswith((".yaml", ".yml", ".tpl")):
            for part in re.split(r"^---", text, flags=re.M):
                doc = SAFE.load(part.split("\n", 1)[1] if part.startswith("#") else part) if part.strip() else None
                if isinstance(doc, dict) and "kind" in doc:
                    docs.append(doc)
    return docs


def _pem(value: str) -> str:
    return base64.b64decode(value).decode()


def _openssl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)


def _edit(cluster_dir: Path, edit: Any) -> None:
    yaml = make_yaml()
    path = cluster_dir / "cluster.yaml"
    data = yaml.load(path.read_text())
    edit(data)
    with path.open("w") as fh:
        yaml.dump(data, fh)


@pytest.fixture
def initialised(hkgen: Any, home_copy: Path) -> tuple[Path, Path, dict[str, str]]:
    """The reference cluster with a fresh age key and a secrets file made by `hkgen secrets init`."""
    key, _ = write_secrets(home_copy)  # re-points cluster.yaml at a new key
    (home_copy / "secrets.sops.yaml").unlink()
    run = hkgen("secrets", "init", "clusters/home", "--no-input", cwd=home_copy.parent.parent,
                env={"SOPS_AGE_KEY_FILE": str(key)})
    assert run.returncode == 0, run.stdout + run.stderr
    values = decrypt(home_copy / "secrets.sops.yaml", age_key_file=key)
    for name, value in values.items():
        assert not secret_in(value, run.stdout + run.stderr) or len(value) < 8, f"{name} was printed"
    return home_copy, key, values


def test_secrets_init_makes_a_name_constrained_ca_and_the_login_hash(initialised: tuple[Path, Path, dict[str, str]],
                                                                      tmp_path: Path) -> None:
    _cluster, _key, values = initialised
    key, cert = _pem(values["INTERNAL_CA_KEY"]), _pem(values["INTERNAL_CA_CERT"])
    text = _openssl("x509", "-noout", "-text", stdin=cert).stdout
    assert "CA:TRUE, pathlen:0" in text and "Certificate Sign" in text
    assert "Permitted:" in text and "DNS:home.arpa" in text and "IP:192.168.10.0/255.255.255.0" in text
    assert "ASN1 OID: prime256v1" in text
    # The key belongs to the certificate.
    pub_of_key = _openssl("pkey", "-pubout", stdin=key).stdout
    pub_of_cert = _openssl("x509", "-noout", "-pubkey", stdin=cert).stdout
    assert pub_of_key == pub_of_cert and "BEGIN PUBLIC KEY" in pub_of_key
    # The htpasswd line checks against the password (the same crypt, recomputed with its salt).
    user, hashed = _pem(values["WEB_ADMIN_HTPASSWD"]).strip().split(":", 1)
    salt = hashed.split("$")[2]
    again = _openssl("passwd", "-6", "-salt", salt, "-stdin", stdin=values["WEB_ADMIN_PASSWORD"] + "\n").stdout
    assert user == "admin" and again.strip() == hashed
    wrong = _openssl("passwd", "-6", "-salt", salt, "-stdin", stdin="not-the-password\n").stdout
    assert wrong.strip() != hashed


def test_add_missing_keeps_the_ca(hkgen: Any, initialised: tuple[Path, Path, dict[str, str]]) -> None:
    """A rebuild must not change the CA (phones trust it): add-missing adds new keys, keeps it."""
    cluster, key, before = initialised
    _edit(cluster, lambda d: d["apps"]["mosquitto"]["users"].append("tasmota"))
    run = hkgen("secrets", "add-missing", "clusters/home", "--no-input", cwd=cluster.parent.parent,
                env={"SOPS_AGE_KEY_FILE": str(key)})
    assert run.returncode == 0, run.stderr
    after = decrypt(cluster / "secrets.sops.yaml", age_key_file=key)
    assert after["INTERNAL_CA_CERT"] == before["INTERNAL_CA_CERT"]
    assert after["INTERNAL_CA_KEY"] == before["INTERNAL_CA_KEY"]
    assert "MQTT_PASSWORD_TASMOTA" in after


def test_ca_export_writes_the_certificate_and_says_how_to_trust_it(
        hkgen: Any, initialised: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    cluster, key, values = initialised
    dest = tmp_path / "home-ca.crt"
    run = hkgen("ca", "export", str(cluster), "-o", str(dest), env={"SOPS_AGE_KEY_FILE": str(key)})
    assert run.returncode == 0, run.stderr
    assert dest.read_text() == _pem(values["INTERNAL_CA_CERT"])
    assert "PRIVATE KEY" not in dest.read_text() and not secret_in(values["INTERNAL_CA_KEY"], run.stdout + run.stderr)
    assert "iPhone" in run.stderr and "Android" in run.stderr and "home.arpa" in run.stderr
    assert re.search(r"until \w{3} +\d+ [\d:]+ \d{4} GMT", run.stderr)
    stdout = hkgen("ca", "export", str(cluster), "-o", "-", env={"SOPS_AGE_KEY_FILE": str(key)})
    assert stdout.returncode == 0 and stdout.stdout == dest.read_text()
    # Without a key that can read the secrets: a located user error, nothing written.
    other = tmp_path / "other"
    denied = hkgen("ca", "export", str(cluster), "-o", str(other), env={"SOPS_AGE_KEY_FILE": str(tmp_path / "none")})
    assert denied.returncode == 1 and not other.exists()  # a key that cannot decrypt is a user mistake (exit 1)


# --- the rendered tree -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """The reference cluster rendered by the real CLI pipeline (with a throwaway secrets file)."""
    import shutil
    import sys

    root = tmp_path_factory.mktemp("tls-tree")
    cluster = root / "clusters" / "home"
    cluster.mkdir(parents=True)
    shutil.copy2(REPO / "clusters" / "home" / "cluster.yaml", cluster / "cluster.yaml")
    write_secrets(cluster)
    done = subprocess.run([sys.executable, "-m", "hkgen", "render", str(cluster)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    docs: list[dict[str, Any]] = []
    for path in sorted(cluster.rglob("*.yaml")):
        if path.name in ("cluster.yaml", "secrets.sops.yaml", "kustomization.yaml"):
            continue
        docs += [d for d in SAFE.load_all(path.read_text()) if isinstance(d, dict) and "kind" in d]
    yield cluster, docs


def _values(doc: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = doc["spec"].get("values", {})
    return values


@cache
def _strict_crd(kind: str) -> Any:
    """cert-manager's own CRD schema of `kind` (rendered from the pinned chart), with every object
    that lists its properties closed, so a misspelled field fails too."""
    import helm_python as helm
    from jsonschema import Draft7Validator

    with helm.Chart.load(str(CERT_MANAGER_CHART)) as chart:
        out = chart.render({"crds": {"enabled": True}}, name="cert-manager", namespace="cert-manager")
    for doc in _helm_docs(out):
        if doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == kind:
            schema = next(v for v in doc["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
            return Draft7Validator(_closed(schema))
    raise AssertionError(f"no CRD for {kind} in {CERT_MANAGER_CHART}")


def _closed(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _closed(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


def _shared_crd(kind: str) -> Any:
    from jsonschema import Draft7Validator

    path = SHARED / "schemas" / "crds" / "cert-manager.io" / f"{kind.lower()}_v1.json"
    return Draft7Validator(json.loads(path.read_text()))


def _cert_manager_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["apiVersion"] == "cert-manager.io/v1"]


def test_issuers_and_certificates_validate_against_cert_managers_crds(tree: tuple[Path, list[dict[str, Any]]]) -> None:
    _cluster, docs = tree
    found = _cert_manager_docs(docs)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in found) == [
        ("Certificate", "mosquitto-tls"), ("ClusterIssuer", "hkgen-internal-ca")]
    for doc in found:
        for validator in (_shared_crd(doc["kind"]), _strict_crd(doc["kind"])):
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
            assert errors == [], f"{doc['kind']}/{doc['metadata']['name']}: {errors}"
    # The CA Issuer's Secret is in cert-manager's namespace, with the CA from the secrets file.
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "hkgen-internal-ca")
    assert secret["metadata"]["namespace"] == "cert-manager" and secret["type"] == "kubernetes.io/tls"
    assert secret["data"] == {"tls.crt": "${INTERNAL_CA_CERT}", "tls.key": "${INTERNAL_CA_KEY}"}


def test_acme_issuers_validate_too(tmp_path: Path) -> None:
    """Both DNS-01 solvers, rendered for a domain the user owns, against the same schemas."""
    from hkgen.areas import certificates
    from hkgen.config.load import load_file
    from hkgen.render.jinja import render_file
    from hkgen.validation.validate import validate_document

    for solver, extra in (("cloudflare", {}), ("rfc2136", {"rfc2136": {"nameserver": "203.0.113.53:53",
                                                                      "keyName": "hkgen"}})):
        yaml = make_yaml()
        data = yaml.load((REPO / "clusters" / "home" / "cluster.yaml").read_text())
        data["cluster"]["domain"] = "home.example.org"
        data["tls"] = {"issuer": "acme", "acme": {"email": "ops@example.org", "solver": solver, **extra}}
        path = tmp_path / f"{solver}.yaml"
        with path.open("w") as fh:
            yaml.dump(data, fh)
        result = validate_document(load_file(path))
        assert result.cluster is not None, [p.format() for p in result.errors]
        comp = next(c for c in certificates.components(result.cluster) if c.name == "cluster-issuers")
        docs = [d for f in comp.files for d in SAFE.load_all(render_file(f, {"cluster": result.cluster}, "x"))
                if isinstance(d, dict)]
        issuer = next(d for d in docs if d["kind"] == "ClusterIssuer" and d["metadata"]["name"] == "hkgen-acme")
        for validator in (_shared_crd("ClusterIssuer"), _strict_crd("ClusterIssuer")):
            assert [e.message for e in validator.iter_errors(issuer)] == []
        dns01 = issuer["spec"]["acme"]["solvers"][0]["dns01"]
        assert list(dns01) == [solver]
        credential = next(d for d in docs if d["metadata"]["name"] == "hkgen-acme-dns")["stringData"]["credential"]
        assert credential == ("${CLOUDFLARE_API_TOKEN}" if solver == "cloudflare" else "${RFC2136_TSIG_SECRET}")


def _prometheus_ingress(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ingresses kube-prometheus-stack (the pinned chart) makes from the rendered values."""
    import helm_python as helm

    with helm.Chart.load(str(PROMETHEUS_CHART)) as chart:
        out = chart.render(values, name="kube-prometheus-stack", namespace="monitoring")
    return [d for d in _helm_docs(out) if d.get("kind") == "Ingress"]


def test_no_web_ui_without_tls_and_a_login(tree: tuple[Path, list[dict[str, Any]]]) -> None:
    _cluster, docs = tree
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    release = next(d for d in docs if d["kind"] == "HelmRelease" and d["metadata"]["name"] == "kube-prometheus-stack")
    ingresses += _prometheus_ingress(_values(release))
    issuers = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterIssuer"}
    secrets = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs if d["kind"] == "Secret"}
    names = set()
    for ing in ingresses:
        name = ing["metadata"]["name"]
        names.add(name)
        notes = ing["metadata"].get("annotations", {})
        hosts = {r["host"] for r in ing["spec"]["rules"]}
        assert {h for t in ing["spec"].get("tls", []) for h in t["hosts"]} >= hosts, f"{name}: a host without TLS"
        assert notes.get("cert-manager.io/cluster-issuer") in issuers, f"{name}: no existing issuer"
        assert notes.get("nginx.ingress.kubernetes.io/force-ssl-redirect") == "true", f"{name}: http not redirected"
        if name not in OWN_LOGIN:
            assert notes.get(AUTH) == "basic", f"{name}: a UI without a login of its own is open"
            secret = secrets[(ing["metadata"].get("namespace", "monitoring"),
                              notes["nginx.ingress.kubernetes.io/auth-secret"])]
            assert secret["data"] == {"auth": "${WEB_ADMIN_HTPASSWD}"}
    assert "kube-prometheus-stack-prometheus" in names  # Prometheus is served, behind the login
    # Thanos query, Alertmanager and the Longhorn UI are not exposed at all.
    assert not any("thanos" in n or "alertmanager" in n or "longhorn" in n for n in names)


def test_dns_server_answers_for_the_domain_on_its_address(tree: tuple[Path, list[dict[str, Any]]]) -> None:
    import helm_python as helm

    _cluster, docs = tree
    release = next(d for d in docs if d["kind"] == "HelmRelease" and d["metadata"]["name"] == "k8s-gateway")
    values = _values(release)
    with helm.Chart.load(str(SHARED / "charts" / "k8s-gateway-2.4.0")) as chart:
        # The chart has no values schema: every key hkgen sets must be one it knows.
        assert set(values) <= set(chart.values), set(values) - set(chart.values)
        assert set(values["service"]) <= set(chart.values["service"]) | {"annotations"}
        out = chart.render(values, name="k8s-gateway", namespace="dns-gateway")
    rendered = _helm_docs(out)
    service = next(d for d in rendered if d.get("kind") == "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"]["metallb.universe.tf/loadBalancerIPs"] == "192.168.10.202"
    assert {p["protocol"] for p in service["spec"]["ports"]} == {"UDP", "TCP"}
    corefile = next(d for d in rendered if d.get("kind") == "ConfigMap")["data"]["Corefile"]
    assert "k8s_gateway home.arpa" in corefile and "resources Ingress Service" in corefile


def test_encrypted_critical_volumes_are_opt_in(tmp_path: Path) -> None:
    """storage.backup.encryptVolumes: the critical StorageClass asks Longhorn for LUKS with the
    passphrase from the secrets file; off by default (a Pi 4 does AES in software)."""
    from hkgen.areas import platform
    from hkgen.config.load import load_file
    from hkgen.config.secrets import required_keys
    from hkgen.render.jinja import render_file
    from hkgen.validation.validate import validate_document

    def classes_and_keys(encrypt: bool | None) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], set[str]]:
        yaml = make_yaml()
        data = yaml.load((REPO / "clusters" / "home" / "cluster.yaml").read_text())
        if encrypt is not None:
            data["storage"]["backup"]["encryptVolumes"] = encrypt
        path = tmp_path / f"{encrypt}.yaml"
        with path.open("w") as fh:
            yaml.dump(data, fh)
        result = validate_document(load_file(path))
        assert result.cluster is not None, [p.format() for p in result.errors]
        comp = next(c for c in platform.components(result.cluster) if c.name == "longhorn-config")
        docs = [d for f in comp.files for d in SAFE.load_all(render_file(f, {"cluster": result.cluster}, "x"))
                if isinstance(d, dict)]
        classes = {d["metadata"]["name"]: d["parameters"] for d in docs if d["kind"] == "StorageClass"}
        return classes, [d for d in docs if d["kind"] == "Secret"], {k.name for k in required_keys(result.cluster)}

    classes, secrets, keys = classes_and_keys(None)
    assert not any("encrypted" in p for p in classes.values()) and secrets == []
    assert "LONGHORN_ENCRYPTION_PASSWORD" not in keys
    classes, secrets, keys = classes_and_keys(True)
    critical = classes["longhorn-critical"]
    assert critical["encrypted"] == "true"
    for step in ("provisioner", "node-publish", "node-stage"):
        assert critical[f"csi.storage.k8s.io/{step}-secret-name"] == "longhorn-crypto"
        assert critical[f"csi.storage.k8s.io/{step}-secret-namespace"] == "longhorn-system"
    assert "encrypted" not in classes["longhorn-local"]  # local volumes never leave the house
    (secret,) = secrets
    assert secret["metadata"] == {"name": "longhorn-crypto", "namespace": "longhorn-system",
                                  "labels": {"app.kubernetes.io/managed-by": "hkgen"}}
    assert secret["stringData"]["CRYPTO_KEY_VALUE"] == "${LONGHORN_ENCRYPTION_PASSWORD}"
    assert secret["stringData"]["CRYPTO_KEY_PROVIDER"] == "secret"
    assert "LONGHORN_ENCRYPTION_PASSWORD" in keys


def test_with_traefik_the_uis_without_a_login_are_not_exposed(tmp_path: Path) -> None:
    """MicroK8s 1.35+ runs Traefik, which asks for a login only through its own Middleware objects:
    hkgen does not expose Prometheus there rather than expose it open. The other UIs keep TLS."""
    from hkgen.areas import workloads
    from hkgen.config.load import load_file
    from hkgen.render.jinja import render_file
    from hkgen.validation.validate import validate_document

    yaml = make_yaml()
    data = yaml.load((REPO / "clusters" / "home" / "cluster.yaml").read_text())
    data["microk8s"]["channel"] = "1.35/stable"
    path = tmp_path / "cluster.yaml"
    with path.open("w") as fh:
        yaml.dump(data, fh)
    result = validate_document(load_file(path))
    assert result.cluster is not None, [p.format() for p in result.errors]
    comps = {c.name: c for c in workloads.components(result.cluster)}
    prometheus = next(r for r in comps["monitoring"].releases if r.name == "kube-prometheus-stack")
    assert prometheus.values["prometheus"]["ingress"]["enabled"] is False
    ha = next(f for f in comps["home-assistant"].files if str(f.path) == "ingress.yaml")
    ingress = SAFE.load(render_file(ha, {"cluster": result.cluster}, "x"))
    assert ingress["spec"]["tls"] == [{"hosts": ["home-assistant.home.arpa"], "secretName": "home-assistant-tls"}]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "hkgen-internal-ca"}


def test_a_custom_app_is_behind_the_admin_login_unless_it_has_its_own(tmp_path: Path) -> None:
    from hkgen.areas import workloads
    from hkgen.config.load import load_file
    from hkgen.config.secrets import required_keys
    from hkgen.render.jinja import render_file
    from hkgen.validation.validate import validate_document

    yaml = make_yaml()
    data = yaml.load((REPO / "clusters" / "home" / "cluster.yaml").read_text())
    data["apps"]["monitoring"]["enabled"] = False  # so only the custom app needs the login
    data["customApps"] = [{"name": "node-red", "image": "docker.io/nodered/node-red:4.1.2", "port": 1880},
                          {"name": "music", "image": "docker.io/library/nginx:1.29.3", "port": 80, "login": "own"}]
    path = tmp_path / "cluster.yaml"
    with path.open("w") as fh:
        yaml.dump(data, fh)
    result = validate_document(load_file(path))
    assert result.cluster is not None, [p.format() for p in result.errors]
    assert {"WEB_ADMIN_PASSWORD", "WEB_ADMIN_HTPASSWD"} <= {k.name for k in required_keys(result.cluster)}
    comps = {c.name: c for c in workloads.components(result.cluster)}

    def docs(name: str) -> dict[str, dict[str, Any]]:
        out = {}
        for f in comps[name].files:
            for d in SAFE.load_all(render_file(f, {"cluster": result.cluster}, "x")):
                if isinstance(d, dict) and "kind" in d:
                    out[d["kind"]] = d
        return out

    red = docs("node-red")
    notes = red["Ingress"]["metadata"]["annotations"]
    assert notes[AUTH] == "basic" and notes["nginx.ingress.kubernetes.io/auth-secret"] == "node-red-login"
    assert red["Secret"]["metadata"]["name"] == "node-red-login" and red["Secret"]["metadata"]["namespace"] == "apps"
    assert red["Secret"]["data"] == {"auth": "${WEB_ADMIN_HTPASSWD}"}
    music = docs("music")
    assert AUTH not in music["Ingress"]["metadata"]["annotations"] and "Secret" not in music
    assert music["Ingress"]["spec"]["tls"][0]["hosts"] == ["music.home.arpa"]
