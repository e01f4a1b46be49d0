"""Subject scaling: a generic OpenSim model -> the subject's model, from (virtual) marker trajectories.

Mechanics follow OpenSim's ScaleTool so that the result can be checked against it:

1. **Measurements** (ModelScaler, "measurements" order): each is a list of marker pairs and the
   bodies it scales. Its factor is the mean over pairs of (subject distance / model distance);
   the model distance is taken in the model's default pose, as ScaleTool does. Subject distances
   are the median over frames of per-frame distances (robust on a moving trial; on a static
   trial this equals ScaleTool's distance of frame-averaged markers). Factors are uniform (x, y, z).
2. **Model.scale** through the opensim API (joint offsets, translation functions, markers,
   inertia; optionally a final total mass with the mass distribution preserved).
3. **Marker registration** (MarkerPlacer's role): with the subject's pose per frame on the scaled
   model, each model marker is moved to the median, over frames, of the subject marker expressed
   in its body's frame.

Units: metres, OpenSim ground (Y up). Pure numpy/torch here except :func:`write_scaled_model`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """One ScaleTool measurement: marker pairs whose distance ratio scales ``bodies`` uniformly."""

    name: str
    marker_pairs: tuple[tuple[str, str], ...]
    bodies: tuple[str, ...]


def _mirror(name: str) -> str:
    if name.endswith("_r"):
        return name[:-2] + "_l"
    if name.startswith("R") and name[1:].isupper():
        return "L" + name[1:]
    return name


def _bilateral(name: str, pairs: tuple[tuple[str, str], ...], bodies: tuple[str, ...]) -> tuple[Measurement, ...]:
    right = Measurement(f"{name}_r", pairs, bodies)
    left = Measurement(f"{name}_l", tuple((_mirror(a), _mirror(b)) for a, b in pairs),
                       tuple(_mirror(b) for b in bodies))
    return right, left


# Measurements for the default model (osim_models/biopose_fullbody.osim) and its Plug-in-Gait
# style markers. Lengths, not widths, for the limbs: the virtual markers' depth across a limb
# follows the mesh's soft tissue more than the bone. Pairs across a joint sit on or near its
# axis (KNE-ANK, SHO-ELB) so that the subject's pose barely changes them.
DEFAULT_MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("pelvis", (("RASI", "LASI"), ("RPSI", "LPSI"), ("RASI", "RPSI"), ("LASI", "LPSI")), ("pelvis",)),
    *_bilateral("thigh", (("RGTR", "RKNE"), ("RGTR", "RKNM")), ("femur_r",)),
    *_bilateral("shank", (("RKNE", "RANK"), ("RKNM", "RMED")), ("tibia_r",)),
    *_bilateral("foot", (("RHEE", "RTOE"), ("RHEE", "RMT5"), ("RHEE", "RMT1")), ("talus_r", "calcn_r", "toes_r")),
    Measurement("torso", (("C7", "SACR"), ("RSHO", "LSHO"), ("CLAV", "T10")), ("torso",)),
    Measurement("head", (("RFHD", "RBHD"), ("LFHD", "LBHD"), ("RFHD", "LFHD")), ("head",)),
    *_bilateral("upper_arm", (("RSHO", "RELB"), ("RSHO", "RMEL")), ("humerus_r",)),
    *_bilateral("forearm", (("RELB", "RWRA"), ("RMEL", "RWRB")), ("ulna_r", "radius_r", "hand_r")),
)


@dataclass(frozen=True)
class ScalingConfig:
    """How the subject's model is made."""

    # None: DEFAULT_MEASUREMENTS when the model has their markers, else one measurement per body
    # from every pair of markers on that body (pose-independent distances).
    measurements: tuple[Measurement, ...] | None = None
    # Move the model's markers onto the subject's (MarkerPlacer); off keeps them where scaling put them.
    register_markers: bool = True
    # Frames (evenly spaced) posed to register markers: a median over 30 poses is already stable,
    # and posing every frame of a long video twice would double the refinement time.
    registration_frames: int = 30
    # Keep each body's share of the total mass when a subject mass is given (ScaleTool default).
    preserve_mass_distribution: bool = True
    # Bodies without a measurement get the median factor of the measured ones (a subject that is
    # larger overall is larger everywhere), rather than staying generic.
    fill_unmeasured: bool = True
    # A factor outside this range means the markers are not this body's (wrong names, wrong units).
    plausible_factor: tuple[float, float] = (0.5, 2.0)


