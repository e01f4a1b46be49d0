"""Build the default BioPose full-body OpenSim model from published anthropometry.

Regenerate the shipped files (model for a 1.75 m, 75 kg subject + IK setup) with::

    python -m osim_models.build_default_model            # from the repository root
    python osim_models/build_default_model.py --height 1.80 --mass 80 --out subject.osim

The model is authored here through the ``opensim`` Python API (no model file is copied);
dimensions come from :mod:`osim_models.anthropometry` (Winter 2009 stature fractions,
Harrington 2007 hip centre, de Leva 1996 inertia), coordinate ranges from the AAOS table
(see :data:`RANGES_DEG`).

Frames. Ground is OpenSim's: +Y up, +X anterior, +Z to the subject's right. Every body frame is
parallel to ground in the default pose (standing, palms forward), with its origin at the
proximal joint centre: pelvis at mid-ASIS, femur at the hip centre, tibia at the knee centre,
talus at the ankle centre, calcn at the subtalar centre, toes at the MTP centre, torso at L5/S1,
head at C7/T1, humerus at the glenohumeral centre, ulna and radius at the elbow centre, hand at
the wrist centre. Default pose: all coordinates 0 except pelvis_ty (mid-ASIS height).

Joints. Every moving joint is a CustomJoint with LinearFunction(1, 0) rotations about the axes
below (rotations applied in the listed order, each about the axis carried by the previous
rotations, as in Rajagopal2016); the neck is a WeldJoint (head rigid with the torso, as the head
is part of the torso in Rajagopal2016 / LaiUhlrich2022). No constraints.

Coordinate names and signs are those of Rajagopal2016 / LaiUhlrich2022 (checked against both
with OpenSim's own forward kinematics), so .mot files compare column by column:

=====================  ===============================  ===========================================
coordinate             axis (right side, parent frame)  positive means
=====================  ===============================  ===========================================
pelvis_tilt            +Z                               posterior tilt (PSIS down, ASIS up)
pelvis_list            +X                               right side down
pelvis_rotation        +Y                               pelvis turns to the left
pelvis_tx/ty/tz        X/Y/Z                            mid-ASIS position in ground (m)
hip_flexion_r          +Z                               flexion (knee forward)
hip_adduction_r        +X                               adduction (knee towards the midline)
hip_rotation_r         +Y                               internal rotation
knee_angle_r           -Z                               flexion (ankle backwards), as Rajagopal2016
ankle_angle_r          ~+Z (Inman oblique axis)         dorsiflexion
subtalar_angle_r       Inman subtalar axis              inversion (+ adduction)
mtp_angle_r            -Z                               toe flexion (toes down), as Rajagopal2016
lumbar_extension       +Z                               extension (trunk backwards)
lumbar_bending         +X                               bending to the right
lumbar_rotation        +Y                               trunk turns to the left
arm_flex_r             +Z                               flexion (arm forward)
arm_add_r              +X                               adduction (abduction is negative)
arm_rot_r              +Y                               internal rotation
elbow_flex_r           +Z                               flexion
pro_sup_r              forearm long axis (~+Y)          pronation; 0 = palm forward (supinated)
wrist_flex_r           +Z                               flexion (towards the palm)
wrist_dev_r            +X                               ulnar deviation
=====================  ===============================  ===========================================

Left-side joints mirror the right: a right axis (x, y, z) becomes (-x, -y, z) on the left, so a
coordinate means the same anatomical motion on both sides (what Rajagopal2016 does with its -1
coefficients / negated axes).

The knee is a hinge about a fixed mediolateral axis through the femoral epicondyle mid-point,
with the tibia translating in the femur frame as a SimmSpline of knee_angle: the gait2392 knee
curves (Delp et al. 1990, after Yamaguchi & Zajac 1989; up to ~8 mm anterior and ~27 mm distal
at 120 deg), zeroed at 0 deg and scaled to this femur's length (:data:`KNEE_TRANSLATION`).

Honest simplifications: the knee has no coupled ab/adduction or axial rotation (Rajagopal2016's
Walker knee has a few degrees of each); the shoulder is a single ball joint on the torso (no scapula/clavicle motion; its Z-X-Y Euler
sequence is gimbal-locked at +/-90 deg arm_add, as in Rajagopal2016); the pronation axis runs
through the elbow and wrist centres; the neck is rigid.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``osim_models`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from osim_models.anthropometry import (  # noqa: E402
    ANKLE_AXIS_FRONTAL_DEG,
    ANKLE_AXIS_TRANSVERSE_DEG,
    DE_LEVA_MALE,
    LOWER_TRUNK_SHARE,
    SUBTALAR_ELEVATION_DEG,
    SUBTALAR_MEDIAL_DEG,
    BodyInertia,
    StandingLandmarks,
    Vec3,
    mirror,
    segment_inertia,
    standing_landmarks,
)
from opensim_biopose.errors import InputError  # noqa: E402
from opensim_biopose.io.atomic import atomic_path  # noqa: E402

MODEL_NAME = "biopose_fullbody"
HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = HERE / f"{MODEL_NAME}.osim"
DEFAULT_IK_SETUP_PATH = HERE / f"{MODEL_NAME}_ik_setup.xml"

#: Reference subject of the shipped model: a 50th-percentile-ish adult; NeurIK scales from it.
DEFAULT_HEIGHT_M = 1.75
DEFAULT_MASS_KG = 75.0
#: Accepted subject size. Stature fractions are adult averages: below ~1.2 m (a child) the
#: proportions differ too much; the bounds also catch centimetres/pounds typed by mistake.
HEIGHT_RANGE_M = (1.2, 2.3)
MASS_RANGE_KG = (25.0, 250.0)
GRAVITY = (0.0, -9.80665, 0.0)

SIDES = ("r", "l")

# ----------------------------------------------------------------------------- coordinates
#: Clamped coordinate ranges (degrees; metres for translations). Joint motions from the AAOS
#: table (American Academy of Orthopaedic Surgeons 1965, *Joint Motion: Method of Measuring and
#: Recording*; reprinted in Greene & Heckman 1994): hip flexion 120 / extension 30, abduction 45 /
#: adduction 30, internal / external rotation 45; knee flexion 135 (+10 hyperextension); ankle
#: plantarflexion 50 / dorsiflexion 20 (widened to 30: loaded lunges and squats exceed the passive
#: value); inversion 35 / eversion 15; MTP flexion 45 / extension 70; thoracolumbar flexion 80 /
#: extension 25, lateral bending 35, rotation 45; shoulder flexion 180 / extension 60, abduction
#: 180, adduction 30 (across the body), internal 70 / external 90 rotation; elbow flexion 150;
#: pronation 80 / supination 80 about neutral (0 here is the palm-forward anatomical pose, taken
#: as full supination and rounded to 90 from neutral, so pronation runs 0..170); wrist flexion 80
#: / extension 70, ulnar 30 / radial 20 deviation. Pelvis: free in the room, generous limits.
RANGES_DEG: dict[str, tuple[float, float]] = {
    "pelvis_tilt": (-90.0, 90.0),
    "pelvis_list": (-90.0, 90.0),
    "pelvis_rotation": (-180.0, 180.0),
    "hip_flexion": (-30.0, 120.0),
    "hip_adduction": (-45.0, 30.0),
    "hip_rotation": (-45.0, 45.0),
    "knee_angle": (-10.0, 135.0),
    "ankle_angle": (-50.0, 30.0),
    "subtalar_angle": (-15.0, 35.0),
    "mtp_angle": (-70.0, 45.0),
    "lumbar_extension": (-80.0, 25.0),
    "lumbar_bending": (-35.0, 35.0),
    "lumbar_rotation": (-45.0, 45.0),
    "arm_flex": (-60.0, 180.0),
    "arm_add": (-180.0, 30.0),
    "arm_rot": (-90.0, 70.0),
    "elbow_flex": (0.0, 150.0),
    "pro_sup": (0.0, 170.0),
    "wrist_flex": (-70.0, 80.0),
    "wrist_dev": (-20.0, 30.0),
}
#: Pelvis translation limits, metres: a capture volume of +/-10 m, ty from lying to jumping.
PELVIS_TRANSLATION_RANGE_M = {"pelvis_tx": (-10.0, 10.0), "pelvis_ty": (-1.0, 3.0), "pelvis_tz": (-10.0, 10.0)}


@dataclass(frozen=True)
class Dof:
    """One rotational degree of freedom: base coordinate name (no side suffix) and its right-side axis."""

    coordinate: str
    axis: Vec3


@dataclass(frozen=True)
class CoupledTranslation:
    """Child-origin translation along a parent-frame axis as a spline of the joint's first coordinate.

    ``knots`` in the coordinate's units (rad), ascending; ``values`` in metres, 0 at the default pose.
    """

    axis: int  # 0 = X, 1 = Y, 2 = Z of the parent frame
    knots: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class JointSpec:
    """A CustomJoint (or a WeldJoint when ``dofs`` is empty) between two bodies.

    Names of sided joints/bodies carry ``{s}``, filled with ``r``/``l``.
    """

    name: str
    parent: str
    child: str
    dofs: tuple[Dof, ...]
    coupled: tuple[CoupledTranslation, ...] = ()

    @property
    def sided(self) -> bool:
        return "{s}" in self.child


def _unit(v: Vec3) -> Vec3:
    a = np.asarray(v, dtype=float)
    a = a / np.linalg.norm(a)
    return (float(a[0]), float(a[1]), float(a[2]))


def _ankle_axis() -> Vec3:
    """Right talocrural axis (Inman 1976): medial->lateral, tilted down and back laterally."""
    return _unit((-math.tan(math.radians(ANKLE_AXIS_TRANSVERSE_DEG)),
                  -math.tan(math.radians(ANKLE_AXIS_FRONTAL_DEG)), 1.0))


def _subtalar_axis() -> Vec3:
    """Right subtalar axis (Inman 1976): posterior-lateral-inferior -> anterior-medial-superior."""
    el, md = math.radians(SUBTALAR_ELEVATION_DEG), math.radians(SUBTALAR_MEDIAL_DEG)
    return _unit((math.cos(el) * math.cos(md), math.sin(el), -math.cos(el) * math.sin(md)))


X, Y, Z, NEG_Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, -1.0)

#: Tibia origin in the femur frame vs knee angle in gait2392's knee_r (Delp et al. 1990, IEEE TBME
#: 37:757, after Yamaguchi & Zajac 1989, J Biomech 22:1): (knee angle rad with flexion NEGATIVE,
#: metres) knots of its X (anterior) and Y (up) SimmSplines, for its femur of 0.396 m. Figures only;
#: :func:`knee_translations` flips the angle to this model's positive flexion, zeroes and scales them.
GAIT2392_KNEE_TX = ((-2.0944, -0.0032), (-1.7453, 0.00179), (-1.3963, 0.00411), (-1.0472, 0.0041),
                    (-0.6981, 0.00212), (-0.3491, -0.001), (-0.1745, -0.0031), (0.1973, -0.00523),
                    (0.3374, -0.00543), (0.4902, -0.00557), (1.5215, -0.00543), (2.0944, -0.00525))
GAIT2392_KNEE_TY = ((-2.0944, -0.4226), (-1.2217, -0.4082), (-0.5236, -0.399), (-0.3491, -0.3976),
                    (-0.1745, -0.3966), (0.1591, -0.39526), (2.0944, -0.396))
GAIT2392_FEMUR_LENGTH_M = 0.396


def _spline(points: Iterable[tuple[float, float]]):  # -> osim.SimmSpline
    """An OpenSim natural cubic SimmSpline through (x, y) knots, x ascending."""
    import opensim as osim

    spline = osim.SimmSpline()
    for x, y in points:
        spline.addPoint(float(x), float(y))
    return spline


def knee_translations(femur_length_m: float) -> tuple[CoupledTranslation, ...]:
    """The gait2392 tibial translations for a femur of ``femur_length_m``, flexion positive, 0 at 0 deg."""
    import opensim as osim

    out = []
    for axis, points in ((0, GAIT2392_KNEE_TX), (1, GAIT2392_KNEE_TY)):
        at_zero = _spline(points).calcValue(osim.Vector(1, 0.0))
        scale = femur_length_m / GAIT2392_FEMUR_LENGTH_M
        flipped = sorted((-x, scale * (y - at_zero)) for x, y in points)
        out.append(CoupledTranslation(axis, tuple(p[0] for p in flipped), tuple(p[1] for p in flipped)))
    return tuple(out)


def joint_specs(lm: StandingLandmarks) -> tuple[JointSpec, ...]:
    """The kinematic tree, root first. The pronation axis depends on the arm pose, hence ``lm``."""
    forearm_up = _unit(tuple(np.subtract(lm.elbow, lm.wrist)))  # type: ignore[arg-type]
    return (
        JointSpec("hip_{s}", "pelvis", "femur_{s}", (Dof("hip_flexion", Z), Dof("hip_adduction", X), Dof("hip_rotation", Y))),
        JointSpec("knee_{s}", "femur_{s}", "tibia_{s}", (Dof("knee_angle", NEG_Z),),
                  knee_translations(lm.hip[1] - lm.knee[1])),
        JointSpec("ankle_{s}", "tibia_{s}", "talus_{s}", (Dof("ankle_angle", _ankle_axis()),)),
        JointSpec("subtalar_{s}", "talus_{s}", "calcn_{s}", (Dof("subtalar_angle", _subtalar_axis()),)),
        JointSpec("mtp_{s}", "calcn_{s}", "toes_{s}", (Dof("mtp_angle", NEG_Z),)),
        JointSpec("back", "pelvis", "torso", (Dof("lumbar_extension", Z), Dof("lumbar_bending", X), Dof("lumbar_rotation", Y))),
        JointSpec("neck", "torso", "head", ()),
        JointSpec("acromial_{s}", "torso", "humerus_{s}", (Dof("arm_flex", Z), Dof("arm_add", X), Dof("arm_rot", Y))),
        JointSpec("elbow_{s}", "humerus_{s}", "ulna_{s}", (Dof("elbow_flex", Z),)),
        JointSpec("radioulnar_{s}", "ulna_{s}", "radius_{s}", (Dof("pro_sup", forearm_up),)),
        JointSpec("radius_hand_{s}", "radius_{s}", "hand_{s}", (Dof("wrist_flex", Z), Dof("wrist_dev", X))),
    )


# ----------------------------------------------------------------------------- bodies
@dataclass(frozen=True)
class BodySpec:
    """A body: origin in ground (default pose), inertia, and an ellipsoid for display."""

    name: str
    origin: Vec3
    inertia: BodyInertia
    shape_centre: Vec3   # ground point
    shape_radii: Vec3    # metres along X, Y, Z


def _mid(a: Vec3, b: Vec3) -> Vec3:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2)


def _half_span(a: Vec3, b: Vec3) -> float:
    return 0.5 * float(np.linalg.norm(np.subtract(a, b)))


def right_body_specs(lm: StandingLandmarks, mass_kg: float) -> tuple[BodySpec, ...]:
    """Bodies of the midline and the right side, default pose, ground coordinates."""
    H, dl = lm.height_m, DE_LEVA_MALE
    mid_hip = (lm.hip[0], lm.hip[1], 0.0)
    c7 = lm.markers["C7"]
    vertex = (lm.head_centre[0], H, 0.0)
    heel = (lm.markers["RHEE"][0], 0.0, lm.ankle[2])
    toe_tip = (lm.markers["RTOE"][0], 0.0, lm.ankle[2])
    # de Leva's hand ends at the 3rd metacarpal head: 86.2 mm of 1741 mm stature (0.0495 H).
    met3 = (lm.wrist[0], lm.wrist[1] - 0.0495 * H, lm.wrist[2])
    fingertip = (lm.wrist[0], lm.wrist[1] - 0.108 * H, lm.wrist[2])

    def foot(share: float, origin: Vec3) -> BodyInertia:
        return segment_inertia(dl["foot"], mass_kg, heel, toe_tip, origin, share)

    def forearm(origin: Vec3) -> BodyInertia:
        return segment_inertia(dl["forearm"], mass_kg, lm.elbow, lm.wrist, origin, 0.5)

    foot_mid_y = 0.5 * lm.ankle[1]
    return (
        BodySpec("pelvis", lm.pelvis_origin,
                 segment_inertia(dl["trunk"], mass_kg, lm.lumbar, mid_hip, lm.pelvis_origin, LOWER_TRUNK_SHARE),
                 _mid(lm.pelvis_origin, (lm.markers["SACR"][0], lm.hip[1], 0.0)),
                 (0.5 * lm.pelvis_depth + 0.01 * H, 0.06 * H, 0.5 * lm.pelvis_width + 0.01 * H)),
        BodySpec("torso", lm.lumbar,
                 segment_inertia(dl["trunk"], mass_kg, c7, lm.lumbar, lm.lumbar, 1.0 - LOWER_TRUNK_SHARE),
                 _mid(lm.lumbar, (lm.lumbar[0], lm.shoulder[1], 0.0)),
                 (0.065 * H, _half_span(lm.lumbar, (lm.lumbar[0], lm.shoulder[1] + 0.02 * H, 0.0)), 0.09 * H)),
        BodySpec("head", lm.neck,
                 segment_inertia(dl["head"], mass_kg, vertex, c7, lm.neck),
                 lm.head_centre, (0.055 * H, 0.065 * H, 0.045 * H)),
        BodySpec("femur_r", lm.hip, segment_inertia(dl["thigh"], mass_kg, lm.hip, lm.knee, lm.hip),
                 _mid(lm.hip, lm.knee), (0.035 * H, _half_span(lm.hip, lm.knee), 0.035 * H)),
        BodySpec("tibia_r", lm.knee, segment_inertia(dl["shank"], mass_kg, lm.knee, lm.ankle, lm.knee),
                 _mid(lm.knee, lm.ankle), (0.027 * H, _half_span(lm.knee, lm.ankle), 0.027 * H)),
        BodySpec("talus_r", lm.ankle, foot(0.1, lm.ankle), lm.ankle, (0.012 * H, 0.012 * H, 0.014 * H)),
        BodySpec("calcn_r", lm.subtalar, foot(0.7, lm.subtalar),
                 (0.5 * (heel[0] + lm.mtp[0]), foot_mid_y, lm.ankle[2]),
                 (0.5 * (lm.mtp[0] - heel[0]), foot_mid_y, 0.026 * H)),
        BodySpec("toes_r", lm.mtp, foot(0.2, lm.mtp),
                 (0.5 * (lm.mtp[0] + toe_tip[0]), lm.mtp[1], lm.ankle[2]),
                 (0.5 * (toe_tip[0] - lm.mtp[0]), 0.008 * H, 0.026 * H)),
        BodySpec("humerus_r", lm.shoulder, segment_inertia(dl["upper_arm"], mass_kg, lm.shoulder, lm.elbow, lm.shoulder),
                 _mid(lm.shoulder, lm.elbow), (0.022 * H, _half_span(lm.shoulder, lm.elbow), 0.022 * H)),
        BodySpec("ulna_r", lm.elbow, forearm(lm.elbow),
                 _mid(lm.elbow, lm.wrist), (0.012 * H, _half_span(lm.elbow, lm.wrist), 0.012 * H)),
        BodySpec("radius_r", lm.elbow, forearm(lm.elbow),
                 _mid(lm.elbow, lm.wrist), (0.014 * H, _half_span(lm.elbow, lm.wrist), 0.014 * H)),
        BodySpec("hand_r", lm.wrist, segment_inertia(dl["hand"], mass_kg, lm.wrist, met3, lm.wrist),
                 _mid(lm.wrist, fingertip), (0.008 * H, _half_span(lm.wrist, fingertip), 0.024 * H)),
    )


#: Which body carries each marker (right/midline names; "R" -> "L" and "_r" -> "_l" for the left).
MARKER_BODIES: dict[str, str] = {
    "RASI": "pelvis", "RPSI": "pelvis", "SACR": "pelvis",
    "RGTR": "femur_r", "RTHI": "femur_r", "RKNE": "femur_r", "RKNM": "femur_r",
    "RTIB": "tibia_r", "RANK": "tibia_r", "RMED": "tibia_r",
    "RHEE": "calcn_r", "RMT1": "calcn_r", "RMT5": "calcn_r", "RTOE": "toes_r",
    "C7": "torso", "CLAV": "torso", "STRN": "torso", "T10": "torso", "RBAK": "torso", "RSHO": "torso",
    "RUPA": "humerus_r", "RELB": "humerus_r", "RMEL": "humerus_r",
    "RFRA": "radius_r", "RWRA": "radius_r", "RWRB": "radius_r", "RFIN": "hand_r",
    "RFHD": "head", "RBHD": "head",
}

#: IK weights by marker kind (suffix after the side letter). Bony landmarks that skin barely
#: covers pin the joint centres and get 10; markers on bone but over more tissue or on bodies the
#: model simplifies (scapula/acromion on the torso, head rigid on the torso) get 3-5; markers on
#: muscle bellies (thigh, shank, upper arm, forearm) or the moving scapula wobble with soft
#: tissue and get 1, so they only resolve the long-axis rotations.
IK_WEIGHTS: dict[str, float] = {
    "ASI": 10, "PSI": 10, "SACR": 5, "GTR": 3, "THI": 1, "KNE": 10, "KNM": 10, "TIB": 1,
    "ANK": 10, "MED": 10, "HEE": 5, "TOE": 5, "MT1": 5, "MT5": 5,
    "C7": 5, "CLAV": 5, "STRN": 5, "T10": 5, "BAK": 1, "SHO": 5,
    "UPA": 1, "ELB": 10, "MEL": 10, "FRA": 1, "WRA": 10, "WRB": 10, "FIN": 3, "FHD": 3, "BHD": 3,
}


def _mirror_name(name: str) -> str:
    """Right-side name -> left-side name (markers 'R*', bodies/joints/coordinates '*_r')."""
    if name.endswith("_r"):
        return name[:-2] + "_l"
    if name.startswith("R") and name[1:].isupper():
        return "L" + name[1:]
    return name


def _mirror_axis(axis: Vec3) -> Vec3:
    """A right-side rotation axis -> the left axis giving the same anatomical motion."""
    return (0.0 - axis[0], 0.0 - axis[1], axis[2])  # 0.0 - x: no "-0" in the XML


def _mirror_inertia(inertia: BodyInertia) -> BodyInertia:
    return BodyInertia(inertia.mass, mirror(inertia.com), inertia.moments)


def all_body_specs(lm: StandingLandmarks, mass_kg: float) -> dict[str, BodySpec]:
    """Midline and both sides' bodies, keyed by name."""
    out: dict[str, BodySpec] = {}
    for b in right_body_specs(lm, mass_kg):
        out[b.name] = b
        if b.name.endswith("_r"):
            left = BodySpec(_mirror_name(b.name), mirror(b.origin), _mirror_inertia(b.inertia),
                            mirror(b.shape_centre), b.shape_radii)
            out[left.name] = left
    return out


