"""Marker trajectories (.trc) through OpenSim's ``TRCFileAdapter`` / ``TimeSeriesTableVec3``.

Inside the package marker positions are always **metres** in the file's (lab / OpenSim ground)
frame, shaped ``(T, M, 3)``, with NaN where a marker is missing. Files may be in mm, cm or m;
the ``Units`` header entry says which, and :func:`read_trc` converts.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path

# Length units a TRC ``Units`` header may carry, as metres per unit.
UNIT_SCALE: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001}

# Component suffixes OpenSim uses when it flattens / packs Vec3 columns.
_VEC3_SUFFIXES = ("_1", "_2", "_3")


@dataclasses.dataclass(frozen=True, eq=False)
class MarkerData:
    """Marker trajectories of one trial.

    Attributes:
        times: (T,) seconds, increasing.
        names: M marker names, in column order.
        xyz: (T, M, 3) metres, lab/ground frame; NaN where a marker is missing in a frame.
        rate: frames per second (the file's ``DataRate``).
        units_in_file: the length unit the file was written in (``"mm"``, ``"m"``, ...).
    """

    times: np.ndarray
    names: tuple[str, ...]
    xyz: np.ndarray
    rate: float
    units_in_file: str = "m"

    def __post_init__(self) -> None:
        if self.xyz.ndim != 3 or self.xyz.shape[2] != 3:
            raise InputError(f"marker array must be (T, M, 3), got {self.xyz.shape}")
        if self.xyz.shape[0] != self.times.shape[0] or self.xyz.shape[1] != len(self.names):
            raise InputError(
                f"marker array {self.xyz.shape} does not match {self.times.shape[0]} times "
                f"and {len(self.names)} names"
            )

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def missing(self) -> np.ndarray:
        """(T, M) bool: marker absent in that frame (any coordinate NaN)."""
        return np.isnan(self.xyz).any(axis=2)

    def select(self, names: Sequence[str]) -> MarkerData:
        """The given markers, in the given order; every name must exist."""
        index = {n: i for i, n in enumerate(self.names)}
        absent = [n for n in names if n not in index]
        if absent:
            raise InputError(f"markers {absent} are not in the marker data")
        cols = [index[n] for n in names]
        return dataclasses.replace(self, names=tuple(names), xyz=self.xyz[:, cols])

    def time_slice(self, start: float, end: float) -> MarkerData:
        """Frames with ``start <= t <= end`` (inclusive, with a 1e-6 s tolerance as OpenSim's IK)."""
        keep = (self.times >= start - 1e-6) & (self.times <= end + 1e-6)
        if not keep.any():
            raise InputError(
                f"time range [{start}, {end}] s holds no frame of the marker data "
                f"({self.times[0]:.3f}..{self.times[-1]:.3f} s); fix time_range"
            )
        return dataclasses.replace(self, times=self.times[keep], xyz=self.xyz[keep])

    def with_zeros_as_missing(self) -> MarkerData:
        """Markers at exactly (0, 0, 0) become NaN.

        Many capture systems export gaps as zeros; OpenSim's IK would pull the model towards the
        lab origin for them, so they are treated as missing here.
        """
        zero = (self.xyz == 0.0).all(axis=2)
        if not zero.any():
            return self
        xyz = self.xyz.copy()
        xyz[zero] = np.nan
        return dataclasses.replace(self, xyz=xyz)


def _require_file(path: Path, what: str) -> None:
    # OpenSim crashes or throws an opaque exception on a missing file: check first.
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist or is not a file")


# Lines of a TRC header: PathFileType, keys, values, marker names, X1 Y1 Z1 ...
_TRC_HEADER_LINES = 5


def _check_trc_header(path: Path) -> None:
    """Reject files that are not TRC, or hold no frame, before OpenSim's parser sees them.

    OpenSim 4.6's TRCFileAdapter loops forever on a TRC header without data rows.
    """
    with open(path, "rb") as fh:
        first = fh.readline(4096)
        if not first.startswith(b"PathFileType"):
            raise InputError(
                f"marker file {path} is not a .trc file (its first line should start with 'PathFileType')"
            )
        for _ in range(_TRC_HEADER_LINES - 1):
            if not fh.readline():
                raise InputError(f"marker file {path} ends inside its {_TRC_HEADER_LINES}-line TRC header")
        for line in fh:
            fields = line.split()
            if fields:
                if not _is_number(fields[0]):
                    raise InputError(f"marker file {path}: expected a frame row after the header, got {line[:40]!r}")
                return
    raise InputError(f"marker file {path} has a TRC header but no frames")


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_trc(path: str | os.PathLike[str], *, zeros_as_missing: bool = True) -> MarkerData:
    """Read a .trc file into :class:`MarkerData` in metres.

    Args:
        path: the .trc file.
        zeros_as_missing: treat markers at exactly (0, 0, 0) as missing (NaN); see
            :meth:`MarkerData.with_zeros_as_missing`.
    Raises:
        InputError: missing file, not a TRC file, unknown ``Units``, or a file OpenSim cannot parse.
    """
    import opensim as osim

    path = Path(path)
    _require_file(path, "marker file")
    _check_trc_header(path)
    try:
        table = osim.TimeSeriesTableVec3(str(path))
    except RuntimeError as exc:
        raise InputError(f"OpenSim could not read marker file {path}: {_first_line(exc)}") from exc
    data = from_table(table, source=str(path))
    return data.with_zeros_as_missing() if zeros_as_missing else data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _meta(table, key: str) -> str | None:
    return table.getTableMetaDataAsString(key) if table.hasTableMetaDataKey(key) else None


def from_table(table, *, source: str = "marker table") -> MarkerData:
    """Convert an ``opensim.TimeSeriesTableVec3`` (units from its ``Units`` metadata) to metres."""
    units = (_meta(table, "Units") or "m").strip()
    if units not in UNIT_SCALE:
        raise InputError(
            f"{source}: unknown marker units {units!r}; the TRC 'Units' header must be one of "
            f"{sorted(UNIT_SCALE)}"
        )
    names = tuple(str(n) for n in table.getColumnLabels())
    times = np.array(list(table.getIndependentColumn()), dtype=np.float64)
    flat = table.flatten()  # keep the owner alive while numpy views its matrix
    matrix = flat.getMatrix()
    values = np.array(matrix.to_numpy(), dtype=np.float64, copy=True)
    xyz = values.reshape(len(times), len(names), 3) * UNIT_SCALE[units]
    rate_text = _meta(table, "DataRate")
    rate = float(rate_text) if rate_text else _rate_from_times(times)
    return MarkerData(times=times, names=names, xyz=xyz, rate=rate, units_in_file=units)


def _rate_from_times(times: np.ndarray) -> float:
    if times.shape[0] < 2:
        return 0.0
    return float(1.0 / np.median(np.diff(times)))


def to_table(data: MarkerData):
    """An ``opensim.TimeSeriesTableVec3`` in metres (``Units`` = m, ``DataRate`` set)."""
    import opensim as osim

    t, m = data.xyz.shape[:2]
    flat_values = np.ascontiguousarray(data.xyz.reshape(t, m * 3), dtype=np.float64)
    labels = osim.StdVectorString()
    for name in data.names:
        for suffix in _VEC3_SUFFIXES:
            labels.append(name + suffix)
    flat = osim.TimeSeriesTable(
        osim.StdVectorDouble([float(x) for x in data.times]),
        osim.Matrix.createFromMat(flat_values),
        labels,
    )
    table = flat.packVec3()
    rate = f"{data.rate:g}"
    table.addTableMetaDataString("DataRate", rate)
    table.addTableMetaDataString("CameraRate", rate)
    table.addTableMetaDataString("Units", "m")
    return table


def write_trc(path: str | os.PathLike[str], data: MarkerData) -> Path:
    """Write ``data`` as a .trc in metres via ``TRCFileAdapter``, atomically."""
    import opensim as osim

    path = Path(path)
    table = to_table(data)
    with atomic_path(path) as tmp:
        osim.TRCFileAdapter().write(table, str(tmp))
        _rename_in_header(tmp, path.name)
    return path


def _rename_in_header(tmp: Path, final_name: str) -> None:
    """The adapter writes the (temporary) file name into line 1; put the final name there."""
    lines = tmp.read_text().split("\n", 1)
    fields = lines[0].split("\t")
    fields[-1] = final_name
    tmp.write_text("\t".join(fields) + "\n" + (lines[1] if len(lines) > 1 else ""))
