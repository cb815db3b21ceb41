"""One module per `hkgen` subcommand, discovered by the CLI.

Each module defines `NAME`, `HELP`, `register(parser)` (add arguments) and `run(args) -> int`.
Modules import heavy dependencies inside `run`, so `hkgen validate` starts fast. `ORDER` fixes
the order in `--help`; modules not listed come after, alphabetically.
"""

from __future__ import annotations

ORDER = (
    "validate",
    "render",
    "plan",
    "boot_media",
    "publish",
    "init",
    "migrate",
    "secrets",
    "ca",
    "verify_charts",
    "schema",
    "docs",
)
