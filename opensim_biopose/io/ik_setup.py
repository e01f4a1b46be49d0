"""OpenSim InverseKinematicsTool setup files (.xml), parsed without touching OpenSim.

Relative paths are resolved against the **setup file's folder** (OpenSim resolves them
against the current directory, which makes a setup file behave differently depending on
where it is run from). Missing inputs are reported here, before OpenSim can crash on them.
"""
from __future__ import annotations

import dataclasses
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from opensim_biopose.errors import InputError

# Values OpenSim writes for "no file".
_UNASSIGNED = {"", "unassigned"}


@dataclasses.dataclass(frozen=True)
class MarkerTask:
    """One ``IKMarkerTask``: weight of a marker in the IK objective."""

    name: str
    weight: float
    apply: bool = True


@dataclasses.dataclass(frozen=True)
class CoordinateTask:
    """One ``IKCoordinateTask``: pull a coordinate towards a value.

    ``value_type`` is ``default_value`` (the model's default), ``manual_value`` (``value``, in
    internal units: rad / m) or ``from_file`` (the setup's coordinate file).
    """

    name: str
    weight: float
    apply: bool = True
    value_type: str = "default_value"
    value: float = 0.0


@dataclasses.dataclass(frozen=True)
class IKSetup:
    """An InverseKinematicsTool setup, paths absolute.

    ``time_range`` is ``(start, end)`` seconds or None for the whole trial.
    ``constraint_weight`` is ``math.inf`` when constraints are enforced exactly (OpenSim's default).
    """

    name: str
    setup_file: Path
    model_file: Path
    marker_file: Path
    marker_tasks: tuple[MarkerTask, ...]
    coordinate_tasks: tuple[CoordinateTask, ...] = ()
    coordinate_file: Path | None = None
    time_range: tuple[float, float] | None = None
    output_motion_file: Path | None = None
    results_directory: Path | None = None
    # OpenSim's defaults: accuracy 1e-5, constraints enforced exactly, errors reported.
    accuracy: float = 1e-5
    constraint_weight: float = math.inf
    report_errors: bool = True

    def marker_weights(self) -> dict[str, float]:
        """``{marker: weight}`` of the applied marker tasks (other markers are ignored, as in OpenSim)."""
        return {t.name: t.weight for t in self.marker_tasks if t.apply}

    def applied_coordinate_tasks(self) -> tuple[CoordinateTask, ...]:
        return tuple(t for t in self.coordinate_tasks if t.apply)


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _float(node: ET.Element, tag: str, default: float, setup: Path) -> float:
    text = _text(node, tag)
    if text is None or text == "":
        return default
    if text.lower() in {"inf", "infinity"}:
        return math.inf
    try:
        return float(text)
    except ValueError as exc:
        raise InputError(f"{setup}: <{tag}> must be a number, got {text!r}") from exc


def _bool(node: ET.Element, tag: str, default: bool) -> bool:
    text = _text(node, tag)
    if text is None or text == "":
        return default
    return text.lower() in {"true", "1", "yes"}


def _resolve(text: str | None, base: Path) -> Path | None:
    if text is None or text.strip().lower() in _UNASSIGNED:
        return None
    path = Path(os.path.expanduser(text.strip()))
    return path if path.is_absolute() else (base / path).resolve()


def _existing(text: str | None, base: Path, tag: str, setup: Path) -> Path:
    path = _resolve(text, base)
    if path is None:
        raise InputError(f"{setup}: <{tag}> is empty; it must name a file")
    if not path.is_file():
        raise InputError(
            f"{setup}: <{tag}> {text.strip()!r} resolves to {path}, which does not exist "
            "(relative paths are taken from the setup file's folder)"
        )
    return path


def _marker_task(node: ET.Element, setup: Path) -> MarkerTask:
    return MarkerTask(
        name=node.get("name", ""),
        weight=_float(node, "weight", 1.0, setup),
        apply=_bool(node, "apply", True),
    )