def marker_name_list() -> list[str]:
    """All marker names of the model, right/midline first then left."""
    right = list(MARKER_BODIES)
    return right + [_mirror_name(n) for n in right if _mirror_name(n) != n]


def marker_weight(name: str) -> float:
    """IK weight of a marker by its kind (see :data:`IK_WEIGHTS`)."""
    key = name if name in IK_WEIGHTS else name[1:]
    return float(IK_WEIGHTS[key])


# ----------------------------------------------------------------------------- OpenSim assembly
def check_subject(height_m: float, mass_kg: float) -> None:
    """Raise :class:`InputError` unless height and mass are a plausible adult's."""
    lo, hi = HEIGHT_RANGE_M
    if not (isinstance(height_m, (int, float)) and math.isfinite(height_m) and lo <= height_m <= hi):
        raise InputError(f"height {height_m!r} m is outside {lo}-{hi} m; give the subject's stature in metres")
    lo, hi = MASS_RANGE_KG
    if not (isinstance(mass_kg, (int, float)) and math.isfinite(mass_kg) and lo <= mass_kg <= hi):
        raise InputError(f"mass {mass_kg!r} kg is outside {lo}-{hi} kg; give the subject's body mass in kilograms")


def _vec3(v: Vec3):  # -> osim.Vec3
    import opensim as osim

    return osim.Vec3(float(v[0]), float(v[1]), float(v[2]))


