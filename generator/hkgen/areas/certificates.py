"""The trust and naming layer as GitOps `Component`s: the internal CA and its ClusterIssuer, the
optional Let's Encrypt (DNS-01) ClusterIssuer, and the DNS server (k8s-gateway) that answers for
the cluster domain on its own LAN address, so a router needs one forwarder instead of records.

The facts (issuer names, secret keys, validation) are `config/tls.py`'s; this module only lays out
the objects. Both issuers live in the configs layer, after cert-manager (controllers) created the
CRDs; the apps' Certificates and Ingresses come after them.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from ..config.model import Cluster
from ..config.secrets import placeholder
from ..config.tls import ACME_ISSUER, INTERNAL_ISSUER, SOLVER_KEYS
from .parts import Chart, Component, OutputFile, Release, freeze

__all__ = ["ACME_SERVERS", "DNS_NAMESPACE", "components"]

CERT_NAMESPACE = "cert-manager"  # cert-manager's cluster resource namespace: ClusterIssuers read Secrets there
DNS_NAMESPACE = "dns-gateway"
ACME_SERVERS = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
_K8S_GATEWAY_REPO = "https://ori-edge.github.io/k8s_gateway/"


def _file(path: str, template: str, **context: Any) -> OutputFile:
    return OutputFile(PurePosixPath(path), f"core/platform/certificates/{template}", freeze(context))


def _issuers(cluster: Cluster) -> Component:
    files = [_file("internal-ca.yaml", "internal-ca.yaml.j2", issuer=INTERNAL_ISSUER, namespace=CERT_NAMESPACE,
                   cert=placeholder("INTERNAL_CA_CERT"), key=placeholder("INTERNAL_CA_KEY"))]
    t = cluster.tls
    if t.issuer == "acme":
        key, _what = SOLVER_KEYS[t.solver]
        files.append(_file("acme.yaml", "acme.yaml.j2", issuer=ACME_ISSUER, namespace=CERT_NAMESPACE,
                           domain=cluster.domain, email=t.acme_email, server=ACME_SERVERS[t.acme_server],
                           solver=t.solver, rfc2136=dict(t.rfc2136), credential=placeholder(key)))
    addons = {name for name, _args in cluster.addons}
    return Component("cluster-issuers", "configs", CERT_NAMESPACE, files=tuple(files),
                     depends_on=() if "cert-manager" in addons else ("cert-manager",),
                     description="cert-manager ClusterIssuers: the internal CA"
                                 + (" and Let's Encrypt (DNS-01)" if t.issuer == "acme" else "") + ".")


def _dns_gateway(cluster: Cluster) -> Component:
    from .platform import distro

    facts = distro(cluster)
    values: dict[str, Any] = {
        # Pitfall: the chart has no usable default; `domain` is mandatory.
        "domain": cluster.domain,
        # Only what people open: the web UIs' Ingresses and the LoadBalancer Services (mosquitto).
        "watchedResources": ["Ingress", "Service"],
        "ttl": 60,
        "priorityClassName": "home",
        "replicaCount": 2,
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "service": {
            "type": "LoadBalancer",
            "port": 53,
            "useTcp": True,
            "annotations": {facts["loadBalancerIPAnnotation"]: cluster.dns_server_ip},
        },
    }
    release = Release("k8s-gateway", DNS_NAMESPACE,
                      Chart("k8s-gateway", _K8S_GATEWAY_REPO, cluster.version("charts", "k8s-gateway")),
                      freeze(values))
    return Component("dns-gateway", "controllers", DNS_NAMESPACE, releases=(release,),
                     description=f"k8s-gateway: answers for {cluster.domain} at {cluster.dns_server_ip}.")


def components(cluster: Cluster) -> list[Component]:
    """The issuers always; the DNS server when network.dnsServerIP is set."""
    out = [_issuers(cluster)]
    if cluster.dns_server_ip is not None:
        out.append(_dns_gateway(cluster))
    return out


def lan_facts(cluster: Cluster) -> dict[str, Any]:
    """What the generated README says about names, certificates and logins on the LAN."""
    from ..config.catalogue import load_catalogue
    from ..config.tls import web_login

    catalogue = load_catalogue()
    hosts = []
    for app in cluster.apps:
        host = dict(catalogue[app.name].expose).get("host") if app.enabled else None
        if host and app.name == "zigbee2mqtt" and app.settings.get("frontend"):
            hosts += [f"{host}-{net.name}.{cluster.domain}" for net in cluster.zigbee]
        elif host and app.name != "zigbee2mqtt":
            hosts.append(f"{host}.{cluster.domain}")
    hosts += [f"{c.name}.{cluster.domain}" for c in cluster.custom_apps if c.expose == "ingress"]
    mosq = cluster.app("mosquitto")
    return {
        "domain": cluster.domain, "dns_ip": cluster.dns_server_ip, "ingress_ip": cluster.ingress_ip,
        "hosts": sorted(hosts), "acme": cluster.tls.issuer == "acme", "name": cluster.name,
        "mqtt_ip": mosq.settings["loadBalancerIP"] if mosq else None,
        "mqtt_plaintext": mosq.settings.get("plaintext") if mosq else None,
        "login": web_login(cluster), "backup": cluster.backup is not None,
        "encrypted": cluster.backup is not None and cluster.backup.encrypt_volumes,
    }
