"""`hkgen ca export PATH [-o FILE]`: the certificate of the cluster's internal CA, for phones and
laptops to trust (the web UIs and the MQTT broker's TLS listener are certified by it).

The certificate is public; it is read from the encrypted secrets file (INTERNAL_CA_CERT), so the
command needs the age key like `hkgen secrets check`. The private key is never written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import age_key_file, cluster_paths, err, out

NAME = "ca"
HELP = "export the internal CA certificate for phones and laptops to trust"

HOW_TO = """How to trust it (once per device; it stays valid across rebuilds, until {expires}):
  iPhone/iPad: send {name} to the device (AirDrop, mail), open it, install the profile in Settings >
    General > VPN & Device Management, then turn it on in Settings > General > About > Certificate
    Trust Settings.
  Android: Settings > Security > Encryption & credentials > Install a certificate > CA certificate,
    pick {name}. The Home Assistant app accepts such user CAs; some other apps do not.
  macOS: open {name} in Keychain Access (System keychain), set "When using this certificate" to Always Trust.
  Windows: certutil -addstore -f ROOT {name}   (as administrator)
  Linux: copy to /usr/local/share/ca-certificates/{stem}.crt, then sudo update-ca-certificates
  Firefox keeps its own list: Settings > Privacy & Security > Certificates > View Certificates > Import.
  MQTT clients (ESPHome, Tasmota, mosquitto_pub --cafile): give them {name} as the CA.
The CA can only certify names under {domain}, in-cluster service names and addresses of {lan}
(name constraints), so trusting it does not let anyone impersonate other sites."""


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen ca`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = actions.add_parser("export", help="write the CA certificate (PEM) and say how to trust it",
                             description=__doc__.split("\n\n", 1)[0])
    sub.add_argument("path", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    sub.add_argument("-o", "--output", metavar="FILE",
                     help="where to write the certificate (default: <cluster>-ca.crt in the current folder; "
                          "- for stdout)")
    sub.add_argument("--age-key", metavar="FILE", help="age private key (as for `hkgen secrets`)")


def run(args: argparse.Namespace) -> int:
    """Decrypt the CA certificate and write it."""
    from ..config.secrets import decrypt
    from ..core.errors import UsageError
    from ..ops.pki import CA_CERT, ca_expiry, pem_of
    from ..ops.scaffold import load_cluster

    (path,) = cluster_paths([args.path])
    cluster, folder = load_cluster(path)
    values = decrypt(folder / cluster.secrets_file, age_key_file=age_key_file(args.age_key, cluster.name))
    if CA_CERT not in values:
        raise UsageError(f"{folder / cluster.secrets_file} has no {CA_CERT}: run `hkgen secrets add-missing "
                         f"{folder}` first")
    try:
        pem = pem_of(values[CA_CERT])
    except ValueError as error:
        raise UsageError(f"{CA_CERT} is not base64 PEM text: {error}") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise UsageError(f"{CA_CERT} does not hold a PEM certificate")
    if args.output == "-":
        out(pem.rstrip("\n"))
        return 0
    dest = Path(args.output or f"{cluster.name}-ca.crt")
    dest.write_text(pem, encoding="ascii")
    err(f"{dest}: the {cluster.name} cluster's CA certificate")
    err(HOW_TO.format(name=dest.name, stem=dest.stem, domain=cluster.domain, lan=cluster.lan, expires=ca_expiry(pem)))
    return 0
