"""Certificates, logins and names on the LAN, as cluster facts: which issuer signs the web UIs'
certificates, which secret keys that needs, which web UIs sit behind the shared admin login, and
the rules `hkgen validate` applies to the `tls` section and `mosquitto.access`.

The internal CA always exists (the MQTT broker's certificate names LAN addresses and in-cluster
service names, which no public CA certifies); `tls.issuer: acme` switches only the web UIs to
Let's Encrypt with a DNS-01 challenge.
"""

from __future__ import annotations

from typing import Any

from .model import Cluster

__all__ = ["ACME_ISSUER", "INTERNAL_ISSUER", "PRIVATE_SUFFIXES", "tls_context", "tls_keys", "tls_problems"]

INTERNAL_ISSUER = "hkgen-internal-ca"
ACME_ISSUER = "hkgen-acme"
# Names no public CA will certify: special-use and commonly squatted home suffixes.
PRIVATE_SUFFIXES = ("arpa", "local", "lan", "home", "internal", "localdomain", "test", "invalid", "example")
_B64 = r"^[A-Za-z0-9+/]{40,}={0,2}$"
# Solver -> (secret key, what it is).
SOLVER_KEYS = {
    "cloudflare": ("CLOUDFLARE_API_TOKEN", "Cloudflare API token with Zone:DNS:Edit on the domain"),
    "rfc2136": ("RFC2136_TSIG_SECRET", "base64 TSIG secret of the key named in tls.acme.rfc2136.keyName"),
}


def web_login(cluster: Cluster) -> bool:
    """Whether a UI without a login of its own is served: Prometheus, or a custom app with `login: admin`."""
    return cluster.app("monitoring") is not None or any(
        c.expose == "ingress" and c.login == "admin" for c in cluster.custom_apps)


def tls_keys(cluster: Cluster, safe: str) -> list[Any]:
    """Secret keys of the CA, the admin login and the DNS-01 credentials (config/secrets.py's contract)."""
    from .secrets import SecretKey

    keys = [
        SecretKey("INTERNAL_CA_KEY", "private key of the cluster's internal CA, base64 PEM (made by hkgen)", _B64),
        SecretKey("INTERNAL_CA_CERT", "certificate of the cluster's internal CA, base64 PEM (made by hkgen)", _B64),
    ]
    if web_login(cluster):
        keys += [
            SecretKey("WEB_ADMIN_PASSWORD", "password of user admin on the web UIs without a login of their own "
                      "(Prometheus, custom apps with login: admin; 12+ characters)", rf"^[{safe}]{{12,}}$"),
            SecretKey("WEB_ADMIN_HTPASSWD", "admin's password hash for the ingress, base64 (made by hkgen from "
                      "WEB_ADMIN_PASSWORD)", _B64),
        ]
    if cluster.tls.issuer == "acme" and cluster.tls.solver in SOLVER_KEYS:
        name, what = SOLVER_KEYS[cluster.tls.solver]
        keys.append(SecretKey(name, what, rf"^[{safe}]{{8,}}$"))
    return keys


def tls_context(cluster: Cluster) -> dict[str, Any]:
    """What app templates read as `tls`: the issuers and the ingress annotations for HTTPS and the login."""
    acme = cluster.tls.issuer == "acme"
    return {
        "internalIssuer": INTERNAL_ISSUER,
        "webIssuer": ACME_ISSUER if acme else INTERNAL_ISSUER,
        "loginSecret": "web-admin-login",
    }


def tls_problems(cluster: Cluster) -> list[tuple[tuple[Any, ...], str, str]]:
    """(path, message, hint) of every rule the `tls` section and `mosquitto.access` break."""
    out: list[tuple[tuple[Any, ...], str, str]] = []
    t = cluster.tls
    if t.issuer == "acme":
        if not t.solver:
            out.append((("tls", "issuer"), "issuer acme needs tls.acme (email and solver)",
                        "add tls.acme, or use issuer: internal"))
        suffix = cluster.domain.rsplit(".", 1)[-1]
        if suffix in PRIVATE_SUFFIXES:
            out.append((("tls", "issuer"), f"Let's Encrypt cannot certify names under {cluster.domain} (.{suffix} "
                        "is not a public domain)", "use issuer: internal, or a cluster.domain you own"))
        if t.solver == "rfc2136" and not t.rfc2136:
            out.append((("tls", "acme", "solver"), "solver rfc2136 needs tls.acme.rfc2136 (nameserver, keyName)",
                        "add tls.acme.rfc2136"))
    from ..areas.platform import distro

    if "nginx-ingress-microk8s" not in distro(cluster)["ingressController"]["selector"].values():
        for i, custom in enumerate(cluster.custom_apps):
            if custom.expose == "ingress" and custom.login == "admin":
                out.append((("customApps", i, "login"), f"{custom.name}: this MicroK8s' ingress controller (Traefik) "
                            "cannot ask for the admin login", "set login: own if the app has a login of its own, "
                            "or expose: none"))
    mosq = cluster.app("mosquitto")
    if mosq is not None:
        users = set(mosq.settings.get("users", []))
        for name in sorted(mosq.settings.get("access") or {}):
            if name not in users:
                out.append((("apps", "mosquitto", "access", name), f"{name} is not in apps.mosquitto.users",
                            "add it to users (it needs a password), or remove its access entry"))
    return out
