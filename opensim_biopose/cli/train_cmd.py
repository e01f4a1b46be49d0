"""``opensim-biopose train-neurik``: train NeurIK weights for a model and marker set."""
from __future__ import annotations

import argparse
from pathlib import Path

from opensim_biopose.errors import InputError

NAME = "train-neurik"
HELP = "train NeurIK (neural IK) weights for an OpenSim model and marker set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="OpenSim model (.osim) with markers")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--setup", help="IK setup (.xml): its applied IKMarkerTasks give markers and weights")
    src.add_argument("--markers", help="comma-separated marker names (weight 1 each); default: all model markers")
    parser.add_argument("--marker-file", help="OpenSim MarkerSet .xml added to the model")
    parser.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: TrainConfig.steps)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes of training")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed and steps: same weights)")
    parser.add_argument("--batch", type=int, default=None, help="windows per step")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--subject-scaled", action="store_true",
                        help="lab markers on a model already scaled to the subject: small scale changes, lab-level "
                             "noise, a per-frame network taught OpenSim IK's answer (see neurik.train.LAB_IK)")
    parser.add_argument("--target", choices=("fk", "ik"), default=None,
                        help="what the network learns to answer: 'ik' = OpenSim IK's answer to the markers on this "
                             "model (default with --subject-scaled), 'fk' = the generating pose and scale factors")
    parser.add_argument("--resume", action="store_true", help="continue an existing --out checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def setup_marker_weights(path: str) -> dict[str, float]:
    """``{marker: weight}`` of the applied IKMarkerTasks of an IK setup (only the task set is read:
    a setup for training need not name a marker file)."""
    import xml.etree.ElementTree as ET

    if not Path(path).is_file():
        raise InputError(f"IK setup file {path} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"IK setup file {path} is not valid XML: {exc}") from exc
    weights: dict[str, float] = {}
    for task in root.iter("IKMarkerTask"):
        apply = (task.findtext("apply") or "true").strip().lower() in {"true", "1", "yes"}
        try:
            weight = float((task.findtext("weight") or "1").strip())
        except ValueError as exc:
            raise InputError(f"{path}: IKMarkerTask {task.get('name')!r} has a non-numeric weight") from exc
        if apply:
            weights[task.get("name", "")] = weight
    if not weights:
        raise InputError(f"{path} has no applied IKMarkerTask; is it an IK setup file?")
    return weights


def _coordinate_tasks(setup: str, sk):
    """The setup's applied coordinate tasks with constant targets (``from_file`` ones are skipped:
    training has no coordinate file to read them from)."""
    from opensim_biopose.io.ik_setup import read_coordinate_tasks
    from opensim_biopose.neurik.refine import coordinate_targets

    tasks = [t for t in read_coordinate_tasks(setup) if t.apply and t.value_type != "from_file"]
    return coordinate_targets(sk, tasks)


def _markers(args: argparse.Namespace, sk) -> tuple[list[str], list[float]]:
    if args.setup:
        weights = setup_marker_weights(args.setup)
        names = [m for m, w in weights.items() if w > 0 and m in sk.marker_names]
        absent = [m for m in weights if m not in sk.marker_names]
        if absent:
            print(f"train-neurik: setup markers not in the model, skipped: {', '.join(absent)}")
        return names, [weights[m] for m in names]
    if args.markers:
        names = [m.strip() for m in args.markers.split(",") if m.strip()]
        return names, [1.0] * len(names)
    return list(sk.marker_names), [1.0] * len(sk.marker_names)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from opensim_biopose.kinematics import Skeleton
    from opensim_biopose.neurik import TrainConfig, train_neurik
    from opensim_biopose.neurik.train import LAB_IK

    out = Path(args.out)
    if out.exists() and not args.resume:
        raise InputError(f"{out} exists; pass --resume to continue training it or choose another --out")
    if not Path(args.model).is_file():
        raise InputError(f"model file {args.model} does not exist")
    sk = Skeleton.from_osim(args.model, marker_file=args.marker_file)
    sk.require_markers()
    names, weights = _markers(args, sk)
    if not names:
        raise InputError("no markers with a positive weight to train on; check --setup / --markers")
    overrides = {k: v for k, v in (("steps", args.steps), ("minutes", args.minutes), ("batch", args.batch),
                                   ("threads", args.threads)) if v is not None}
    # A subject-scaled lab model is judged against OpenSim IK on that model: learn IK's answer
    # (train.LAB_IK says why and how).
    base = LAB_IK if args.subject_scaled else TrainConfig()
    cfg = dataclasses.replace(base, seed=args.seed, target=args.target or base.target, **overrides)
    tasks = _coordinate_tasks(args.setup, sk) if args.setup else None
    report = train_neurik(sk, names, weights, None, cfg, out, resume=args.resume, progress=not args.no_progress,
                          coordinate_tasks=tasks)
    print(f"train-neurik: {report.steps} steps in {report.seconds / 60:.1f} min, "
          f"synthetic coordinate error {report.coord_error_deg:.2f} deg -> {report.path}")
    return 0

