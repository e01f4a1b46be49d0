"""The end-to-end pipeline: a video -> OpenSim markers, coordinates and a subject-scaled model.

One direction of flow, one function per stage::

    video --detect--> KeypointSequence --mesh--> MeshFit (virtual markers, ground)
          --subject--> markers renamed/resized for the OpenSim model
          --scale--> scale factors (generic model)          [opensim_biopose.scaling]
          --neurik--> q0 on the GENERIC model (shipped/cached weights are keyed by its hash;
                      NeurIK was trained with randomised segment scales, so it reads any subject)
          --refine--> q on the SCALED model (same coordinate names), markers registered on it
          --> BioPoseResult (write(): .trc, .mot, scaled .osim, report .html, all or nothing)

Frames: every marker array is (T, M, 3) metres in OpenSim ground (Y up, X the subject's heading at
the first fitted frame, floor at Y = 0); coordinates are (T, n) in internal units (rad / m), and
in degrees only inside the written .mot (``inDegrees=yes``).

Memory: the detector streams the video one frame at a time and keeps keypoints only; the mesh
stage keeps markers, not vertices; the report re-reads just its few keyframes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opensim_biopose.detect.frontend import DetectConfig, FrontEndTiming, detect_video
from opensim_biopose.detect.types import KeypointSequence
from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path
from opensim_biopose.mesh.base import MeshFit
from opensim_biopose.plugins import get_registry
from opensim_biopose.scaling import ScaleFactors, ScalingConfig, measure_scale_factors, register_markers, \
    write_scaled_model

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES: dict[str, str] = {"trc": "_markers.trc", "mot": "_ik.mot", "osim": "_scaled.osim",
                                   "html": "_report.html"}


# ---------------------------------------------------------------------------------------------
# Configuration: one frozen dataclass per stage, built once (by the CLI or the caller)


@dataclass(frozen=True)
class MeshStageConfig:
    """Which mesh backend and body model turn keypoints into virtual markers."""

    backend: str = "keypoint-fit"
    body_model: str = "anny"
    # None: the body model's own marker set (anny -> "anny-pig53", named like the default model's markers).
    marker_set: str | None = None
    # Extra backend options (KeypointFitConfig fields for "keypoint-fit").
    options: dict[str, Any] = field(default_factory=dict)
    # Fit at most this many frames per second and interpolate the virtual markers in between
    # (None: every frame). 30 Hz is the rate the fit's priors were tuned at: on every frame of a
    # 60 fps video the detector's jitter quadruples the accelerations the smoothness prior sees and
    # it damps real motion (rendered side + 45 deg clips at 60 fps, 12-DoF mean 6.4 deg on every
    # frame; gait 10.6 vs 4.6 deg at 30 fps). Gait and most daily movements carry little power above
    # ~6-10 Hz (Winter, Biomechanics and Motor Control of Human Movement), so interpolating between
    # fits at 30 Hz loses little, and a 60 fps video costs half the fit.
    max_fit_rate_hz: float | None = 30.0


@dataclass(frozen=True)
class SubjectConfig:
    """The OpenSim model and what is known about the subject."""

    # None: the shipped default model (osim_models/biopose_fullbody.osim), which has shipped NeurIK weights.
    model: Path | None = None
    # Virtual marker name -> model marker name, for models whose markers are named otherwise.
    marker_map: dict[str, str] = field(default_factory=dict)
    # Stature (m): monocular video fixes body size only up to the depth ambiguity, so a known height
    # rescales the virtual markers about the floor origin before scaling. None: trust the fit.
    height_m: float | None = None
    # Total mass (kg) of the scaled model; None keeps the generic model's masses scaled with its size.
    mass_kg: float | None = None


@dataclass(frozen=True)
class SolverConfig:
    """Markers -> coordinates: NeurIK start, optional least-squares refinement."""

    # NeurIK checkpoint; None: shipped weights for the model, else the user cache, else train.
    weights: Path | None = None
    # Train NeurIK for a model without weights (minutes, cached); False: start from the default pose.
    train: bool = True
    # Refine on OpenSim's IK objective (the scaled model, the IK weights): the .mot then agrees with
    # OpenSim's InverseKinematicsTool on the written .trc + .osim. Off: NeurIK's answer as is.
    refine: bool = True
    # "cpu" or "cuda": validated up front (a missing GPU is an InputError naming --device, not a
    # crash mid-run); the stages take no device yet and run on the CPU (a warning says so).
    device: str = "cpu"


@dataclass(frozen=True)
class ReportStageConfig:
    """The HTML report (``<stem>_report.html``)."""

    # On by default: the report is how a user sees whether the video gave a trustworthy answer.
    enabled: bool = True
    # Keyframes with overlays: 4 spread over the video shows the motion without a heavy page.
    keyframes: int = 4


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's configuration. ``progress``: one line per stage on stdout."""

    detect: DetectConfig = field(default_factory=DetectConfig)
    mesh: MeshStageConfig = field(default_factory=MeshStageConfig)
    subject: SubjectConfig = field(default_factory=SubjectConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    report: ReportStageConfig = field(default_factory=ReportStageConfig)
    progress: bool = False


@dataclass(frozen=True)
class SpeedPreset:
    """A named speed/accuracy trade-off of ``opensim-biopose run --preset NAME``: the settings that
    cost time per frame. Options given explicitly on the command line win over the preset's."""

    name: str
    summary: str
    # DetectConfig.max_side: None (full resolution) costs no more once MediaPipe's segmentation is
    # off (its 256x256 crop is what it reads) and keeps the keypoints 1-2 px closer than 640 px.
    max_side: int | None = None
    # MeshStageConfig.max_fit_rate_hz: the mesh fit is most of a run's time.
    max_fit_rate_hz: float | None = None
    # KeypointFitConfig fields, as (name, value) pairs (a frozen dataclass holds no dict).
    fit_options: tuple[tuple[str, Any], ...] = ()

    def overridden(self, *, max_side: int | None = None, max_fit_rate_hz: float | None = None) -> SpeedPreset:
        """This preset with the settings a user gave explicitly (None keeps the preset's)."""
        return dataclasses.replace(self, max_side=self.max_side if max_side is None else max_side,
                                   max_fit_rate_hz=self.max_fit_rate_hz if max_fit_rate_hz is None else max_fit_rate_hz)

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        """``config`` with this preset's detector size, fit rate and fit options (options already in
        ``config.mesh.options`` are kept over the preset's)."""
        detect = dataclasses.replace(config.detect, max_side=self.max_side)
        mesh = dataclasses.replace(config.mesh, max_fit_rate_hz=self.max_fit_rate_hz,
                                   options={**dict(self.fit_options), **config.mesh.options})
        return dataclasses.replace(config, detect=detect, mesh=mesh)


# The presets, by name. "accurate" is the default: a user trusts joint angles before speed.
# "fast" fits a third of the frames of a 30 fps video and a sixth of a 60 fps one. On the rendered
# side + 45 deg clips (bench_rendered) its 12-DoF mean is 4.87 deg at 30 fps and 4.88 at 60 fps
# (accurate: 4.96 / 4.98; at 15 Hz: 4.88 / 4.90), arms 11.7 / 10.9 deg (accurate 11.5 / 11.1).
# Fewer fit evaluations cost more than they save: fast with 150 / 200 of them, 5.1 / 5.0 deg.
# Half the rigid-stage iterations (30) does not: side + 45 deg 4.9 deg, front 7.0 (arm raises' arms
# 19 deg), ~12 ms less per fitted frame; on a 1200-frame 1080p video (bench_pipeline --loop 1200
# --threads 2) fast runs 35.6 frames/s end to end.
# Movements faster than these clips' (sprints, jumps) have power above 5 Hz that a 10 Hz fit cuts.
PRESETS: dict[str, SpeedPreset] = {p.name: p for p in (
    SpeedPreset("accurate", "full-resolution keypoints, the body fitted at <= 30 frames/s (every frame of "
                            "a 30 fps video)", max_fit_rate_hz=30.0),
    SpeedPreset("fast", "the body fitted at <= 10 frames/s and interpolated between (walking, squats, "
                        "sit-to-stand; not sprints or jumps)", max_fit_rate_hz=10.0,
                fit_options=(("rigid_iterations", 30),)),
)}
DEFAULT_PRESET = "accurate"


def get_preset(name: str) -> SpeedPreset:
    """The preset called ``name``; InputError listing the presets otherwise."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class FrameQuality:
    """Per-frame quality flags, all (T,).

    ``detection_confidence``: mean keypoint confidence of the detector (0 where nobody was found);
    ``fit_residual_px`` / ``fit_residual``: mesh fit's mean reprojection error in pixels / as a
    fraction of the person's size (NaN for frames interpolated by the fit); ``fit_plausible``: the
    fit's own verdict; ``marker_rms_m`` / ``marker_max_m``: OpenSim-style marker errors of the
    final pose on the scaled model (weighted markers), metres.
    """

    detection_confidence: np.ndarray
    fit_residual_px: np.ndarray
    fit_residual: np.ndarray
    fit_plausible: np.ndarray
    marker_rms_m: np.ndarray
    marker_max_m: np.ndarray

    @property
    def good(self) -> np.ndarray:
        """(T,) bool: detected, plausibly fitted, marker RMS under 4 cm."""
        return (self.detection_confidence > 0) & self.fit_plausible & (np.nan_to_num(self.marker_rms_m, nan=1.0) < 0.04)


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock seconds per stage; ``detector_s`` is the part of ``detect_s`` inside the detector,
    ``decode_wait_s`` the part spent waiting for decoded frames (decoding runs in a second thread);
    ``body_load_s`` builds the body model / mesh backend (once per process, ~1.3 s for Anny: not
    per frame, so kept out of ``mesh_s``)."""

    detect_s: float = 0.0
    detector_s: float = 0.0
    decode_wait_s: float = 0.0
    body_load_s: float = 0.0
    mesh_s: float = 0.0
    scale_s: float = 0.0
    neurik_s: float = 0.0
    refine_s: float = 0.0
    report_s: float = 0.0

    @property
    def total_s(self) -> float:
        return (self.detect_s + self.body_load_s + self.mesh_s + self.scale_s + self.neurik_s + self.refine_s
                + self.report_s)


@dataclass(frozen=True)
class OutputFiles:
    trc: Path
    mot: Path
    osim: Path
    html: Path | None

    def all(self) -> list[Path]:
        return [p for p in (self.trc, self.mot, self.osim, self.html) if p is not None]


@dataclass(frozen=True, eq=False)
class BioPoseResult:
    """One video's answer. T frames, M markers, n coordinates.

    ``times`` (T,) s; ``marker_xyz`` (T, M, 3) metres, OpenSim ground; ``q`` (T, n) internal units
    (rad / m) in the scaled model's CoordinateSet order; ``rotational`` (n,) bool.
    ``scaled_model_xml``: the subject-scaled model, markers registered (``scaled_model`` loads it).
    ``keypoints``: the detector's cleaned keypoints (pixels); ``mesh``: the fit (camera, quality).
    ``marker_scale``: factor applied to the fitted markers for ``SubjectConfig.height_m`` (1 if none).
    ``marker_weights``: IK weight per model marker used by the refinement.
    """

    video: Path
    times: np.ndarray
    fps: float
    marker_names: tuple[str, ...]
    marker_xyz: np.ndarray
    coordinate_names: tuple[str, ...]
    q: np.ndarray
    rotational: np.ndarray
    quality: FrameQuality
    scale_factors: ScaleFactors
    scaled_model_xml: str
    model_name: str
    keypoints: KeypointSequence
    mesh: MeshFit
    marker_scale: float
    solver: str
    timings: StageTimings
    config: PipelineConfig
    # IK weight of each model marker used by the refinement (OpenSim IK tasks with these reproduce the .mot).
    marker_weights: dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])

    # ---- OpenSim objects -------------------------------------------------------------------
    @property
    def markers(self):
        """``opensim.TimeSeriesTableVec3`` of the virtual markers (metres, ``DataRate`` = video fps)."""
        from opensim_biopose.io.trc import to_table

        return to_table(self.marker_data())

    @property
    def coordinates(self):
        """``opensim.TimeSeriesTable`` of the coordinates, rotational ones in degrees (``inDegrees=yes``)."""
        from opensim_biopose.io.mot import CoordinateData, to_table

        return to_table(CoordinateData(self.times, self.coordinate_names, self.q), self.rotational)

    @property
    def scaled_model(self):
        """The subject-scaled ``opensim.Model`` (a fresh object on every access)."""
        import opensim as osim

        with tempfile.TemporaryDirectory(prefix="biopose_model_") as folder:
            path = Path(folder) / f"{self.model_name}.osim"
            path.write_text(self.scaled_model_xml)
            return osim.Model(str(path))

    def marker_data(self):
        from opensim_biopose.io.trc import MarkerData

        return MarkerData(times=self.times, names=self.marker_names, xyz=self.marker_xyz, rate=float(self.fps))

    # ---- files ---------------------------------------------------------------------------------
    def output_files(self, out_dir: str | os.PathLike[str], stem: str | None = None) -> OutputFiles:
        return output_files(Path(out_dir), stem or self.video.stem, self.config.report.enabled)

    def write(self, out_dir: str | os.PathLike[str], *, stem: str | None = None, overwrite: bool = False) -> OutputFiles:
        """Write .trc, .mot, scaled .osim (and the report) into ``out_dir``: all of them or none.

        Existing files are an InputError unless ``overwrite``.
        """
        files = self.output_files(out_dir, stem)
        check_outputs(files, overwrite)
        from opensim_biopose.io.mot import write_mot
        from opensim_biopose.io.trc import write_trc

        try:
            with ExitStack() as stack:
                tmp = {k: stack.enter_context(atomic_path(p)) for k, p in dataclasses.asdict(files).items() if p}
                write_trc(tmp["trc"], self.marker_data())
                _rename_trc_header(tmp["trc"], files.trc.name)
                write_mot(tmp["mot"], list(self.coordinate_names), self.times, self.q, self.rotational)
                tmp["osim"].write_text(self.scaled_model_xml)
                if files.html is not None:
                    from opensim_biopose.report import write_report

                    write_report(self, tmp["html"])
        except OSError as exc:          # not a folder, no permission, disk full: nothing was written
            raise InputError(f"cannot write into {out_dir} ({exc}); choose another folder with --out") from exc
        _readable(files.all())
        return files


