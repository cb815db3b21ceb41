"""The rules `hkgen validate` applies to the LAN-facing settings: the `tls` section (an ACME issuer
needs a public domain and its solver's settings), custom apps' `login` with an ingress controller
that cannot ask for one (Traefik), and `mosquitto.access` entries of users that do not exist.
"""

from __future__ import annotations

from typing import Any

from ..areas.platform import distro
from ..config.model import Cluster
from ..config.tls import PRIVATE_SUFFIXES

__all__ = ["tls_problems"]


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
