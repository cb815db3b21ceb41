"""Certificates, logins and names on the LAN, as cluster facts: which issuer signs the web UIs'
certificates, which secret keys that needs, which web UIs sit behind the shared admin login, and
which names no public CA certifies (`validation/lan.py` holds the rules `hkgen validate` applies to
the `tls` section and `mosquitto.access`).

The internal CA always exists (the MQTT broker's certificate names LAN addresses and in-cluster
service names, which no public CA certifies); `tls.issuer: acme` switches only the web UIs to
Let's Encrypt with a DNS-01 challenge.
"""

from __future__ import annotations

from typing import Any

from .keys import SecretKey
from .model import Cluster

__all__ = ["ACME_ISSUER", "INTERNAL_ISSUER", "PRIVATE_SUFFIXES", "SOLVER_KEYS", "tls_context", "tls_keys", "web_login"]

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
