"""Coordinate motions (.mot / .sto) as OpenSim's InverseKinematicsTool reads and writes them.

Inside the package coordinate values are in OpenSim **internal units**: radians for rotational
coordinates, metres for translational ones, shaped ``(T, n)``. Files written here are in the
exact layout InverseKinematicsTool writes (header ``Coordinates``, ``inDegrees=yes``, one
``%16.8f`` column per coordinate, tab separated), so every OpenSim tool and ``Storage`` reads them.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, Union

import numpy as np

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import write_text_atomic

# The free-text lines OpenSim's Storage puts between ``inDegrees`` and ``endheader``.
_UNITS_NOTE = (
    "Units are S.I. units (second, meters, Newtons, ...)\n"
    "If the header above contains a line with 'inDegrees', this indicates whether rotational "
    "values are in degrees (yes) or radians (no).\n"
)
# Storage's default number format: fixed point, 8 decimals, width 16.
_NUMBER_FORMAT = "{:16.8f}"


class HasCoordinates(Protocol):
    """Anything that names its coordinates and says which rotate (e.g. a ``Skeleton``)."""

    coordinate_names: Sequence[str]
    coordinate_is_rotational: Sequence[bool]


RotationalSpec = Union[Mapping[str, bool], HasCoordinates]


@dataclasses.dataclass(frozen=True, eq=False)
class CoordinateData:
    """Coordinate trajectories of one trial.

    Attributes:
        times: (T,) seconds.
        names: n coordinate names, in column order.
        values: (T, n) internal units (rad for rotational, m for translational coordinates).
    """

    times: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """(T,) values of one coordinate."""
        if name not in self.names:
            raise InputError(f"coordinate {name!r} is not in the motion ({len(self.names)} columns)")
        return self.values[:, self.names.index(name)]

    def select(self, names: Sequence[str]) -> CoordinateData:
        """The given coordinates, in that order."""
        cols = [self.names.index(n) for n in names]
        return dataclasses.replace(self, names=tuple(names), values=self.values[:, cols])


def rotational_map(spec: RotationalSpec) -> dict[str, bool]:
    """``{coordinate name: is rotational}`` from a mapping or a Skeleton-like object."""
    if isinstance(spec, Mapping):
        return {str(k): bool(v) for k, v in spec.items()}
    return {str(n): bool(r) for n, r in zip(spec.coordinate_names, spec.coordinate_is_rotational)}


def read_mot(path: str | os.PathLike[str], rotational: RotationalSpec | None = None) -> CoordinateData:
    """Read a .mot/.sto coordinate file into internal units.

    Args:
        path: the file.
        rotational: which columns are rotational (a ``{name: bool}`` mapping or a Skeleton).
            Needed only when the file says ``inDegrees=yes``; every column must be listed then.
    Raises:
        InputError: missing/unreadable file, or degrees without knowing which columns rotate.
    """
    import opensim as osim

    path = Path(path)
    if not path.is_file():
        raise InputError(f"motion file {path} does not exist or is not a file")
    _check_storage_header(path)
    try:
        table = osim.TimeSeriesTable(str(path))
    except RuntimeError as exc:
        raise InputError(f"OpenSim could not read motion file {path}: {str(exc).strip()[:200]}") from exc
    names = tuple(str(n) for n in table.getColumnLabels())
    times = np.array(list(table.getIndependentColumn()), dtype=np.float64)
    matrix = table.getMatrix()  # `table` stays alive while numpy views its matrix
    values = np.array(matrix.to_numpy(), dtype=np.float64, copy=True).reshape(len(times), len(names))
    in_degrees = table.hasTableMetaDataKey("inDegrees") and (
        table.getTableMetaDataAsString("inDegrees").strip().lower() == "yes"
    )
    if in_degrees:
        values = _degrees_to_radians(values, names, rotational, path)
    return CoordinateData(times=times, names=names, values=values)


def _check_storage_header(path: Path) -> None:
    """Require ``endheader`` followed by a column-label line.

    OpenSim 4.6's STOFileAdapter loops forever on a file without ``endheader``.
    """
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip() == b"endheader":
                break
        else:
            raise InputError(f"motion file {path} has no 'endheader' line; it is not a .mot/.sto file")
        for line in fh:
            if line.strip():
                return
    raise InputError(f"motion file {path} has no column labels after 'endheader'")


def _degrees_to_radians(
    values: np.ndarray, names: Sequence[str], rotational: RotationalSpec | None, path: Path
) -> np.ndarray:
    if rotational is None:
        raise InputError(
            f"{path} is in degrees: pass the model (or a rotational mask) to tell rotational from "
            "translational columns"
        )
    mask_by_name = rotational_map(rotational)
    unknown = [n for n in names if n not in mask_by_name]
    if unknown:
        raise InputError(f"{path}: columns {unknown} are not coordinates of the given model")
    mask = np.array([mask_by_name[n] for n in names], dtype=bool)
    out = values.copy()
    out[:, mask] = np.deg2rad(out[:, mask])
    return out


def format_storage(
    title: str, times: np.ndarray, names: Sequence[str], values: np.ndarray, *, in_degrees: bool,
    units_note: bool,
) -> str:
    """Text of an OpenSim ``Storage`` file (.mot/.sto, version 1) in Storage's own layout."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (times.shape[0], len(names)):
        raise InputError(f"values {values.shape} do not match {times.shape[0]} times x {len(names)} names")
    header = [
        title,
        "version=1",
        f"nRows={times.shape[0]}",
        f"nColumns={len(names) + 1}",
        f"inDegrees={'yes' if in_degrees else 'no'}",
    ]
    if units_note:
        header += ["", _UNITS_NOTE]
    header += ["endheader", "\t".join(["time", *names])]
    rows = np.concatenate([times[:, None], values], axis=1)
    body = ["\t".join(_NUMBER_FORMAT.format(v) for v in row) for row in rows]
    return "\n".join(header + body) + "\n"