def _add_body(model, spec: BodySpec):  # -> osim.Body
    import opensim as osim

    ine = spec.inertia
    body = osim.Body(spec.name, ine.mass, _vec3(ine.com), osim.Inertia(*ine.moments, 0.0, 0.0, 0.0))
    shape_frame = osim.PhysicalOffsetFrame(f"{spec.name}_shape", body,
                                           osim.Transform(_vec3(tuple(np.subtract(spec.shape_centre, spec.origin)))))
    body.addComponent(shape_frame)
    shape = osim.Ellipsoid(*spec.shape_radii)
    shape.setColor(osim.Vec3(0.85, 0.75, 0.65))
    shape_frame.attachGeometry(shape)
    model.addBody(body)
    return body


def _complete_basis(axes: list[Vec3]) -> list[Vec3]:
    """Extend 1-3 orthogonal unit axes to a right-handed orthonormal triad (unused rotation slots)."""
    a = [np.asarray(v, dtype=float) for v in axes]
    if len(a) == 1:
        helper = np.eye(3)[int(np.argmin(np.abs(a[0])))]
        b = np.cross(a[0], helper)
        a.append(b / np.linalg.norm(b))
    if len(a) == 2:
        a.append(np.cross(a[0], a[1]))
    return [(float(v[0]), float(v[1]), float(v[2])) for v in a]