@dataclass(frozen=True)
class ScaleFactors:
    """Uniform scale factor per body (``body_names`` order, OpenSim BodySet order) and per measurement."""

    body_names: tuple[str, ...]
    factors: np.ndarray                       # (NB,)
    measured: np.ndarray                      # (NB,) bool: from a measurement (else filled)
    per_measurement: dict[str, float] = field(default_factory=dict)

    def as_body_scales(self) -> np.ndarray:
        """(NB, 3) factors for ``Skeleton.forward(scales=...)``."""
        return np.repeat(self.factors[:, None], 3, axis=1)

    @property
    def overall(self) -> float:
        """Median factor of the measured bodies: the subject's size relative to the model."""
        return float(np.median(self.factors[self.measured])) if self.measured.any() else 1.0


def automatic_measurements(sk) -> tuple[Measurement, ...]:
    """One measurement per body from all pairs of markers attached to that body."""
    out = []
    body_index = sk.marker_body_index.cpu().numpy()
    for b, body in enumerate(sk.body_names):
        names = [sk.marker_names[i] for i in np.flatnonzero(body_index == b)]
        pairs = tuple((names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names)))
        if pairs:
            out.append(Measurement(body, pairs, (body,)))
    return tuple(out)


def choose_measurements(sk, available: Sequence[str], config: ScalingConfig) -> tuple[Measurement, ...]:
    """The measurements to use, keeping only pairs whose markers the model and the subject both have."""
    candidates = config.measurements
    if candidates is None:
        needed = {m for meas in DEFAULT_MEASUREMENTS for pair in meas.marker_pairs for m in pair}
        has_bodies = all(b in sk.body_names for meas in DEFAULT_MEASUREMENTS for b in meas.bodies)
        candidates = DEFAULT_MEASUREMENTS if needed <= set(sk.marker_names) and has_bodies else automatic_measurements(sk)
    usable = set(available) & set(sk.marker_names)
    out = []
    for meas in candidates:
        pairs = tuple(p for p in meas.marker_pairs if p[0] in usable and p[1] in usable)
        bodies = tuple(b for b in meas.bodies if b in sk.body_names)
        if pairs and bodies:
            out.append(Measurement(meas.name, pairs, bodies))
    if not out:
        raise InputError(
            f"cannot scale model {sk.model_path}: no marker pair of it is among the subject's markers "
            f"({', '.join(list(available)[:8])}...); match marker names (--marker-map) or use the default model")
    return tuple(out)