def _coordinate_task(node: ET.Element, setup: Path) -> CoordinateTask:
    return CoordinateTask(
        name=node.get("name", ""),
        weight=_float(node, "weight", 1.0, setup),
        apply=_bool(node, "apply", True),
        value_type=(_text(node, "value_type") or "default_value"),
        value=_float(node, "value", 0.0, setup),
    )


def _time_range(node: ET.Element, setup: Path) -> tuple[float, float] | None:
    text = _text(node, "time_range")
    if not text:
        return None
    parts = text.split()
    try:
        start, end = (float(p) for p in parts)
    except ValueError as exc:
        raise InputError(f"{setup}: <time_range> must be two numbers, got {text!r}") from exc
    if end < start:
        raise InputError(f"{setup}: <time_range> ends ({end}) before it starts ({start})")
    return start, end


def _check_coordinate_file(
    tasks: tuple[CoordinateTask, ...], coordinate_file: Path | None, setup: Path
) -> None:
    from_file = [t.name for t in tasks if t.apply and t.value_type == "from_file"]
    if from_file and (coordinate_file is None or not coordinate_file.is_file()):
        raise InputError(
            f"{setup}: coordinate tasks {from_file} take values from_file but <coordinate_file> "
            f"({coordinate_file}) does not exist"
        )


def _parse(path: str | os.PathLike[str]) -> tuple[Path, ET.Element]:
    """(resolved path, XML root) of an IK setup; InputError if it is missing or not XML."""
    setup = Path(path).resolve()
    if not setup.is_file():
        raise InputError(f"IK setup file {setup} does not exist")
    try:
        return setup, ET.parse(setup).getroot()
    except ET.ParseError as exc:
        raise InputError(f"IK setup file {setup} is not valid XML: {exc}") from exc


def read_ik_setup(path: str | os.PathLike[str]) -> IKSetup:
    """Parse an IK setup XML; model and marker files must exist.

    Raises:
        InputError: missing/malformed setup, no InverseKinematicsTool element, missing inputs.
    """
    setup, root = _parse(path)
    tool = root if root.tag == "InverseKinematicsTool" else root.find("InverseKinematicsTool")
    if tool is None:
        raise InputError(f"{setup} has no <InverseKinematicsTool> element; is it an IK setup file?")
    base = setup.parent
    task_set = tool.find("IKTaskSet")
    objects = task_set.find("objects") if task_set is not None else None
    marker_tasks = tuple(_marker_task(n, setup) for n in objects.iter("IKMarkerTask")) if objects is not None else ()
    coord_tasks = tuple(_coordinate_task(n, setup) for n in objects.iter("IKCoordinateTask")) if objects is not None else ()
    coordinate_file = _resolve(_text(tool, "coordinate_file"), base)
    _check_coordinate_file(coord_tasks, coordinate_file, setup)
    return IKSetup(
        name=tool.get("name", setup.stem),
        setup_file=setup,
        model_file=_existing(_text(tool, "model_file"), base, "model_file", setup),
        marker_file=_existing(_text(tool, "marker_file"), base, "marker_file", setup),
        marker_tasks=marker_tasks,
        coordinate_tasks=coord_tasks,
        coordinate_file=coordinate_file,
        time_range=_time_range(tool, setup),
        output_motion_file=_resolve(_text(tool, "output_motion_file"), base),
        results_directory=_resolve(_text(tool, "results_directory"), base),
        accuracy=_float(tool, "accuracy", 1e-5, setup),
        constraint_weight=_float(tool, "constraint_weight", math.inf, setup),
        report_errors=_bool(tool, "report_errors", True),
    )


def read_coordinate_tasks(path: str | os.PathLike[str]) -> tuple[CoordinateTask, ...]:
    """The ``IKCoordinateTask`` s of an IK setup, without checking its model or marker files
    (training NeurIK reads only the task set)."""
    setup, root = _parse(path)
    return tuple(_coordinate_task(n, setup) for n in root.iter("IKCoordinateTask"))
