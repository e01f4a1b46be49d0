"""A short kinematic description of an OpenSim model in its default pose (what ``model --info`` prints)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JointCentre:
    """A joint's centre (its child frame origin) in ground in the default pose, metres."""

    joint: str
    position: tuple[float, float, float]


@dataclass(frozen=True)
class ModelSummary:
    """Names and default-pose joint centres of a model (OpenSim ground: +Y up, +X anterior, +Z right)."""

    name: str
    coordinates: tuple[str, ...]
    markers: tuple[str, ...]
    bodies: tuple[str, ...]
    joint_centres: tuple[JointCentre, ...]
    mass_kg: float

    @property
    def dof(self) -> int:
        return len(self.coordinates)

    def lines(self) -> list[str]:
        """Human-readable report, one item per line."""
        out = [
            f"model {self.name}: {self.dof} coordinates, {len(self.markers)} markers, "
            f"{len(self.bodies)} bodies, {self.mass_kg:.1f} kg",
            "bodies: " + " ".join(self.bodies),
            "joint centre heights in the default pose (m):",
        ]
        out += [f"  {jc.joint:<16} {jc.position[1]:6.3f}" for jc in self.joint_centres]
        return out


def summarize(model) -> ModelSummary:  # model: opensim.Model
    """Summarize ``model`` (initializes its system; the model must be finalized)."""
    state = model.initSystem()
    model.realizePosition(state)
    centres = []
    for joint in model.getJointSet():
        p = joint.getChildFrame().getPositionInGround(state)
        centres.append(JointCentre(joint.getName(), (p[0], p[1], p[2])))
    return ModelSummary(
        name=model.getName(),
        coordinates=tuple(c.getName() for c in model.getCoordinateSet()),
        markers=tuple(m.getName() for m in model.getMarkerSet()),
        bodies=tuple(b.getName() for b in model.getBodySet()),
        joint_centres=tuple(centres),
        mass_kg=sum(b.getMass() for b in model.getBodySet()),
    )