def pair_distances(names: Sequence[str], xyz: np.ndarray, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """(P,) median over frames of the distance of each pair; ``xyz`` (T, M, 3) metres, NaN = missing."""
    index = {n: i for i, n in enumerate(names)}
    d = np.stack([np.linalg.norm(xyz[:, index[a]] - xyz[:, index[b]], axis=-1) for a, b in pairs], axis=1)
    return np.nanmedian(d, axis=0)


def model_marker_positions(sk) -> np.ndarray:
    """(M, 3) model markers in ground at the default pose (ScaleTool measures the model there)."""
    with torch.no_grad():
        q = sk.coordinate_defaults.detach().to(sk.dtype)[None]
        return sk.forward(q).markers[0].double().cpu().numpy()


def measure_scale_factors(sk, names: Sequence[str], xyz: np.ndarray,
                          config: ScalingConfig = ScalingConfig()) -> ScaleFactors:
    """Per-body uniform factors from subject markers ``xyz`` (T, M, 3) m named ``names``."""
    measurements = choose_measurements(sk, names, config)
    model_xyz = model_marker_positions(sk)[None]
    factors = np.ones(len(sk.body_names))
    measured = np.zeros(len(sk.body_names), dtype=bool)
    per: dict[str, float] = {}
    lo, hi = config.plausible_factor
    for meas in measurements:
        subject = pair_distances(names, xyz, meas.marker_pairs)
        model = pair_distances(sk.marker_names, model_xyz, meas.marker_pairs)
        ok = np.isfinite(subject) & (model > 1e-6)
        if not ok.any():
            continue
        factor = float(np.mean(subject[ok] / model[ok]))
        if not lo <= factor <= hi:
            raise InputError(
                f"measurement {meas.name!r} gives scale factor {factor:.3g} (plausible {lo}-{hi}): the subject "
                "markers do not match the model's (names mapped to other landmarks, or not in metres)")
        per[meas.name] = factor
        for body in meas.bodies:
            b = sk.body_names.index(body)
            factors[b], measured[b] = factor, True
    if config.fill_unmeasured and measured.any():
        factors[~measured] = np.median(factors[measured])
    return ScaleFactors(tuple(sk.body_names), factors, measured, per)


def register_markers(sk_scaled, q: np.ndarray, names: Sequence[str], xyz: np.ndarray) -> dict[str, np.ndarray]:
    """New marker locations (metres, in their bodies' frames) on the scaled model.

    ``q`` (T, n) the subject's pose on ``sk_scaled`` (rad / m); ``xyz`` (T, M, 3) subject markers
    in ground named ``names``. Each model marker the subject has goes to the median over frames of
    the subject marker seen from its body. Markers on ground are left alone.
    """
    index = {n: i for i, n in enumerate(names)}
    with torch.no_grad():
        bodies = sk_scaled.forward(torch.as_tensor(q, dtype=sk_scaled.dtype)).body_transforms.double().cpu().numpy()
    body_index = sk_scaled.marker_body_index.cpu().numpy()
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(sk_scaled.marker_names):
        b = int(body_index[k])
        if name not in index or b < 0:
            continue
        p = xyz[:, index[name]]                                             # (T, 3) ground
        rot, origin = bodies[:, b, :3, :3], bodies[:, b, :3, 3]
        local = np.einsum("tji,tj->ti", rot, p - origin)                    # R^T (p - o)
        if np.isfinite(local).all(axis=1).any():
            out[name] = np.nanmedian(local, axis=0)
    return out


def write_scaled_model(generic: str | os.PathLike[str], out: str | os.PathLike[str], factors: ScaleFactors, *,
                       mass_kg: float | None = None, markers: dict[str, np.ndarray] | None = None,
                       name: str | None = None, preserve_mass_distribution: bool = True) -> Path:
    """Scale the generic .osim with OpenSim's ``Model.scale`` and write it atomically.

    ``markers``: new marker locations in their bodies (metres) from :func:`register_markers`.
    """
    import opensim as osim

    model = osim.Model(str(generic))
    if name:
        model.setName(name)
    state = model.initSystem()
    scale_set = osim.ScaleSet()
    for body, f in zip(factors.body_names, factors.factors):
        s = osim.Scale()
        s.setSegmentName(body)
        s.setScaleFactors(osim.Vec3(float(f), float(f), float(f)))
        s.setApply(True)
        scale_set.cloneAndAppend(s)
    if not model.scale(state, scale_set, bool(preserve_mass_distribution and mass_kg), float(mass_kg or -1.0)):
        raise InputError(f"OpenSim could not scale model {generic}")
    marker_set = model.updMarkerSet()
    for marker_name, loc in (markers or {}).items():
        if marker_set.contains(marker_name):
            marker_set.get(marker_name).set_location(osim.Vec3(*(float(v) for v in loc)))
    model.finalizeConnections()
    with atomic_path(out) as tmp:
        model.printToXML(str(tmp))
    return Path(out)


__all__ = ["DEFAULT_MEASUREMENTS", "Measurement", "ScaleFactors", "ScalingConfig", "automatic_measurements",
           "choose_measurements", "measure_scale_factors", "model_marker_positions", "pair_distances",
           "register_markers", "write_scaled_model"]