def _spatial_transform(coords: list[str], axes: list[Vec3], translations: list[tuple[str, object] | None] = ()):
    """CustomJoint transform: rotations ``coords`` about ``axes`` (in order, LinearFunction(1, 0)),
    then translations along the parent X, Y, Z: ``(coordinate, function)`` per axis or None."""
    import opensim as osim

    rot_axes = _complete_basis(axes)
    slots: list[tuple[Vec3, tuple[str, object] | None]] = [
        (rot_axes[i], (coords[i], osim.LinearFunction(1.0, 0.0)) if i < len(coords) else None) for i in range(3)]
    trans = list(translations) + [None] * (3 - len(translations))
    slots += [(tuple(np.eye(3)[i]), trans[i]) for i in range(3)]  # type: ignore[misc]
    st = osim.SpatialTransform()
    for i, (axis, driver) in enumerate(slots):
        ta = st.updTransformAxis(i)
        ta.setAxis(_vec3(axis))
        if driver is None:
            ta.set_function(osim.Constant(0.0))
            continue
        arr = osim.ArrayStr()
        arr.append(driver[0])
        ta.setCoordinateNames(arr)
        ta.set_function(driver[1])  # set_function copies: the SWIG temporary may then die
    return st


def _set_range(coord, lo: float, hi: float, default: float = 0.0) -> None:
    coord.setRangeMin(lo)
    coord.setRangeMax(hi)
    coord.set_clamped(True)
    coord.setDefaultValue(default)


