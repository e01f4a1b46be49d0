"""Python API for OpenSim scripting: ``BioPose(...).run(video)`` and OpenSim's tools on the outputs.

Example::

    from opensim_biopose import BioPose, run_inverse_kinematics
    result = BioPose(height_m=1.80).run("walk.mp4")      # BioPoseResult
    files = result.write("out")                            # .trc, .mot, scaled .osim, report
    mot = run_inverse_kinematics(files, "out/ik_opensim.mot")

The OpenSim tools run in process with absolute paths, from a temporary working folder (OpenSim
resolves relative setup paths against the cwd and may drop files there), file logging off.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from opensim_biopose.errors import InputError
from opensim_biopose.io.opensim_tools import opensim_workdir, require_file, run_ik_tool
from opensim_biopose.pipeline import (
    BioPoseResult,
    MeshStageConfig,
    OutputFiles,
    PipelineConfig,
    SolverConfig,
    SubjectConfig,
    run_pipeline,
)


class BioPose:
    """The pipeline with one configuration, reusable over many videos.

    Give a full :class:`PipelineConfig`, or the common options as keywords (they override it):
    ``model`` (.osim), ``detector``, ``body_model``, ``height_m``, ``mass_kg``, ``refine``,
    ``device``, ``max_frames``, ``progress``.
    """

    def __init__(self, config: PipelineConfig | None = None, *, model: str | os.PathLike[str] | None = None,
                 detector: str | None = None, body_model: str | None = None, height_m: float | None = None,
                 mass_kg: float | None = None, refine: bool | None = None, device: str | None = None,
                 max_frames: int | None = None, progress: bool | None = None) -> None:
        cfg = config or PipelineConfig()
        subject = dataclasses.replace(
            cfg.subject, model=Path(model) if model is not None else cfg.subject.model,
            height_m=height_m if height_m is not None else cfg.subject.height_m,
            mass_kg=mass_kg if mass_kg is not None else cfg.subject.mass_kg)
        detect = dataclasses.replace(cfg.detect, detector=detector or cfg.detect.detector,
                                     max_frames=max_frames if max_frames is not None else cfg.detect.max_frames)
        mesh: MeshStageConfig = dataclasses.replace(cfg.mesh, body_model=body_model or cfg.mesh.body_model)
        solver: SolverConfig = dataclasses.replace(cfg.solver, refine=cfg.solver.refine if refine is None else refine,
                                                   device=device or cfg.solver.device)
        self.config = dataclasses.replace(cfg, subject=subject, detect=detect, mesh=mesh, solver=solver,
                                          progress=cfg.progress if progress is None else progress)

    def run(self, video: str | os.PathLike[str]) -> BioPoseResult:
        """Run every stage on ``video``; see :class:`BioPoseResult` for the arrays and OpenSim objects."""
        return run_pipeline(video, self.config)


# ---------------------------------------------------------------------------------------------
# OpenSim tools on the outputs


def _files(source: BioPoseResult | OutputFiles, out_dir: Path) -> OutputFiles:
    if isinstance(source, BioPoseResult):
        return source.write(out_dir, overwrite=True)
    return source


def _mot_times(mot_file: Path) -> np.ndarray:
    """(T,) times of a .mot/.sto (read through OpenSim's adapter; degrees do not matter here).

    InputError naming the file when OpenSim cannot read it or it has no rows."""
    import opensim as osim

    osim.Logger.removeFileSink()
    try:
        table = osim.TimeSeriesTable(str(mot_file))
    except RuntimeError as exc:
        raise InputError(f"motion {mot_file} is not a readable .mot/.sto ({_opensim_message(exc)})") from exc
    times = np.array([table.getIndependentColumn()[i] for i in range(table.getNumRows())], dtype=float)
    if times.size == 0:
        raise InputError(f"motion {mot_file} has no rows")
    return times


def _marker_weights(model_file: Path) -> dict[str, float]:
    """The IK weights the pipeline uses for this model's markers (see pipeline.ik_marker_weights)."""
    import opensim as osim

    from opensim_biopose.pipeline import ik_marker_weights

    model = osim.Model(str(model_file))
    markers = model.getMarkerSet()
    return ik_marker_weights(model.getName(), [markers.get(i).getName() for i in range(markers.getSize())])


def run_inverse_kinematics(source: BioPoseResult | OutputFiles, out_mot: str | os.PathLike[str], *,
                           accuracy: float = 1e-5, marker_weights: dict[str, float] | None = None) -> Path:
    """OpenSim's InverseKinematicsTool on the .trc and scaled .osim; returns the written .mot.

    ``marker_weights``: IK task weights (default: the pipeline's own, so the answers are comparable).
    A BioPoseResult is first written beside ``out_mot``.
    """
    out_mot = Path(out_mot).resolve()
    out_mot.parent.mkdir(parents=True, exist_ok=True)
    if marker_weights is None and isinstance(source, BioPoseResult):
        marker_weights = source.marker_weights
    files = _files(source, out_mot.parent)
    model_file, trc = require_file(files.osim, "scaled model"), require_file(files.trc, "marker file")
    weights = marker_weights if marker_weights is not None else _marker_weights(model_file)
    return run_ik_tool(model_file, trc, out_mot, marker_weights=weights, accuracy=accuracy)


def run_inverse_dynamics(model_file: str | os.PathLike[str], mot_file: str | os.PathLike[str],
                         out_sto: str | os.PathLike[str], *, external_loads: str | os.PathLike[str] | None = None,
                         lowpass_hz: float = 6.0) -> Path:
    """OpenSim's InverseDynamicsTool on a model and a coordinates .mot; returns the generalized-forces .sto.

    Without ``external_loads`` (an ExternalLoads .xml) the result is the net joint loads of the
    motion alone (residuals absorb ground contact). ``lowpass_hz``: coordinate filter, as in OpenSim.
    The .sto appears only when the tool succeeds (written in a staging folder, then renamed);
    a failed run is an InputError and leaves ``out_sto`` as it was.
    """
    import opensim as osim

    model_file, mot_file = require_file(Path(model_file), "model"), require_file(Path(mot_file), "motion")
    loads = require_file(Path(external_loads), "external loads") if external_loads is not None else None
    out_sto = Path(out_sto).resolve()
    times = _mot_times(mot_file)
    with opensim_workdir(), _staging(out_sto.parent) as staging:
        model = osim.Model(str(model_file))     # kept alive while the tool holds it
        tool = osim.InverseDynamicsTool()
        tool.setModel(model)
        tool.setCoordinatesFileName(str(mot_file))
        tool.setLowpassCutoffFrequency(float(lowpass_hz))
        tool.setStartTime(float(times[0]))
        tool.setEndTime(float(times[-1]))
        if loads is not None:
            tool.setExternalLoadsFileName(str(loads))
        tool.setResultsDir(str(staging))
        tool.setOutputGenForceFileName(out_sto.name)
        _run_tool("InverseDynamicsTool", mot_file, tool.run)
        _publish([staging / out_sto.name], out_sto.parent, "InverseDynamicsTool", mot_file)
    return out_sto


def run_analyze_body_kinematics(model_file: str | os.PathLike[str], mot_file: str | os.PathLike[str],
                                out_dir: str | os.PathLike[str], *, name: str = "biopose") -> list[Path]:
    """OpenSim's AnalyzeTool with a BodyKinematics analysis; returns the written .sto files
    (body positions, velocities, accelerations in ground).

    The files are written in a staging folder and renamed into ``out_dir`` only when the tool
    succeeds; a failed run is an InputError and adds nothing to ``out_dir``.
    """
    import opensim as osim

    model_file, mot_file = require_file(Path(model_file), "model"), require_file(Path(mot_file), "motion")
    out_dir = Path(out_dir).resolve()
    times = _mot_times(mot_file)
    with opensim_workdir(), _staging(out_dir) as staging:
        model = osim.Model(str(model_file))
        tool = osim.AnalyzeTool()
        tool.setName(name)
        tool.setModel(model)
        tool.setCoordinatesFileName(str(mot_file))
        tool.setLowpassCutoffFrequency(6.0)
        tool.setInitialTime(float(times[0]))
        tool.setFinalTime(float(times[-1]))
        tool.setResultsDir(str(staging))
        analysis = osim.BodyKinematics()
        analysis.setModel(model)
        analysis.setStartTime(float(times[0]))
        analysis.setEndTime(float(times[-1]))
        tool.getAnalysisSet().cloneAndAppend(analysis)
        model.addAnalysis(analysis)

        def run() -> bool:
            state = model.initSystem()
            motion = osim.Storage(str(mot_file))          # kept alive while the tool reads it
            tool.setStatesFromMotion(state, motion, True)
            return tool.run()

        _run_tool("AnalyzeTool", mot_file, run)
        written = _publish(sorted(staging.glob(f"{name}_BodyKinematics_*.sto")), out_dir, "AnalyzeTool", mot_file)
    return written


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A hidden temporary folder inside ``out_dir`` (same file system: a rename publishes a
    file atomically) for an OpenSim tool's results; removed with whatever is left in it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out_dir} ({exc}); choose another") from exc
    with tempfile.TemporaryDirectory(prefix=".biopose_staging_", dir=out_dir) as folder:
        yield Path(folder)


def _run_tool(tool_name: str, mot_file: Path, run: Callable[[], bool]) -> None:
    """Run an OpenSim tool; its failure (False or a C++ exception) becomes an InputError naming the motion."""
    try:
        ok = run()
    except RuntimeError as exc:             # SWIG's wrapping of OpenSim's std::exception
        raise InputError(f"OpenSim's {tool_name} failed on {mot_file} ({_opensim_message(exc)}); check that it "
                         "is a coordinates .mot/.sto of this model with several rows, and any external loads") from exc
    if not ok:
        raise InputError(f"OpenSim's {tool_name} failed on {mot_file}")


def _publish(files: list[Path], out_dir: Path, tool_name: str, mot_file: Path) -> list[Path]:
    """Rename the staged ``files`` into ``out_dir``; InputError when the tool wrote none of them."""
    missing = [f.name for f in files if not f.is_file()]
    if not files or missing:
        raise InputError(f"OpenSim's {tool_name} wrote no {', '.join(missing) or 'results'} for {mot_file}")
    out = []
    for f in files:
        os.replace(f, out_dir / f.name)
        out.append(out_dir / f.name)
    return out


def _opensim_message(exc: Exception, limit: int = 300) -> str:
    """A wrapped OpenSim exception's message on one line, without SWIG's C++-signature prefix."""
    text = " ".join(str(exc).split())
    text = text.split("': ", 1)[-1]
    return text if len(text) <= limit else text[:limit] + " ..."


def coordinates_degrees(result: BioPoseResult) -> np.ndarray:
    """(T, n) coordinates with rotational ones in degrees (as in the .mot), translational in metres."""
    q = result.q.copy()
    q[:, result.rotational] = np.degrees(q[:, result.rotational])
    return q


__all__ = ["BioPose", "BioPoseResult", "coordinates_degrees", "run_analyze_body_kinematics", "run_inverse_dynamics",
           "run_inverse_kinematics"]
