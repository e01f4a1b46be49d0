"""``opensim-biopose ik``: a drop-in for OpenSim's InverseKinematicsTool.

Same inputs (an IK setup XML, or a model + a .trc), same output: a .mot with the model's
coordinates in CoordinateSet order, header ``Coordinates``, ``inDegrees=yes`` — plus a
marker-error report ``<mot stem>_ik_marker_errors.sto`` beside it (OpenSim's columns).

Choices, stated once:
- Relative paths in a setup file are taken from the setup file's folder (OpenSim: the cwd).
- An existing output is overwritten, as InverseKinematicsTool does, but atomically: a failed
  run leaves the old file (or nothing) in place, never a partial file.
- Markers at exactly (0, 0, 0) are missing (NaN); OpenSim would fit them to the lab origin.
- Frames with no weighted marker at all are flagged with a warning and their coordinates
  interpolated in time from the solved frames.
- Coupled coordinates are always exact (the Skeleton computes them), as OpenSim does with the
  default ``constraint_weight`` Inf; a finite weight in the setup is not modelled. The setup's
  ``accuracy`` is OpenSim's stopping test (projected gradient of the normalised objective) and
  is used as such by the refinement (``RefineConfig.gradient_tol``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path
from opensim_biopose.io.ik_setup import CoordinateTask, IKSetup, read_ik_setup
from opensim_biopose.io.mot import read_mot, write_marker_errors_sto, write_mot
from opensim_biopose.io.trc import MarkerData, read_trc
from opensim_biopose.neurik.refine import (
    CoordinateTargets,
    RefineConfig,
    align_markers,
    coordinate_targets,
    marker_errors,
    refine,
)

NAME = "ik"
HELP = "inverse kinematics from markers (NeurIK + optional refinement), a drop-in for OpenSim's IK tool"

log = logging.getLogger(__name__)

# Plausible extent (m) of one frame's markers on a human: outside it the units are wrong.
_BODY_EXTENT_M = (0.05, 10.0)


@dataclasses.dataclass(frozen=True)
class IKJob:
    """Everything one ``ik`` run needs, resolved from the command line and the setup file."""

    model_file: Path
    marker_file: Path
    out_mot: Path
    marker_weights: dict[str, float] | None  # None: every model marker, weight 1
    coordinate_tasks: tuple[CoordinateTask, ...] = ()
    coordinate_file: Path | None = None
    time_range: tuple[float, float] | None = None
    report_errors: bool = True
    accuracy: float = 1e-5          # the setup's; OpenSim's convergence test (see the module docstring)
    refine: bool = False
    init: str | None = None  # "neurik", "default", or None: NeurIK when installed
    weights: Path | None = None
    train: bool = True

    @property
    def errors_sto(self) -> Path:
        return self.out_mot.with_name(f"{self.out_mot.stem}_ik_marker_errors.sto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("inputs (either --setup, or --model and --markers)")
    src.add_argument("--setup", type=Path, help="OpenSim IK setup XML (InverseKinematicsTool)")
    src.add_argument("--model", type=Path, help="scaled .osim model with markers")
    src.add_argument("--markers", type=Path, help="marker trajectories (.trc)")
    parser.add_argument("--out", type=Path, help="output .mot (default: the setup's output_motion_file, "
                        "else <trc stem>_ik.mot in the current folder)")
    parser.add_argument("--time-range", type=float, nargs=2, metavar=("START", "END"),
                        help="seconds; overrides the setup's time_range")
    parser.add_argument("--refine", action="store_true",
                        help="refine NeurIK's answer by least squares on OpenSim's IK objective")
    parser.add_argument("--init", choices=("neurik", "default"),
                        help="start of the solve: NeurIK (default when available) or the model's "
                        "default pose (implies --refine)")
    parser.add_argument("--weights", type=Path, help="NeurIK checkpoint to use")
    parser.add_argument("--no-train", action="store_true",
                        help="fail instead of training NeurIK when no matching checkpoint exists")


# ---------------------------------------------------------------------------------------------
# Building the job


def job_from_setup(
    setup: IKSetup, *, out: Path | None = None, time_range: tuple[float, float] | None = None, **solver
) -> IKJob:
    """An :class:`IKJob` from a parsed setup; ``out``/``time_range`` override the setup's."""
    out = out or setup.output_motion_file or Path.cwd() / f"{setup.marker_file.stem}_ik.mot"
    return IKJob(
        model_file=setup.model_file, marker_file=setup.marker_file, out_mot=Path(out),
        marker_weights=setup.marker_weights(), coordinate_tasks=setup.applied_coordinate_tasks(),
        coordinate_file=setup.coordinate_file, time_range=time_range or setup.time_range,
        report_errors=setup.report_errors, accuracy=setup.accuracy, **solver,
    )


def _job_from_setup(args: argparse.Namespace) -> IKJob:
    return job_from_setup(
        read_ik_setup(args.setup), out=args.out,
        time_range=tuple(args.time_range) if args.time_range else None, **_solver_options(args),
    )