def _add_pelvis_joint(model, bodies: dict, lm: StandingLandmarks) -> None:
    import opensim as osim

    rotations = ["pelvis_tilt", "pelvis_list", "pelvis_rotation"]
    translations = ["pelvis_tx", "pelvis_ty", "pelvis_tz"]
    st = _spatial_transform(rotations, [Z, X, Y], [(t, osim.LinearFunction(1.0, 0.0)) for t in translations])
    zero = osim.Vec3(0.0)
    model.addJoint(osim.CustomJoint("ground_pelvis", model.getGround(), zero, zero, bodies["pelvis"], zero, zero, st))


def _add_joint(model, bodies: dict, specs: dict[str, BodySpec], js: JointSpec, side: str | None) -> None:
    import opensim as osim

    def sided(name: str) -> str:
        return name.format(s=side) if side else name

    parent, child = bodies[sided(js.parent)], bodies[sided(js.child)]
    p_spec, c_spec = specs[sided(js.parent)], specs[sided(js.child)]
    offset = _vec3(tuple(np.subtract(c_spec.origin, p_spec.origin)))
    zero = osim.Vec3(0.0)
    name = sided(js.name)
    if not js.dofs:
        model.addJoint(osim.WeldJoint(name, parent, offset, zero, child, zero, zero))
        return
    suffix = f"_{side}" if side else ""
    coords = [d.coordinate + suffix for d in js.dofs]
    axes = [d.axis if side != "l" else _mirror_axis(d.axis) for d in js.dofs]
    translations: list[tuple[str, object] | None] = [None, None, None]
    for ct in js.coupled:
        translations[ct.axis] = (coords[0], _spline(zip(ct.knots, ct.values)))
    st = _spatial_transform(coords, axes, translations)
    model.addJoint(osim.CustomJoint(name, parent, offset, zero, child, zero, zero, st))


