"""OpenSim's tools run in process, safely: inputs checked first, absolute paths, a throwaway cwd.

OpenSim segfaults (or throws an opaque error) on a missing file, resolves a setup's relative
paths against the current working folder, and may drop ``opensim.log`` or error reports there.
Everything here checks the inputs itself, runs from a temporary folder, restores the cwd in
``finally`` and writes its output atomically (a failed run leaves no partial .mot).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def opensim_workdir() -> Iterator[Path]:
    """A temporary cwd for an OpenSim tool, with OpenSim's file log off; the old cwd comes back."""
    import opensim as osim

    osim.Logger.removeFileSink()
    old = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="biopose_osim_") as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(old)


def require_file(path: PathLike, what: str) -> Path:
    """``path`` made absolute, or InputError naming ``what`` when it is not an existing file."""
    resolved = Path(path).resolve()
    if not resolved.is_file():     # OpenSim would segfault or throw an opaque error on it
        raise InputError(f"{what} {resolved} does not exist; check the path")
    return resolved


def run_ik_tool(model_file: PathLike, marker_file: PathLike, out_mot: PathLike, *,
                setup: PathLike | None = None, marker_weights: Mapping[str, float] | None = None,
                time_range: tuple[float, float] | None = None, accuracy: float = 1e-5,
                exclude: Iterable[str] = (), report_errors: bool = False) -> Path:
    """OpenSim's InverseKinematicsTool on ``marker_file`` (.trc, metres or mm as the file says)
    with ``model_file`` (.osim); writes coordinates to ``out_mot`` (degrees for rotations, metres
    for translations, as OpenSim does) and returns its absolute path.

    ``setup``: an IK setup .xml whose IKTaskSet is used (its model/marker/output paths are not).
    ``marker_weights``: name -> weight; overrides the setup's task of that name or adds one
    (weight <= 0 turns it off). Markers absent from the .trc are skipped.
    ``time_range``: (start, end) seconds; default the whole .trc.
    ``exclude``: markers whose tasks are turned off (still in the .trc).
    ``report_errors``: also write OpenSim's ``*_ik_marker_errors.sto`` beside ``out_mot``.

    Raises:
        InputError: a missing input (checked before OpenSim sees it) or a failed IK run.
    """
    model_file = require_file(model_file, "model")
    marker_file = require_file(marker_file, "marker file")
    setup = require_file(setup, "IK setup") if setup is not None else None
    out_mot = Path(out_mot).resolve()
    from opensim_biopose.io.trc import read_trc

    data = read_trc(marker_file)
    start, end = time_range if time_range is not None else (float(data.times[0]), float(data.times[-1]))
    weights = {name: w for name, w in (marker_weights or {}).items() if name in data.names}
    import opensim as osim

    with opensim_workdir(), atomic_path(out_mot) as tmp_mot:
        tool = osim.InverseKinematicsTool(str(setup)) if setup is not None else osim.InverseKinematicsTool()
        tool.set_model_file(str(model_file))
        tool.setMarkerDataFileName(str(marker_file))
        tool.setOutputMotionFileName(str(tmp_mot))
        tool.setResultsDir(str(out_mot.parent))
        tool.set_accuracy(float(accuracy))
        tool.set_report_errors(bool(report_errors))
        tool.setStartTime(float(start))
        tool.setEndTime(float(end))
        _set_tasks(osim, tool.getIKTaskSet(), weights, frozenset(exclude))
        if not tool.run():
            raise InputError(f"OpenSim's InverseKinematicsTool failed on {marker_file} with {model_file}")
    return out_mot


def _set_tasks(osim, tasks, weights: Mapping[str, float], exclude: frozenset[str]) -> None:
    """Override or add IKMarkerTasks in ``tasks`` (the tool's IKTaskSet, edited in place)."""
    for name in set(weights) | exclude:
        index = tasks.getIndex(name)
        if index < 0:
            task = osim.IKMarkerTask()
            task.setName(name)
            task.setWeight(1.0)
            tasks.cloneAndAppend(task)
            index = tasks.getIndex(name)
        task = tasks.get(index)
        if name in weights:
            task.setWeight(float(weights[name]))
        task.setApply(name not in exclude and (name not in weights or weights[name] > 0))
