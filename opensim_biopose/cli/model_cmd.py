"""``opensim-biopose model``: write the default full-body model scaled to a subject, or describe it."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "model"
HELP = "write the default full-body OpenSim model for a subject (--out) or describe it (--info)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from osim_models.build_default_model import DEFAULT_HEIGHT_M, DEFAULT_MASS_KG

    parser.add_argument("--height", type=float, default=DEFAULT_HEIGHT_M,
                        help=f"subject stature in metres (default {DEFAULT_HEIGHT_M})")
    parser.add_argument("--mass", type=float, default=DEFAULT_MASS_KG,
                        help=f"subject body mass in kilograms (default {DEFAULT_MASS_KG})")
    parser.add_argument("--out", type=Path, metavar="OSIM", help="write the model to this .osim file")
    parser.add_argument("--info", action="store_true",
                        help="print coordinates, markers, bodies and joint-centre heights (default without --out)")


def run(args: argparse.Namespace) -> int:
    import opensim as osim

    from osim_models.build_default_model import build_model, write_model
    from osim_models.summary import summarize

    osim.Logger.removeFileSink()
    if args.out is not None:
        path = write_model(args.out, args.height, args.mass)
        print(f"wrote {path} ({args.height:.3f} m, {args.mass:.1f} kg)")
    if args.info or args.out is None:
        model = osim.Model(str(args.out)) if args.out is not None else build_model(args.height, args.mass)
        print("\n".join(summarize(model).lines()))
    return 0
