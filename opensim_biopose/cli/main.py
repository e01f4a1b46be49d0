"""Entry point of ``opensim-biopose``.

Each subcommand lives in its own module under :mod:`opensim_biopose.cli` and exposes
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Add a module to
:data:`SUBCOMMANDS` to add a subcommand. A :class:`BioPoseError` becomes one line on
stderr and exit code 2; success is 0.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from opensim_biopose import __version__
from opensim_biopose.errors import BioPoseError

SUBCOMMANDS: tuple[str, ...] = (
    "opensim_biopose.cli.model_cmd",
    "opensim_biopose.cli.plugins_cmd",
    "opensim_biopose.cli.ik_cmd",
    "opensim_biopose.cli.train_cmd",
    "opensim_biopose.cli.detect_cmd",
    "opensim_biopose.cli.run_cmd",
    "opensim_biopose.cli.demo_cmd",
)

EXIT_OK = 0
EXIT_INPUT_ERROR = 2


def _available_modules() -> list:
    mods = []
    for name in SUBCOMMANDS:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opensim-biopose",
        description="Biomechanically accurate OpenSim motion from monocular video (BioPose).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _available_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or EXIT_OK)
    except BioPoseError as exc:
        print(f"opensim-biopose {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