def write_mot(
    path: str | os.PathLike[str],
    names: Sequence[str],
    times: np.ndarray,
    q: np.ndarray,
    rotational_mask: Sequence[bool] | np.ndarray,
) -> Path:
    """Write coordinates like InverseKinematicsTool does (degrees for rotations), atomically.

    Args:
        names: n coordinate names (the model's CoordinateSet order, as OpenSim writes).
        times: (T,) seconds.
        q: (T, n) internal units (rad / m).
        rotational_mask: (n,) True where the coordinate is rotational (converted to degrees).
    """
    q = np.asarray(q, dtype=np.float64)
    mask = np.asarray(rotational_mask, dtype=bool)
    if mask.shape != (len(names),):
        raise InputError(f"rotational mask has shape {mask.shape}, expected ({len(names)},)")
    out = q.copy()
    out[:, mask] = np.rad2deg(out[:, mask])
    text = format_storage("Coordinates", times, names, out, in_degrees=True, units_note=True)
    return write_text_atomic(path, text)


MARKER_ERROR_COLUMNS = ("total_squared_error", "marker_error_RMS", "marker_error_max")


def write_marker_errors_sto(
    path: str | os.PathLike[str],
    times: np.ndarray,
    total_sq: np.ndarray,
    rms: np.ndarray,
    max_error: np.ndarray,
) -> Path:
    """Write a marker-error report laid out like OpenSim's ``<name>_ik_marker_errors.sto``.

    Args:
        times: (T,) seconds.
        total_sq: (T,) sum over markers of squared distance, m^2 (unweighted, as OpenSim reports).
        rms: (T,) root mean square marker distance, m.
        max_error: (T,) largest marker distance, m.
    """
    values = np.stack([np.asarray(a, dtype=np.float64) for a in (total_sq, rms, max_error)], axis=1)
    text = format_storage(
        "Model Marker Errors from IK", times, MARKER_ERROR_COLUMNS, values, in_degrees=False,
        units_note=False,
    )
    return write_text_atomic(path, text)


def to_table(data: CoordinateData, rotational_mask: Sequence[bool] | None = None):
    """An ``opensim.TimeSeriesTable``; with a mask, rotational columns in degrees (``inDegrees=yes``)."""
    import opensim as osim

    values = np.array(data.values, dtype=np.float64, copy=True)
    in_degrees = rotational_mask is not None
    if in_degrees:
        mask = np.asarray(rotational_mask, dtype=bool)
        values[:, mask] = np.rad2deg(values[:, mask])
    labels = osim.StdVectorString()
    for name in data.names:
        labels.append(name)
    table = osim.TimeSeriesTable(
        osim.StdVectorDouble([float(t) for t in data.times]),
        osim.Matrix.createFromMat(np.ascontiguousarray(values)),
        labels,
    )
    table.addTableMetaDataString("inDegrees", "yes" if in_degrees else "no")
    return table


def angle_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in degrees for radians inputs, wrapped to [0, 180]."""
    d = np.abs(np.asarray(a) - np.asarray(b)) % (2 * math.pi)
    return np.rad2deg(np.minimum(d, 2 * math.pi - d))


# The 12 rotational degrees of freedom OpenCap reports accuracy on (Uhlrich et al. 2023,
# PLoS Comput Biol, "OpenCap"): bilateral ones are averaged over the _r and _l sides.
OPENCAP_DOFS: tuple[str, ...] = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation",
    "hip_flexion", "hip_adduction", "hip_rotation",
    "knee_angle", "ankle_angle", "subtalar_angle",
    "lumbar_extension", "lumbar_bending", "lumbar_rotation",
)


@dataclasses.dataclass(frozen=True)
class DofComparison:
    """Mean absolute difference per DoF in degrees (L/R averaged); absent DoFs are left out."""

    per_dof_deg: dict[str, float]

    @property
    def mean_deg(self) -> float:
        return float(np.mean(list(self.per_dof_deg.values()))) if self.per_dof_deg else math.nan


def compare_dofs(
    ours: CoordinateData, reference: CoordinateData, dofs: Sequence[str] = OPENCAP_DOFS
) -> DofComparison:
    """Per-DoF mean |ours - reference| in degrees over our frames.

    Both hold radians (internal units); each of our frames is matched to the reference frame at
    the same time (within 1 ms). A DoF named ``x`` is the coordinate ``x`` or the pair ``x_r``/``x_l``.
    """
    rows = _matching_rows(reference.times, ours.times)
    per_dof: dict[str, float] = {}
    for dof in dofs:
        names = [dof] if dof in reference.names else [f"{dof}_{s}" for s in ("r", "l")]
        names = [n for n in names if n in reference.names and n in ours.names]
        if not names:
            continue
        diffs = [angle_difference_deg(ours.column(n), reference.column(n)[rows]).mean() for n in names]
        per_dof[dof] = float(np.mean(diffs))
    return DofComparison(per_dof)


def _matching_rows(times: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    rows = np.clip(np.searchsorted(times, wanted - 1e-3), 0, len(times) - 1)
    if np.abs(times[rows] - wanted).max() > 1e-3:
        raise InputError("the two motions do not share frame times (within 1 ms)")
    return rows
