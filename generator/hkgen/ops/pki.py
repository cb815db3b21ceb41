"""Secret values made from other values: the cluster's internal CA and the web login's password hash.

The internal CA (key and self-signed certificate) is made once by `hkgen secrets init/add-missing`
and kept in the SOPS file, so certificates issued after a rebuild chain to the same CA and phones
that trust it keep trusting. Its certificate is name-constrained to the cluster domain, the
in-cluster service names and the LAN: a copy of the key could not mint a certificate a phone
accepts for any other site. The web login's hash (`WEB_ADMIN_HTPASSWD`) is made from
`WEB_ADMIN_PASSWORD` with openssl's SHA-512 crypt, which ingress-nginx checks.

Values that are PEM or crypt text hold spaces, newlines or `$`, which the engines' substitution
would break, so they are stored base64-encoded (one line of the safe alphabet) and go into Secrets'
`data` as is. Plaintext keys reach openssl on stdin and come back on stdout, never via a file.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping

from ..config.model import Cluster
from ..core.errors import ToolError, UsageError
from ..core.proc import run

__all__ = ["CA_CERT", "CA_KEY", "DERIVED", "HTPASSWD", "WEB_USER", "ca_expiry", "derive", "new_ca", "pem_of"]

CA_KEY = "INTERNAL_CA_KEY"
CA_CERT = "INTERNAL_CA_CERT"
HTPASSWD = "WEB_ADMIN_HTPASSWD"
WEB_USER = "admin"
DERIVED = frozenset({CA_KEY, CA_CERT, HTPASSWD})
CA_DAYS = 3650  # ten years: a phone's trust should outlive many rebuilds


def _openssl(args: list[str], stdin: str | None = None) -> str:
    done = run(["openssl", *args], stdin=stdin, timeout=60)
    if done.returncode != 0:
        raise ToolError(f"openssl {args[0]} failed: {done.tail(3)}")
    return done.stdout


def b64(text: str) -> str:
    """One-line base64 of `text` (how PEM and crypt values are stored)."""
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def pem_of(value: str) -> str:
    """The text of a base64-stored value."""
    return base64.b64decode(value.encode("ascii"), validate=True).decode("ascii")


def _constraints(cluster: Cluster) -> str:
    lan = ipaddress.ip_network(cluster.lan, strict=False)
    names = [cluster.domain, "svc", "cluster.local"]
    permitted = ",".join([*(f"permitted;DNS:{n}" for n in names),
                          f"permitted;IP:{lan.network_address}/{lan.netmask}"])
    return f"nameConstraints=critical,{permitted}"


def new_ca(cluster: Cluster, key_pem: str | None = None) -> tuple[str, str]:
    """(key PEM, certificate PEM) of the cluster's CA; a new ECDSA P-256 key unless `key_pem` is given."""
    key = key_pem or _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    cert = _openssl(["req", "-new", "-x509", "-key", "/dev/stdin", "-sha256", "-days", str(CA_DAYS),
                     "-subj", f"/O=hkgen/CN={cluster.name} cluster CA ({cluster.domain})",
                     "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-addext", _constraints(cluster)], stdin=key)
    return key, cert


def htpasswd(password: str) -> str:
    """`admin:<SHA-512 crypt>` of `password`, base64-stored."""
    hashed = _openssl(["passwd", "-6", "-stdin"], stdin=password + "\n").strip()
    return b64(f"{WEB_USER}:{hashed}\n")


def derive(cluster: Cluster, wanted: set[str], values: Mapping[str, str]) -> dict[str, str]:
    """Values of the `wanted` derived keys, made from `values` (existing and new values together)."""
    out: dict[str, str] = {}
    if wanted & {CA_KEY, CA_CERT}:
        if CA_KEY in values and CA_KEY not in wanted:
            key, cert = new_ca(cluster, pem_of(values[CA_KEY]))  # a new certificate for the kept key
        elif CA_CERT in values and CA_CERT not in wanted:
            raise UsageError(f"{CA_KEY} is missing but {CA_CERT} is set: a CA certificate without its key cannot "
                             f"issue anything; remove {CA_CERT} with sops to make a new CA (devices must trust it "
                             "again)")
        else:
            key, cert = new_ca(cluster)
        out.update({k: v for k, v in ((CA_KEY, b64(key)), (CA_CERT, b64(cert))) if k in wanted})
    if HTPASSWD in wanted:
        password = values.get("WEB_ADMIN_PASSWORD")
        if password is None:
            raise UsageError(f"{HTPASSWD} is made from WEB_ADMIN_PASSWORD, which is not set")
        out[HTPASSWD] = htpasswd(password)
    return out


def ca_expiry(pem: str) -> str:
    """The certificate's notAfter date, as openssl prints it."""
    return _openssl(["x509", "-noout", "-enddate"], stdin=pem).strip().removeprefix("notAfter=")