def output_files(out_dir: Path, stem: str, report: bool = True) -> OutputFiles:
    """The four output paths for a video ``stem`` in ``out_dir``."""
    p = {k: out_dir / f"{stem}{s}" for k, s in OUTPUT_SUFFIXES.items()}
    return OutputFiles(p["trc"], p["mot"], p["osim"], p["html"] if report else None)


def _readable(paths: list[Path]) -> None:
    """Give outputs the usual permissions (temporary files are created owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        p.chmod(0o666 & ~umask)


def check_outputs(files: OutputFiles, overwrite: bool) -> None:
    """InputError naming the existing outputs unless ``overwrite``, or when the folder cannot be one."""
    folder = files.trc.parent
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise InputError(f"output folder {folder}: {blocking} is a file; choose another folder with --out")
    existing = [str(p) for p in files.all() if p.exists()]
    if existing and not overwrite:
        raise InputError(f"output(s) exist already: {', '.join(existing)}; pass --overwrite to replace them")


def _rename_trc_header(tmp: Path, final_name: str) -> None:
    """write_trc names its own (temporary) target in line 1; name the final file there."""
    lines = tmp.read_text().split("\n", 1)
    fields = lines[0].split("\t")
    fields[-1] = final_name
    tmp.write_text("\t".join(fields) + "\n" + (lines[1] if len(lines) > 1 else ""))


# ---------------------------------------------------------------------------------------------
# Stages


@dataclass(frozen=True, eq=False)
class SubjectMarkers:
    """Virtual markers ready for the OpenSim model: names mapped, size fixed. (T, M, 3) metres, ground.

    ``static``: (1, M, 3) the fitted body standing in its rest pose (the mesh backend's "static
    trial"), or None; segment sizes are measured on it when present, else on the moving frames.
    """

    names: tuple[str, ...]
    xyz: np.ndarray
    scale: float
    static: np.ndarray | None = None

    @property
    def for_measuring(self) -> np.ndarray:
        """(T', M, 3) the frames segment sizes are measured on."""
        return self.static if self.static is not None else self.xyz


@dataclass(frozen=True, eq=False)
class ModelPair:
    """The generic model and its Skeleton (float64), and IK weights of its markers."""

    path: Path
    skeleton: Any
    weights: dict[str, float]
    stature_m: float


def mesh_backend(config: MeshStageConfig):
    """The configured mesh backend with its body model built (the slow part for Anny)."""
    options = {"keep_vertices": False, **config.options} if config.backend == "keypoint-fit" else dict(config.options)
    return get_registry().create("mesh_backends", config.backend, body_model=config.body_model,
                                 marker_set=config.marker_set, **options)


def run_mesh(keypoints: KeypointSequence, config: MeshStageConfig, backend=None) -> MeshFit:
    """The body fitted to ``keypoints`` (every frame, or every k-th frame interpolated to all);
    ``backend``: one from :func:`mesh_backend` for ``config`` (None: built here)."""
    backend = backend if backend is not None else mesh_backend(config)
    rows = fit_rows(keypoints.times, keypoints.fps, config.max_fit_rate_hz)
    if len(rows) == keypoints.num_frames:
        return backend.fit(keypoints)
    return expand_fit(backend.fit(take_frames(keypoints, rows)), keypoints.times, rows)


def fit_rows(times: np.ndarray, fps: float, max_rate_hz: float | None) -> np.ndarray:
    """Frames to fit: every ``ceil(fps / max_rate_hz)``-th one, and always the last."""
    total = len(times)
    if max_rate_hz is None or fps <= max_rate_hz or total < 3:
        return np.arange(total)
    stride = int(np.ceil(fps / max_rate_hz))
    return np.unique(np.append(np.arange(0, total, stride), total - 1))


def take_frames(seq: KeypointSequence, rows: np.ndarray) -> KeypointSequence:
    """The keypoint sequence restricted to frames ``rows`` (per-frame arrays sliced, the rest kept)."""
    def cut(a):
        return None if a is None else np.asarray(a)[rows]

    return dataclasses.replace(seq, times=cut(seq.times), xy=cut(seq.xy), confidence=cut(seq.confidence),
                               detected=cut(seq.detected), world_xyz=cut(seq.world_xyz), boxes=cut(seq.boxes),
                               interpolated=cut(seq.interpolated), meta=dict(seq.meta))


def expand_fit(fit: MeshFit, times: np.ndarray, rows: np.ndarray) -> MeshFit:
    """A fit of frames ``rows`` brought to every frame at ``times``: markers and pose linearly
    interpolated in time; quality of unfitted frames NaN residuals, plausible as the nearer fitted frame."""
    from opensim_biopose.mesh.base import FitQuality

    def lerp(a: np.ndarray) -> np.ndarray:
        flat = np.asarray(a, np.float64).reshape(len(rows), -1)
        out = np.stack([np.interp(times, fit.times, flat[:, j]) for j in range(flat.shape[1])], axis=1)
        return out.reshape(len(times), *np.asarray(a).shape[1:])

    after = np.clip(np.searchsorted(fit.times, times), 1, len(rows) - 1)
    nearest = np.where(np.abs(fit.times[after] - times) < np.abs(fit.times[after - 1] - times), after, after - 1)
    fitted = np.zeros(len(times), bool)
    fitted[rows] = True

    def spread(a: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(len(times), fill, dtype=np.float64)
        out[rows] = a
        return out

    q = fit.quality
    quality = FitQuality(reprojection_px=spread(q.reprojection_px, np.nan), normalized=spread(q.normalized, np.nan),
                         limit_excess_deg=lerp(q.limit_excess_deg), interpolated=~fitted | np.asarray(q.interpolated)[nearest],
                         plausible=np.asarray(q.plausible)[nearest])
    return dataclasses.replace(fit, times=np.asarray(times, np.float64), pose=lerp(fit.pose).astype(fit.pose.dtype),
                               markers=lerp(fit.markers), vertices=None, quality=quality)


def ik_marker_weights(model_name: str, marker_names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """IK weights of a model's markers: the default model's by marker kind (bony landmarks 10, soft
    tissue 1; see osim_models), 1 for every marker of any other model (OpenSim's default)."""
    from osim_models.build_default_model import MODEL_NAME, marker_weight

    if model_name.removesuffix("_scaled") == MODEL_NAME:
        try:
            return {m: marker_weight(m) for m in marker_names}
        except KeyError:
            pass
    return {m: 1.0 for m in marker_names}


def load_generic_model(config: SubjectConfig) -> ModelPair:
    """The generic model, its Skeleton, IK marker weights and stature (m)."""
    from opensim_biopose.kinematics import Skeleton
    from osim_models import DEFAULT_MODEL
    from osim_models.build_default_model import DEFAULT_HEIGHT_M

    path = Path(config.model) if config.model is not None else DEFAULT_MODEL
    if not path.is_file():
        raise InputError(f"model {path} does not exist; give an OpenSim .osim file with --model")
    sk = Skeleton.from_osim(path, dtype=torch.float64)
    sk.require_markers()
    stature = DEFAULT_HEIGHT_M if path.resolve() == DEFAULT_MODEL.resolve() else _stature_from_markers(sk)
    return ModelPair(path, sk, ik_marker_weights(sk.model_name, sk.marker_names), stature)


def _stature_from_markers(sk) -> float:
    """Rough stature of a model: vertical marker span at the default pose / 0.94 (the highest markers,
    on the forehead/temples, sit near eye level, ~0.94 of stature in Drillis & Contini's 1966
    segment proportions)."""
    from opensim_biopose.scaling import model_marker_positions

    y = model_marker_positions(sk)[:, 1]
    return float((y.max() - y.min()) / 0.94)


def estimated_stature(model: ModelPair, markers: SubjectMarkers, config: ScalingConfig) -> float:
    """The subject's stature (m) implied by the markers: the model's stature x the overall scale factor."""
    return model.stature_m * measure_scale_factors(model.skeleton, markers.names, markers.for_measuring, config).overall


def subject_markers(fit: MeshFit, model: ModelPair, config: SubjectConfig,
                    scaling: ScalingConfig = ScalingConfig()) -> SubjectMarkers:
    """Rename virtual markers to the model's names; rescale them about the ground origin (on the
    floor under the body) to a known stature."""
    names = tuple(config.marker_map.get(n, n) for n in fit.marker_names)
    known = set(model.skeleton.marker_names)
    if not known & set(names):
        raise InputError(
            f"none of the virtual markers ({', '.join(names[:6])}, ...) is a marker of model {model.path}; "
            "map them with --marker-map JSON ({\"virtual name\": \"model marker\"})")
    extra = [n for n in names if n not in known]
    if extra:       # e.g. the joint centres of anny-pig53 v3: written to the .trc, unused by the solvers
        log.info("%d virtual markers are not on model %s and go to the .trc only (NeurIK, scaling and IK skip "
                 "them): %s", len(extra), model.path.name, ", ".join(extra))
    rest = getattr(fit, "rest_markers", None)
    static = None if rest is None else np.asarray(rest, np.float64)[None]
    markers = SubjectMarkers(names, fit.markers.astype(np.float64), 1.0, static)
    if config.height_m is None:
        return markers
    k = config.height_m / estimated_stature(model, markers, scaling)
    log.info("rescaling virtual markers by %.3f for a stature of %.2f m", k, config.height_m)
    return SubjectMarkers(names, markers.xyz * k, k, None if static is None else static * k)


def solve_neurik(model: ModelPair, markers: SubjectMarkers, times: np.ndarray, config: SolverConfig
                 ) -> tuple[np.ndarray | None, str]:
    """NeurIK on the generic model: (T, n) q0 in rad / m, or None when no weights and training is off."""
    from opensim_biopose.neurik import load_or_train
    from opensim_biopose.neurik.loader import find_shipped

    sk = model.skeleton
    names = [n for n in sk.marker_names if n in set(markers.names)]
    weights = [model.weights[n] for n in names]
    if config.weights is None and not config.train and find_shipped(sk, names) is None:
        try:
            net = load_or_train(sk, names, weights, train=False, progress=False)
        except InputError:
            log.warning("no NeurIK weights for %s and training is off: refining from the default pose", model.path)
            return None, "refinement from the default pose"
    else:
        net = load_or_train(sk, names, weights, weights=config.weights, train=config.train, progress=True)
    idx = [markers.names.index(n) for n in names]
    res = net.solve(names, markers.xyz[:, idx], times)
    return res.q.double().cpu().numpy(), "NeurIK"


@dataclass(frozen=True, eq=False)
class Solved:
    q: np.ndarray
    rms: np.ndarray
    max_error: np.ndarray
    xml: str


def fit_scaled_model(model: ModelPair, factors: ScaleFactors, markers: SubjectMarkers, q0: np.ndarray,
                     config: PipelineConfig, work: Path, *, from_default: bool = False) -> Solved:
    """Scale the generic model, pose it on the subject's markers, register markers, re-solve.

    ``q0`` (T, n) start (NeurIK or the default pose) on coordinates shared with the scaled model.
    ``from_default``: q0 is the default pose, so the registration frames' poses, interpolated in
    time, are a better start for every other frame.
    """
    from opensim_biopose.kinematics import Skeleton
    from opensim_biopose.neurik.refine import align_markers, marker_errors, refine

    refine_on = config.solver.refine
    scaled = write_scaled_model(model.path, work / "scaled_pre.osim", factors, mass_kg=config.subject.mass_kg,
                                preserve_mass_distribution=config.scaling.preserve_mass_distribution,
                                name=f"{model.skeleton.model_name}_scaled")
    sk = Skeleton.from_osim(scaled, dtype=torch.float64)
    q = torch.tensor(q0, dtype=torch.float64)
    if config.scaling.register_markers:
        rows = _spread(len(q), config.scaling.registration_frames)
        xyz, w, _ = align_markers(sk, markers.names, markers.xyz[rows], model.weights)
        q_rows = refine(sk, xyz, w, q[rows]).q if refine_on else q[rows]
        moved = register_markers(sk, q_rows.numpy(), markers.names, markers.xyz[rows])
        scaled = write_scaled_model(model.path, work / "scaled.osim", factors, mass_kg=config.subject.mass_kg,
                                    markers=moved, preserve_mass_distribution=config.scaling.preserve_mass_distribution,
                                    name=f"{model.skeleton.model_name}_scaled")
        sk = Skeleton.from_osim(scaled, dtype=torch.float64)
        if refine_on and from_default:
            q = torch.from_numpy(_interpolate_rows(np.arange(len(q), dtype=np.float64), rows, q_rows.numpy()))
        elif refine_on:
            q[rows] = q_rows         # the registration poses are the better start for those frames
    xyz, w, _ = align_markers(sk, markers.names, markers.xyz, model.weights)
    if refine_on:
        q = refine(sk, xyz, w, q).q
    _, rms, mx, q_full = marker_errors(sk, q, torch.from_numpy(xyz), torch.from_numpy(w))
    return Solved(q_full.numpy(), rms.numpy(), mx.numpy(), scaled.read_text())


def _interpolate_rows(axis: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(T, n): ``values`` (R, n) given at ``rows``, linearly interpolated (held at the ends)."""
    return np.stack([np.interp(axis, axis[rows], values[:, j]) for j in range(values.shape[1])], axis=1)


def _spread(total: int, count: int) -> np.ndarray:
    """At most ``count`` evenly spaced indices of ``range(total)``."""
    return np.unique(np.linspace(0, total - 1, min(total, max(count, 1))).round().astype(int))


def frame_quality(keypoints: KeypointSequence, fit: MeshFit, solved: Solved) -> FrameQuality:
    conf = np.where(keypoints.detected, np.asarray(keypoints.confidence, float).mean(axis=1), 0.0)
    q = fit.quality
    return FrameQuality(conf, np.asarray(q.reprojection_px, float), np.asarray(q.normalized, float),
                        np.asarray(q.plausible, bool), solved.rms, solved.max_error)


# ---------------------------------------------------------------------------------------------
# The pipeline


class _Clock:
    """Times stages and prints one progress line per stage."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, what: str, source: Path | None = None) -> Iterator[None]:
        """Time one stage; an InputError raised inside names ``source`` (the video) when it does not yet."""
        if self.progress:
            print(f"[{name}] {what} ...", flush=True)
        t0 = time.perf_counter()
        try:
            yield
        except InputError as exc:
            if source is None or str(source) in str(exc):
                raise
            raise InputError(f"{source}: {exc}") from exc
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        if self.progress:
            print(f"[{name}] done in {self.seconds[name]:.1f} s", flush=True)


def _check_device(device: str) -> None:
    """InputError (naming the ``--device`` option) for an unknown device or CUDA without a GPU."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU (a CPU-only build, or no "
                         "driver); run with --device cpu")
    if device == "cuda":      # accepted so scripts stay portable, but say where the work really runs
        log.warning("--device cuda: the mesh fit, NeurIK and the refinement take no device yet; they run on the CPU")


def run_pipeline(video: str | os.PathLike[str], config: PipelineConfig = PipelineConfig()) -> BioPoseResult:
    """Run every stage on ``video``; see the module docstring. Bad input -> InputError naming it."""
    video = Path(video)
    if not video.exists():
        raise InputError(f"video {video} does not exist; check the path")
    _check_device(config.solver.device)
    import opensim as osim

    osim.Logger.removeFileSink()          # else OpenSim writes opensim.log into the cwd
    clock = _Clock(config.progress)
    model = load_generic_model(config.subject)
    front = FrontEndTiming()
    # The body model is built after detection, not beside it in a thread: that gained nothing on
    # this 2-core machine (detect + build of the real video 4.0 s sequential, 4.1 s overlapped:
    # the detector slowed from 2.7 to 4.0 s while the build ran).
    with clock.stage("detect", f"detecting the person in {video.name} ({config.detect.detector})", video):
        keypoints = detect_video(video, config=config.detect, timing=front)
    if not keypoints.detected.any():
        raise InputError(f"video {video}: nobody was detected in any of its {keypoints.num_frames} frames")
    with clock.stage("body", f"loading body model {config.mesh.body_model}"):
        backend = mesh_backend(config.mesh)
    with clock.stage("mesh", f"fitting body model {config.mesh.body_model} to {keypoints.num_frames} frames", video):
        fit = run_mesh(keypoints, config.mesh, backend)
    times = np.asarray(fit.times, np.float64)
    with clock.stage("scale", f"scaling {model.path.name} to the subject"):
        markers = subject_markers(fit, model, config.subject, config.scaling)
        factors = measure_scale_factors(model.skeleton, markers.names, markers.for_measuring, config.scaling)
    with clock.stage("neurik", "NeurIK on the generic model"):
        q0, how = solve_neurik(model, markers, times, config.solver)
    if q0 is None:
        q0 = model.skeleton.coordinate_defaults.double().expand(len(times), -1).numpy().copy()
        config = dataclasses.replace(config, solver=dataclasses.replace(config.solver, refine=True))
    with tempfile.TemporaryDirectory(prefix="biopose_") as work, \
            clock.stage("refine", "scaled model: " + ("refinement + marker registration" if config.solver.refine
                                                      else "marker registration")):
        solved = fit_scaled_model(model, factors, markers, q0, config, Path(work), from_default=how != "NeurIK")
    if config.solver.refine and how == "NeurIK":
        how = "NeurIK + refinement"
    timings = StageTimings(detect_s=clock.seconds["detect"], detector_s=front.detector_s,
                           decode_wait_s=front.decode_wait_s,
                           body_load_s=clock.seconds["body"], mesh_s=clock.seconds["mesh"],
                           scale_s=clock.seconds["scale"], neurik_s=clock.seconds["neurik"],
                           refine_s=clock.seconds["refine"])
    sk = model.skeleton
    return BioPoseResult(
        video=video, times=times, fps=float(fit.fps), marker_names=markers.names, marker_xyz=markers.xyz,
        coordinate_names=tuple(sk.coordinate_names), q=solved.q,
        rotational=sk.coordinate_is_rotational.cpu().numpy().astype(bool),
        quality=frame_quality(keypoints, fit, solved), scale_factors=factors, scaled_model_xml=solved.xml,
        model_name=f"{sk.model_name}_scaled", keypoints=keypoints, mesh=fit, marker_scale=markers.scale,
        solver=how, timings=timings, config=config, marker_weights=dict(model.weights),
    )


def load_marker_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``{"virtual marker": "model marker"}`` JSON file; InputError naming it when unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"marker map {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"marker map {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError(f"marker map {path} must be one JSON object of \"virtual name\": \"model marker name\"")
    return data


__all__ = ["DEFAULT_PRESET", "PRESETS", "BioPoseResult", "FrameQuality", "MeshStageConfig", "OutputFiles",
           "PipelineConfig", "ReportStageConfig", "SolverConfig", "SpeedPreset", "StageTimings", "SubjectConfig",
           "check_outputs", "get_preset", "load_marker_map", "output_files", "run_pipeline"]
