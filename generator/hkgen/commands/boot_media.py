"""`hkgen boot-media PATH --node HOST --out DIR`: write one Pi's flashable seed, secrets filled in."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import age_key_file, cluster_paths, err, out

NAME = "boot-media"
HELP = "write a node's or satellite's seed with its secrets onto a freshly flashed boot partition"
EPILOG = """\
Flash Ubuntu Server for Raspberry Pi onto the card or SSD, mount its boot partition
(label system-boot) and point --out at it. user-data, meta-data and network-config are
replaced; the kernel command line on the partition keeps its parameters and gets hkgen's.
The secrets are decrypted with sops (age key: --age-key, else SOPS_AGE_KEY_FILE, else
~/.config/hkgen/<cluster>.agekey as `hkgen init` made it, else sops' default key file).
No secret value is ever printed. An --out folder inside a Git work tree or inside the
cluster folder is refused.
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of `hkgen boot-media`."""
    parser.epilog = EPILOG + "\n" + (parser.epilog or "")
    parser.add_argument("path", metavar="PATH", help="a cluster.yaml, its folder, or a file inside it")
    parser.add_argument("--node", required=True, metavar="HOST", help="host name of the node or satellite")
    parser.add_argument("--out", required=True, metavar="DIR", type=Path,
                        help="the mounted boot partition (or another folder outside any Git work tree)")
    parser.add_argument("--age-key", metavar="FILE", type=Path, help="age identity file that decrypts the secrets")


def run(args: argparse.Namespace) -> int:
    """Write the seed and list what was written."""
    from ..ops.bootmedia import write_boot_media

    (cluster_file,) = cluster_paths([args.path])
    key = args.age_key
    if key is None:
        from ..core.errors import ConfigError
        from ..ops.scaffold import load_cluster

        try:
            key = age_key_file(None, load_cluster(cluster_file)[0].name)
        except ConfigError:
            key = None  # write_boot_media reports the problems
    media = write_boot_media(cluster_file, args.node, args.out, age_key=key)
    for rel in media.written:
        out(f"wrote {args.out / rel}")
    for note in media.notes:
        err(f"note: {note}")
    err(f"{media.host}: seed written to {args.out}; put the card into the Pi and power it on")
    return 0
