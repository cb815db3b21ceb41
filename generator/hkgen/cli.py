"""The `hkgen` command line: the only place that turns errors into output and exit codes.

Subcommands live in `hkgen.commands` (one module each, discovered here). Every `HkgenError`
becomes its lines and its exit code; anything else is a bug, reported in one line (the
traceback only with HKGEN_DEBUG=1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["main"]


def _command_modules(only: str | None = None) -> list[ModuleType]:
    """The subcommand modules, in `--help` order; just the one named `only` when it exists."""
    from . import commands

    # The folder's module files, as pkgutil.iter_modules would list them (without importing
    # pkgutil: 10-15 ms of every start, which pre-commit pays on each commit).
    names = sorted({name.rsplit(".", 1)[0] for folder in commands.__path__
                    for name in os.listdir(folder)  # noqa: PTH208 - names only
                    if name.endswith((".py", ".pyc")) and not name.startswith("_")})
    if only is not None and only.replace("-", "_") in names:
        # `hkgen validate ...` needs the validate module only: importing and registering all
        # thirteen was a tenth of validate's time (pre-commit runs it on every commit).
        module = importlib.import_module(f"{commands.__name__}.{only.replace('-', '_')}")
        if only == module.NAME:
            return [module]
    order = {n: i for i, n in enumerate(commands.ORDER)}
    names.sort(key=lambda n: (order.get(n, len(order)), n))
    return [importlib.import_module(f"{commands.__name__}.{n}") for n in names]


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: of every subcommand, or (given a subcommand's exact name) of that one
    only, which parses that subcommand's arguments and words its errors exactly the same way.
    """
    from . import __version__
    from .commands._common import EXIT_CODES

    parser = argparse.ArgumentParser(
        prog="hkgen",
        description="Render a home-automation Kubernetes cluster (Raspberry Pi, MicroK8s, Longhorn) "
                    "from one validated cluster.yaml into a Flux or Argo CD tree plus per-Pi cloud-init seeds.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hkgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules(command):
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, epilog=EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.register(p)
        p.set_defaults(func=module.run, cache=getattr(module, "CACHE", True))
    return parser


def _template_cache() -> None:
    """Compiled templates and the checked app catalogue go to the user's cache folder
    ($XDG_CACHE_HOME/hkgen or ~/.cache/hkgen); a command module with `CACHE = False` uses none.
    """
    from pathlib import Path

    from .core.resources import set_cache_dir

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    set_cache_dir(Path(base) / "hkgen")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hkgen` console script."""
    from .commands._common import err, out
    from .core.errors import HkgenError, ProblemsError

    for stream in (sys.stdout, sys.stderr):
        # A non-UTF-8 terminal must not turn a message with 'é' into a crash.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    words = list(sys.argv[1:] if argv is None else argv)
    command = words[0] if words and not words[0].startswith("-") else None
    args = _parser(command).parse_args(words)
    if args.cache:
        _template_cache()
    try:
        code: int = args.func(args)
        return code
    except ProblemsError as error:
        for line in error.lines():
            out(line)
        return error.exit_code
    except HkgenError as error:
        for line in error.lines():
            err(f"hkgen: {line}")
        return error.exit_code
    except KeyboardInterrupt:
        err("hkgen: interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as error:  # a bug in hkgen: one line for the user, details on request
        if os.environ.get("HKGEN_DEBUG"):
            raise
        err(f"hkgen: internal error: {type(error).__name__}: {error} "
            "(this is a bug; rerun with HKGEN_DEBUG=1 for details and report it)")
        return 70


if __name__ == "__main__":
    sys.exit(main())