def _base_coordinate(name: str) -> str:
    """'hip_flexion_r' -> 'hip_flexion' (the key of :data:`RANGES_DEG`)."""
    return name[:-2] if name.endswith(("_r", "_l")) else name


def _apply_ranges(model, lm: StandingLandmarks) -> None:
    """Clamp every coordinate to its range; default pose 0 except pelvis_ty (mid-ASIS height)."""
    model.finalizeFromProperties()  # CustomJoints create their Coordinates here
    coords = model.updCoordinateSet()
    for i in range(coords.getSize()):
        coord = coords.get(i)
        name = coord.getName()
        if name in PELVIS_TRANSLATION_RANGE_M:
            lo, hi = PELVIS_TRANSLATION_RANGE_M[name]
            _set_range(coord, lo, hi, lm.pelvis_origin[1] if name == "pelvis_ty" else 0.0)
        else:
            lo, hi = RANGES_DEG[_base_coordinate(name)]
            _set_range(coord, math.radians(lo), math.radians(hi))


def _add_markers(model, bodies: dict, specs: dict[str, BodySpec], lm: StandingLandmarks) -> None:
    import opensim as osim

    for right_name, right_body in MARKER_BODIES.items():
        pairs = [(right_name, right_body, lm.markers[right_name])]
        if _mirror_name(right_name) != right_name:
            pairs.append((_mirror_name(right_name), _mirror_name(right_body), mirror(lm.markers[right_name])))
        for name, body_name, ground_point in pairs:
            local = tuple(np.subtract(ground_point, specs[body_name].origin))
            model.addMarker(osim.Marker(name, bodies[body_name], _vec3(local)))  # type: ignore[arg-type]


