"""``opensim-biopose demo``: build the default model into a folder, load it with OpenSim, summarize it.

A placeholder for the end-to-end video demo (a later issue replaces it with a video run).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "build the default model into DIR, load it with OpenSim and print a kinematics summary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("biopose_demo"), metavar="DIR",
                        help="output folder (default ./biopose_demo)")


def run(args: argparse.Namespace) -> int:
    import opensim as osim

    from osim_models.build_default_model import MODEL_NAME, write_ik_setup, write_model
    from osim_models.summary import summarize

    osim.Logger.removeFileSink()
    model_path = write_model(args.out / f"{MODEL_NAME}.osim")
    setup_path = write_ik_setup(args.out / f"{MODEL_NAME}_ik_setup.xml")
    model = osim.Model(str(model_path))  # loaded back from disk: what the file says, not what was built
    summary = summarize(model)
    print(f"wrote {model_path} and {setup_path}")
    print("\n".join(summary.lines()))
    print(f"markers ({len(summary.markers)}): " + " ".join(summary.markers))
    return 0