def _job_from_files(args: argparse.Namespace) -> IKJob:
    if args.model is None or args.markers is None:
        raise InputError("give --setup IK_SETUP.xml, or both --model OSIM and --markers TRC")
    for path, what in ((args.model, "model"), (args.markers, "marker file")):
        if not path.is_file():
            raise InputError(f"{what} {path} does not exist")
    out = args.out or Path.cwd() / f"{args.markers.stem}_ik.mot"
    return IKJob(
        model_file=args.model.resolve(), marker_file=args.markers.resolve(), out_mot=Path(out),
        marker_weights=None, time_range=tuple(args.time_range) if args.time_range else None,
        **_solver_options(args),
    )


def _solver_options(args: argparse.Namespace) -> dict:
    if args.weights is not None and not args.weights.is_file():
        raise InputError(f"NeurIK checkpoint {args.weights} does not exist")
    return dict(refine=bool(args.refine), init=args.init, weights=args.weights, train=not args.no_train)


def _check_writable(path: Path) -> None:
    """Fail before the solve, not after it, when the output folder cannot be written."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: {folder} is not writable; choose another place with --out")


def build_job(args: argparse.Namespace) -> IKJob:
    if args.setup is not None:
        if args.model is not None or args.markers is not None:
            raise InputError("give either --setup or --model/--markers, not both")
        job = _job_from_setup(args)
    else:
        job = _job_from_files(args)
    _check_writable(job.out_mot)
    return job


# ---------------------------------------------------------------------------------------------
# Markers


def _check_units(data: MarkerData, path: Path) -> None:
    """Reject marker data whose size says the Units header is wrong (mm read as m or vice versa)."""
    present = ~data.missing.all(axis=1)  # frames with at least one marker
    xyz = data.xyz[present]
    spans = np.nanmax(xyz, axis=1) - np.nanmin(xyz, axis=1)  # (T', 3)
    if spans.size == 0:
        raise InputError(f"marker file {path} has no marker positions in the requested time range")
    extent = float(np.median(np.linalg.norm(spans, axis=1)))
    lo, hi = _BODY_EXTENT_M
    if not lo <= extent <= hi:
        raise InputError(
            f"marker file {path}: markers span {extent:.4g} m per frame with Units={data.units_in_file}; "
            f"a body spans {lo}-{hi} m, so the Units header is probably wrong (mm vs m): fix it"
        )


def load_markers(job: IKJob) -> MarkerData:
    data = read_trc(job.marker_file)
    if job.time_range is not None:
        data = data.time_slice(*job.time_range)
    _check_units(data, job.marker_file)
    return data


def _marker_weights(job: IKJob, sk, data: MarkerData) -> dict[str, float]:
    """Weights of the markers used, warning about names that cannot be used."""
    model = set(sk.marker_names)
    if job.marker_weights is None:
        weights = {n: 1.0 for n in data.names if n in model}
    else:
        weights = {n: w for n, w in job.marker_weights.items() if w > 0}
    not_in_model = sorted(n for n in set(data.names) - model)
    if not_in_model:
        log.warning("markers in %s that the model lacks are ignored: %s", job.marker_file.name, ", ".join(not_in_model))
    tasks_unusable = sorted(n for n in weights if n not in model or n not in data.names)
    if tasks_unusable:
        log.warning("marker tasks without a model marker or without data are ignored: %s", ", ".join(tasks_unusable))
    usable = {n: w for n, w in weights.items() if n in model and n in data.names}
    if not usable:
        raise InputError(
            f"no weighted marker of {job.marker_file} is on the model {job.model_file.name}: "
            "check the marker names in the .trc, the model and the IK tasks"
        )
    return usable


# ---------------------------------------------------------------------------------------------
# Solving


def _coordinate_file_values(job: IKJob, sk, times: np.ndarray) -> dict[str, np.ndarray] | None:
    if not any(t.value_type == "from_file" for t in job.coordinate_tasks):
        return None
    data = read_mot(job.coordinate_file, sk)
    return {name: np.interp(times, data.times, data.values[:, j]) for j, name in enumerate(data.names)}


def _initial_pose(job: IKJob, sk, names: list[str], xyz: np.ndarray, weights: list[float], times: np.ndarray):
    """(T, n) start of the solve, whether to refine, and whether the start is the default pose."""
    init = job.init
    if init in (None, "neurik"):
        try:
            from opensim_biopose.neurik import load_or_train
        except ImportError as exc:
            if init == "neurik":
                raise InputError(f"--init neurik: NeurIK is not available ({exc}); use --init default") from exc
            log.warning("NeurIK is not available; refining from the model's default pose")
        else:
            from opensim_biopose.neurik.refine import coordinate_targets
            from opensim_biopose.neurik.train import LAB_IK

            # The ik command replaces OpenSim IK on a subject-scaled model: weights trained here learn
            # OpenSim IK's own answer on that model under the setup's coordinate tasks (LAB_IK).
            tasks = coordinate_targets(sk, [t for t in job.coordinate_tasks if t.value_type != "from_file"])
            net = load_or_train(sk, names, weights, weights=job.weights, train=job.train, progress=True,
                                train_cfg=LAB_IK, coordinate_tasks=tasks)
            q = torch.as_tensor(net.solve(names, xyz, times).q, dtype=torch.float64)
            return q, job.refine, False
    default = sk.coordinate_defaults.detach().double()
    return default.expand(len(times), -1).clone(), True, True


def _fill_empty_frames(q: torch.Tensor, empty: np.ndarray, times: np.ndarray) -> torch.Tensor:
    """Interpolate coordinates in time over frames that had no marker to fit."""
    if not empty.any():
        return q
    if empty.all():
        raise InputError("no frame has any weighted marker present; nothing to solve")
    log.warning("%d frame(s) have no weighted marker (t = %s); their coordinates are interpolated",
                int(empty.sum()), ", ".join(f"{t:.3f}" for t in times[empty][:10]))
    arr = q.numpy().copy()
    for j in range(arr.shape[1]):
        arr[empty, j] = np.interp(times[empty], times[~empty], arr[~empty, j])
    return torch.from_numpy(arr)


@dataclasses.dataclass(frozen=True, eq=False)
class IKOutcome:
    """Result of :func:`solve_job`: times (T,), q (T, n) rad/m, per-frame marker errors in m."""

    times: np.ndarray
    q: torch.Tensor
    total_sq: torch.Tensor
    rms: torch.Tensor
    max_error: torch.Tensor
    refined: bool
    seconds: float
    from_default: bool


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedTrial:
    """Markers of a job in the skeleton's marker order, ready for :func:`refine`.

    Attributes:
        times: (T,) seconds; xyz: (T, M, 3) metres, NaN = absent; weights: (M,), 0 = unused;
        targets: the coordinate tasks.
    """

    times: np.ndarray
    xyz: np.ndarray
    weights: np.ndarray
    targets: CoordinateTargets

    @property
    def used(self) -> list[int]:
        return [i for i, w in enumerate(self.weights) if w > 0]

    @property
    def empty_frames(self) -> np.ndarray:
        """(T,) bool: frames without any weighted marker."""
        return np.isnan(self.xyz[:, self.used]).any(axis=2).all(axis=1)


def prepare_trial(job: IKJob, sk) -> PreparedTrial:
    data = load_markers(job)
    xyz, weights, _ = align_markers(sk, data.names, data.xyz, _marker_weights(job, sk, data))
    targets = coordinate_targets(sk, job.coordinate_tasks, _coordinate_file_values(job, sk, data.times))
    return PreparedTrial(data.times, xyz, weights, targets)


def solve_job(job: IKJob, sk) -> IKOutcome:
    trial = prepare_trial(job, sk)
    used = trial.used
    names = [sk.marker_names[i] for i in used]
    start = time.perf_counter()
    q0, do_refine, from_default = _initial_pose(
        job, sk, names, trial.xyz[:, used], [float(trial.weights[i]) for i in used], trial.times
    )
    config = RefineConfig(gradient_tol=job.accuracy)
    q = refine(sk, trial.xyz, trial.weights, q0, coordinate_tasks=trial.targets, config=config).q if do_refine else q0
    seconds = time.perf_counter() - start
    q = _fill_empty_frames(q, trial.empty_frames, trial.times)
    total, rms, mx, q_full = marker_errors(sk, q, torch.from_numpy(trial.xyz), torch.from_numpy(trial.weights))
    return IKOutcome(trial.times, q_full, total, rms, mx, do_refine, seconds, from_default)


def write_outputs(job: IKJob, sk, outcome: IKOutcome) -> None:
    """The .mot (and the marker-error .sto), both or neither."""
    rotational = sk.coordinate_is_rotational.cpu().numpy().astype(bool)
    try:
        with ExitStack() as stack:
            mot_tmp = stack.enter_context(atomic_path(job.out_mot))
            write_mot(mot_tmp, list(sk.coordinate_names), outcome.times, outcome.q.numpy(), rotational)
            if job.report_errors:
                sto_tmp = stack.enter_context(atomic_path(job.errors_sto))
                write_marker_errors_sto(sto_tmp, outcome.times, outcome.total_sq.numpy(),
                                        outcome.rms.numpy(), outcome.max_error.numpy())
    except PermissionError as exc:
        raise InputError(f"cannot write the output ({exc}); choose another place with --out") from exc


def run(args: argparse.Namespace) -> int:
    from opensim_biopose.kinematics import Skeleton

    job = build_job(args)
    sk = Skeleton.from_osim(job.model_file, dtype=torch.float64)
    outcome = solve_job(job, sk)
    write_outputs(job, sk, outcome)
    how = {(False, False): "NeurIK", (False, True): "NeurIK + refinement"}.get(
        (outcome.from_default, outcome.refined), "refinement from the default pose")
    print(f"{len(outcome.times)} frames in {outcome.seconds:.2f} s ({how}); marker RMS mean "
          f"{1000 * float(np.nanmean(outcome.rms.numpy())):.1f} mm, max {1000 * float(np.nanmax(outcome.max_error.numpy())):.1f} mm")
    print(f"wrote {job.out_mot}" + (f" and {job.errors_sto}" if job.report_errors else ""))
    return 0