def build_model(height_m: float = DEFAULT_HEIGHT_M, mass_kg: float = DEFAULT_MASS_KG,
                name: str = MODEL_NAME):  # -> opensim.Model
    """The full-body model for a subject of stature ``height_m`` (m) and mass ``mass_kg`` (kg).

    Returns a finalized (not yet ``initSystem``-ed) ``opensim.Model``; see the module docstring
    for frames, coordinates and signs. Raises :class:`InputError` for an implausible subject.
    """
    import opensim as osim

    check_subject(height_m, mass_kg)
    lm = standing_landmarks(height_m)
    model = osim.Model()
    model.setName(name)
    model.set_credits("opensim-biopose default model, generated by osim_models/build_default_model.py")
    model.set_publications(
        "Winter 2009 (segment lengths); Harrington et al. 2007 J Biomech 40:595 (hip centre); "
        "de Leva 1996 J Biomech 29:1223 (inertia); Inman 1976 (ankle/subtalar axes); AAOS 1965 (ranges)")
    model.set_length_units("meters")
    model.set_force_units("N")
    model.setGravity(_vec3(GRAVITY))
    specs = all_body_specs(lm, mass_kg)
    bodies = {n: _add_body(model, s) for n, s in specs.items()}
    _add_pelvis_joint(model, bodies, lm)
    for js in joint_specs(lm):
        for side in (SIDES if js.sided else (None,)):
            _add_joint(model, bodies, specs, js, side)
    _add_markers(model, bodies, specs, lm)
    _apply_ranges(model, lm)
    model.finalizeConnections()
    return model


