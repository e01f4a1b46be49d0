"""Published anthropometry -> where joint centres and skin landmarks are in a standing person.

Pure numbers, no OpenSim: everything here is a function of stature (and body mass for the
inertial parameters) and is returned in the OpenSim ground frame of the *default standing pose*:
metres, +X anterior, +Y up, +Z to the subject's right, origin on the floor below the mid-point
of the two anterior superior iliac spines (ASIS). The model builder turns these ground points
into body-local offsets; because every body frame is parallel to ground in the default pose,
"local = ground point - body origin".

Sources (facts and figures only; the code is written here):

- Winter DA (2009) *Biomechanics and Motor Control of Human Movement*, 4th ed., Fig. 4.1
  (after Drillis & Contini 1966): segment landmarks as fractions of stature H --
  shoulder 0.818 H, elbow 0.630 H, wrist 0.485 H, hip 0.530 H, knee 0.285 H, ankle 0.039 H,
  chin 0.870 H, eye 0.936 H, hand length 0.108 H, foot length 0.152 H, foot breadth 0.055 H,
  hip breadth 0.191 H.
- Harrington ME, Zavatsky AB, Lawson SEM, Yuan Z, Theologis TN (2007) Prediction of the hip
  joint centre in adults, children, and patients with cerebral palsy based on magnetic resonance
  imaging. J Biomech 40:595-602 -- hip joint centre from pelvic width PW (inter-ASIS) and depth
  PD (mid-ASIS to mid-PSIS), in mm: x = -0.24 PD - 9.9, y = -0.30 PW - 10.9, z = +/-(0.33 PW + 7.3).
- de Leva P (1996) Adjustments to Zatsiorsky-Seluyanov's segment inertia parameters.
  J Biomech 29:1223-1230, Table 4 (male): mass fractions, centre-of-mass positions and radii of
  gyration (see :data:`DE_LEVA_MALE`).
- Inman VT (1976) *The Joints of the Ankle*; Inman & Isman: talocrural axis ~8 deg below
  horizontal laterally and ~6 deg posterior laterally; subtalar axis ~42 deg above horizontal
  and ~23 deg medial to the long axis of the foot.

Assumptions made here (not from a table; approximate adult magnitudes, chosen so a 1.75 m
subject gets textbook-sized values) are marked ``# assumption`` at their definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class StatureFractions:
    """Lengths as fractions of stature H (dimensionless). Defaults: Winter 2009 Fig. 4.1 unless marked."""

    shoulder: float = 0.818   # height of the glenohumeral centre (Winter's shoulder level)
    elbow: float = 0.630      # height of the elbow joint centre, arm hanging
    wrist: float = 0.485      # height of the wrist joint centre, arm hanging
    hip: float = 0.530        # height of the hip joint centre
    knee: float = 0.285       # height of the knee joint centre
    ankle: float = 0.039      # height of the ankle joint centre (malleoli)
    chin: float = 0.870
    eye: float = 0.936
    hand_length: float = 0.108
    foot_length: float = 0.152
    foot_breadth: float = 0.055
    hip_breadth: float = 0.191  # bitrochanteric (skin) breadth
    # assumption: inter-ASIS 0.14 H (0.245 m at 1.75 m) and ASIS-PSIS depth 0.09 H (0.158 m),
    # typical adult marker-to-marker values; they only move the hip centre via Harrington 2007.
    pelvis_width: float = 0.14
    pelvis_depth: float = 0.09
    # assumption: glenohumeral centres 0.20 H apart (0.35 m at 1.75 m), i.e. a biacromial
    # breadth of ~0.23 H less the acromion overhang on each side.
    shoulder_separation: float = 0.20
    # assumption: L5/S1 lies 0.03 H anterior to the sacrum marker and 0.04 H above the ASIS
    # plane, close to the lumbar joint of the gait2392 / Rajagopal2016 pelvis (Delp 1990).
    lumbar_forward_of_sacrum: float = 0.03
    lumbar_above_asis: float = 0.04
    # assumption: cervicale (C7 spinous process) at 0.852 H.
    c7: float = 0.852


#: Normal elbow carrying angle (forearm abducted from the humerus in the anatomical position);
#: ~10-15 deg in adults (e.g. Paraskevas et al. 2004, Clin Orthop Relat Res 425:223-226).
CARRYING_ANGLE_DEG = 10.0
#: Inman 1976: talocrural axis inclination in the frontal (down laterally) and transverse
#: (posterior laterally) planes, degrees.
ANKLE_AXIS_FRONTAL_DEG = 8.0
ANKLE_AXIS_TRANSVERSE_DEG = 6.0
#: Inman 1976: subtalar axis elevation from the horizontal and medial deviation from the foot axis.
SUBTALAR_ELEVATION_DEG = 42.0
SUBTALAR_MEDIAL_DEG = 23.0


@dataclass(frozen=True)
class SegmentInertia:
    """de Leva 1996 Table 4 (male) for one segment.

    ``mass_fraction`` of body mass; ``com_fraction`` of segment length from the proximal end;
    radii of gyration as fractions of segment length about the sagittal (anteroposterior, X),
    longitudinal (Y) and transverse (mediolateral, Z) axes.
    """

    mass_fraction: float
    com_fraction: float
    r_sagittal: float
    r_longitudinal: float
    r_transverse: float


#: de Leva 1996, Table 4, male column. Trunk is split as lower trunk (pelvis body) and
#: middle + upper trunk (torso body); the split uses de Leva's LPT vs MPT+UPT mass fractions.
DE_LEVA_MALE: dict[str, SegmentInertia] = {
    "head": SegmentInertia(0.0694, 0.5976, 0.362, 0.312, 0.376),
    "trunk": SegmentInertia(0.4346, 0.4486, 0.372, 0.191, 0.347),
    "upper_arm": SegmentInertia(0.0271, 0.5772, 0.285, 0.158, 0.269),
    "forearm": SegmentInertia(0.0162, 0.4574, 0.276, 0.121, 0.265),
    "hand": SegmentInertia(0.0061, 0.7900, 0.628, 0.401, 0.513),
    "thigh": SegmentInertia(0.1416, 0.4095, 0.329, 0.149, 0.329),
    "shank": SegmentInertia(0.0433, 0.4459, 0.255, 0.103, 0.249),
    "foot": SegmentInertia(0.0137, 0.4415, 0.257, 0.124, 0.245),
}
#: de Leva 1996 Table 4: lower-trunk (LPT) share of the whole trunk mass, 11.17 / 43.46.
LOWER_TRUNK_SHARE = 0.1117 / 0.4346


@dataclass(frozen=True)
class StandingLandmarks:
    """Joint centres and skin points of the right side and the midline, ground frame, metres.

    Left-side points are the mirror images (z -> -z); see :func:`mirror`.
    """

    height_m: float
    pelvis_origin: Vec3  # mid-ASIS, the pelvis body origin
    hip: Vec3
    knee: Vec3
    ankle: Vec3
    subtalar: Vec3
    mtp: Vec3
    lumbar: Vec3          # L5/S1, the torso origin
    neck: Vec3            # C7/T1 centre, the head origin
    shoulder: Vec3        # glenohumeral centre
    elbow: Vec3
    wrist: Vec3
    head_centre: Vec3
    foot_length: float
    pelvis_width: float
    pelvis_depth: float
    markers: dict[str, Vec3]  # skin markers, right side ("R*") and midline


def mirror(point: Vec3) -> Vec3:
    """Reflect a ground point through the sagittal plane (z -> -z)."""
    return (point[0], point[1], -point[2])


def _add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _lerp(a: Vec3, b: Vec3, t: float) -> Vec3:
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2]))


def harrington_hip_centre(pelvis_width: float, pelvis_depth: float) -> Vec3:
    """Right hip joint centre in the pelvis frame (origin mid-ASIS), metres (Harrington 2007)."""
    pw_mm, pd_mm = pelvis_width * 1000.0, pelvis_depth * 1000.0
    return (
        (-0.24 * pd_mm - 9.9) / 1000.0,
        (-0.30 * pw_mm - 10.9) / 1000.0,
        (0.33 * pw_mm + 7.3) / 1000.0,
    )


def standing_landmarks(height_m: float, fr: StatureFractions = StatureFractions()) -> StandingLandmarks:
    """Where joint centres and skin markers are for a person of stature ``height_m`` standing.

    Arms hang with the palms forward (forearm supinated, the anatomical position) and a
    :data:`CARRYING_ANGLE_DEG` carrying angle; thighs and shanks are vertical with the knee
    and ankle centres straight below the hip centre; feet point straight forward.
    """
    H = float(height_m)
    pw, pd = fr.pelvis_width * H, fr.pelvis_depth * H
    hjc_local = harrington_hip_centre(pw, pd)
    # The pelvis origin (mid-ASIS) sits above the hip centre by -y of the Harrington offset.
    pelvis_origin = (0.0, fr.hip * H - hjc_local[1], 0.0)
    hip = _add(pelvis_origin, hjc_local)
    knee = (hip[0], fr.knee * H, hip[2])
    ankle = (hip[0], fr.ankle * H, hip[2])
    foot = fr.foot_length * H
    # assumption: heel 0.22 of foot length behind the ankle centre, metatarsal heads (MTP
    # centre) 0.50 ahead, toe tip 0.78 ahead (foot CoM at 44% from the heel, de Leva 1996).
    heel_x, mtp_x, toe_x = ankle[0] - 0.22 * foot, ankle[0] + 0.50 * foot, ankle[0] + 0.78 * foot
    subtalar = (ankle[0] - 0.12 * foot, 0.55 * ankle[1], ankle[2])  # assumption: below/behind talus
    mtp = (mtp_x, 0.011 * H, ankle[2])  # assumption: metatarsal head centres ~2 cm above the floor

    sacrum = (pelvis_origin[0] - pd, pelvis_origin[1], 0.0)
    lumbar = (sacrum[0] + fr.lumbar_forward_of_sacrum * H, pelvis_origin[1] + fr.lumbar_above_asis * H, 0.0)
    shoulder = (lumbar[0], fr.shoulder * H, 0.5 * fr.shoulder_separation * H)
    elbow = (shoulder[0], fr.elbow * H, shoulder[2])
    forearm_drop = (fr.elbow - fr.wrist) * H
    wrist = (elbow[0], fr.wrist * H, elbow[2] + forearm_drop * math.tan(math.radians(CARRYING_ANGLE_DEG)))
    c7 = (shoulder[0] - 0.05 * H, fr.c7 * H, 0.0)
    neck = (c7[0] + 0.03 * H, c7[1], 0.0)  # assumption: C7/T1 centre 0.03 H in front of the spinous process
    head_centre = (neck[0] + 0.015 * H, 0.5 * (fr.chin + 1.0) * H, 0.0)

    markers = _skin_markers(H, fr, pelvis_origin, sacrum, hip, knee, ankle, heel_x, mtp_x, toe_x,
                            shoulder, elbow, wrist, c7, head_centre)
    return StandingLandmarks(
        height_m=H, pelvis_origin=pelvis_origin, hip=hip, knee=knee, ankle=ankle, subtalar=subtalar,
        mtp=mtp, lumbar=lumbar, neck=neck, shoulder=shoulder, elbow=elbow, wrist=wrist,
        head_centre=head_centre, foot_length=foot, pelvis_width=pw, pelvis_depth=pd, markers=markers,
    )


def _skin_markers(H: float, fr: StatureFractions, pelvis: Vec3, sacrum: Vec3, hip: Vec3, knee: Vec3,
                  ankle: Vec3, heel_x: float, mtp_x: float, toe_x: float, shoulder: Vec3,
                  elbow: Vec3, wrist: Vec3, c7: Vec3, head: Vec3) -> dict[str, Vec3]:
    """Skin-surface markers (right side + midline) in the standing pose, metres.

    Soft-tissue offsets from the bone (segment radii, breadths) are assumptions sized for a
    1.75 m adult and scaled with stature: knee breadth 0.062 H, ankle breadth 0.042 H, elbow
    breadth 0.044 H, wrist breadth 0.034 H, thigh radius 0.036 H, shank radius 0.028 H,
    upper-arm radius 0.025 H, forearm radius 0.02 H.
    """
    pw, pd = fr.pelvis_width * H, fr.pelvis_depth * H
    foot_z = ankle[2]
    chest_y = fr.shoulder * H + 0.003 * H  # jugular notch just above the shoulder centres
    m: dict[str, Vec3] = {
        # pelvis: ASIS/PSIS define the pelvis frame (Harrington 2007 measures PW, PD on markers)
        "RASI": (pelvis[0], pelvis[1], 0.5 * pw),
        "RPSI": (sacrum[0], sacrum[1], 0.026 * H),  # assumption: inter-PSIS ~0.09 m
        "SACR": sacrum,
        # thigh
        "RGTR": (hip[0] - 0.005 * H, hip[1] - 0.005 * H, 0.5 * fr.hip_breadth * H),
        # THI/TIB/FRA are soft-tissue "wand" positions without a bony definition: placed where
        # the anny-pig53 virtual markers sit on the neutral Anny body (mid-segment; FRA dorsal).
        "RTHI": _add(_lerp(hip, knee, 0.5), (-0.020 * H, 0.0, 0.030 * H)),  # posterolateral
        "RKNE": _add(knee, (0.0, 0.0, 0.031 * H)),
        "RKNM": _add(knee, (0.0, 0.0, -0.031 * H)),
        # shank
        "RTIB": _add(_lerp(knee, ankle, 0.5), (0.0, 0.0, 0.028 * H)),
        "RANK": _add(ankle, (-0.004 * H, -0.003 * H, 0.021 * H)),   # lateral malleolus: lower, posterior
        "RMED": _add(ankle, (0.003 * H, 0.003 * H, -0.021 * H)),    # medial malleolus
        # foot (the sole is on the floor, y = 0)
        "RHEE": (heel_x, 0.020 * H, foot_z),
        "RMT1": (mtp_x + 0.004 * H, 0.012 * H, foot_z - 0.026 * H),
        "RMT5": (mtp_x - 0.012 * H, 0.010 * H, foot_z + 0.028 * H),
        "RTOE": (toe_x, 0.012 * H, foot_z - 0.004 * H),
        # trunk
        "C7": c7,
        "CLAV": (shoulder[0] + 0.021 * H, chest_y, 0.0),
        "STRN": (shoulder[0] + 0.055 * H, chest_y - 0.10 * H, 0.0),
        "T10": (shoulder[0] - 0.055 * H, chest_y - 0.11 * H, 0.0),
        "RBAK": (shoulder[0] - 0.060 * H, shoulder[1] - 0.05 * H, 0.055 * H),
        # top of the acromion: above and slightly behind the humeral head centre
        "RSHO": _add(shoulder, (-0.012 * H, 0.020 * H, 0.0)),
        # arm (palm forward: radial side lateral, +Z on the right)
        "RUPA": _add(_lerp(shoulder, elbow, 0.5), (0.0, 0.0, 0.025 * H)),
        "RELB": _add(elbow, (0.0, 0.0, 0.022 * H)),
        "RMEL": _add(elbow, (0.0, 0.0, -0.022 * H)),
        "RFRA": _add(_lerp(elbow, wrist, 0.5), (-0.020 * H, 0.0, 0.0)),  # dorsal forearm (palm forward)
        "RWRA": _add(wrist, (0.0, 0.0, 0.017 * H)),   # radial styloid (thumb side)
        "RWRB": _add(wrist, (0.0, 0.0, -0.017 * H)),  # ulnar styloid
        "RFIN": _add(wrist, (-0.008 * H, -0.050 * H, 0.008 * H)),  # dorsum, 2nd metacarpal head
        # head: front markers over the temples, back markers in the same transverse plane
        "RFHD": _add(head, (0.045 * H, 0.010 * H, 0.035 * H)),
        "RBHD": _add(head, (-0.055 * H, 0.010 * H, 0.030 * H)),
    }
    return m


# ----------------------------------------------------------------------------- inertia
@dataclass(frozen=True)
class BodyInertia:
    """Mass (kg), centre of mass in the body frame (m) and principal moments (kg m^2) about it,
    along the body axes X (anteroposterior), Y (long axis), Z (mediolateral)."""

    mass: float
    com: Vec3
    moments: Vec3


def segment_inertia(seg: SegmentInertia, mass_kg: float, proximal: Vec3, distal: Vec3,
                    origin: Vec3, share: float = 1.0) -> BodyInertia:
    """de Leva segment parameters between two ground points, expressed in a body frame at ``origin``.

    ``share`` scales the mass (e.g. a foot split into talus/calcaneus/toes).
    """
    p, d, o = np.asarray(proximal), np.asarray(distal), np.asarray(origin)
    length = float(np.linalg.norm(d - p))
    mass = seg.mass_fraction * mass_kg * share
    com = p + seg.com_fraction * (d - p) - o
    ixx = mass * (seg.r_sagittal * length) ** 2
    iyy = mass * (seg.r_longitudinal * length) ** 2
    izz = mass * (seg.r_transverse * length) ** 2
    return BodyInertia(mass=mass, com=(float(com[0]), float(com[1]), float(com[2])), moments=(ixx, iyy, izz))