def write_model(path: str | Path, height_m: float = DEFAULT_HEIGHT_M, mass_kg: float = DEFAULT_MASS_KG,
                name: str = MODEL_NAME) -> Path:
    """Build the model for a subject and write it to ``path`` atomically; returns the path."""
    model = build_model(height_m, mass_kg, name)
    with atomic_path(path) as tmp:
        model.printToXML(str(tmp))
    return Path(path)


def write_ik_setup(path: str | Path, model_file: str = f"{MODEL_NAME}.osim") -> Path:
    """Write an InverseKinematicsTool setup weighting every marker by :func:`marker_weight`.

    ``model_file`` is stored as given (relative: OpenSim resolves it against the cwd of the run);
    ``marker_file`` is left empty for the caller to fill in.
    """
    import opensim as osim

    tool = osim.InverseKinematicsTool()
    tool.setName(MODEL_NAME)
    tool.set_model_file(model_file)
    tool.set_marker_file("")
    tool.set_output_motion_file(f"{MODEL_NAME}_ik.mot")
    # 1e-5 is OpenSim's default; the lab references here were made at 1e-6.
    tool.set_accuracy(1e-5)
    tasks = tool.getIKTaskSet()
    for marker in marker_name_list():
        task = osim.IKMarkerTask()
        task.setName(marker)
        task.setApply(True)
        task.setWeight(marker_weight(marker))
        tasks.cloneAndAppend(task)
    with atomic_path(path) as tmp:
        tool.printToXML(str(tmp))
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=float, default=DEFAULT_HEIGHT_M, help="stature, metres")
    parser.add_argument("--mass", type=float, default=DEFAULT_MASS_KG, help="body mass, kilograms")
    parser.add_argument("--out", type=Path, default=None,
                        help="write only this model (default: regenerate the shipped model and IK setup)")
    args = parser.parse_args(argv)
    import opensim as osim

    osim.Logger.removeFileSink()
    if args.out is not None:
        print(write_model(args.out, args.height, args.mass))
        return 0
    print(write_model(DEFAULT_MODEL_PATH, args.height, args.mass))
    print(write_ik_setup(DEFAULT_IK_SETUP_PATH))
    return 0


if __name__ == "__main__":
    sys.exit(main())
