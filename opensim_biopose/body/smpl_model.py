"""SMPL, SMPL-H and SMPL-X (Max Planck, registration needed) as :class:`BodyModel`\\ s via ``smplx``.

The model files are not shipped and never downloaded: the user points at them with
``model_path=...`` or puts them in ``$OPENSIM_BIOPOSE_BODY_MODELS/<type>/`` (default
``~/.cache/opensim_biopose/body_models/<type>/``). Frame: +X subject's left, +Y up, +Z anterior
(:data:`SMPL_FRAME`), metres. Pose joints are the body joints of the kinematic tree (hands,
jaw and eyes stay at rest, hands flat); rotation vectors are local, in rest-aligned axes,
exactly SMPL's own pose parameters. Shape parameters are the first ``num_betas`` betas.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from opensim_biopose.body.base import BodyModel, BodyOutput, PoseLimit, VertexRegressor, check_pose_shape
from opensim_biopose.body.frames import SMPL_FRAME
from opensim_biopose.errors import InputError

log = logging.getLogger(__name__)

ENV_DIR = "OPENSIM_BIOPOSE_BODY_MODELS"
KEYPOINT_FILE = "smpl_keypoints.json"

# SMPL kinematic tree joint names (the first 22 are shared by SMPL-H and SMPL-X).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)


@dataclass(frozen=True)
class SmplVariant:
    """What differs between the SMPL family members."""

    model_type: str             # smplx.create's model_type
    file_hint: str              # expected file name in the model folder
    num_body_joints: int        # pose joints after the pelvis (the global orientation)
    vertex_ids: str             # key of smplx.vertex_ids for landmark vertices
    num_vertices: int           # vertex count of the real model files


VARIANTS: dict[str, SmplVariant] = {
    "smpl": SmplVariant("smpl", "SMPL_NEUTRAL.pkl", 23, "smplh", 6890),
    "smplh": SmplVariant("smplh", "SMPLH_NEUTRAL.pkl", 21, "smplh", 6890),
    "smplx": SmplVariant("smplx", "SMPLX_NEUTRAL.npz", 21, "smplx", 10475),
}


@dataclass(frozen=True)
class SmplConfig:
    """Options of an SMPL-family body model."""

    model_type: str = "smpl"
    # A model file or a folder holding it; None: $OPENSIM_BIOPOSE_BODY_MODELS/<type>/.
    model_path: str | None = None
    gender: str = "neutral"
    # 10 betas is what every SMPL release has; more buys little for keypoint fits.
    num_betas: int = 10


def default_model_dir(model_type: str) -> Path:
    root = os.environ.get(ENV_DIR) or Path.home() / ".cache" / "opensim_biopose" / "body_models"
    return Path(root) / model_type


def resolve_model_file(config: SmplConfig) -> Path:
    """The model file to load; InputError saying where to put it when absent."""
    variant = VARIANTS[config.model_type]
    base = Path(config.model_path) if config.model_path else default_model_dir(config.model_type)
    name = variant.file_hint.replace("NEUTRAL", config.gender.upper())
    candidates = [base] if base.is_file() else [base / name, base / name.replace(".pkl", ".npz"),
                                                base / name.replace(".npz", ".pkl")]
    for path in candidates:
        if path.is_file():
            return path
    raise InputError(
        f"body model {config.model_type!r}: model file not found (looked for {candidates[0]}). "
        f"{config.model_type.upper()} files need a free registration at https://smpl.is.tue.mpg.de "
        f"(SMPL-X: https://smpl-x.is.tue.mpg.de); download {name} and put it in {base} "
        f"(or set {ENV_DIR}, or pass model_path=...)"
    )


class SmplBody(BodyModel):
    """An SMPL-family model evaluated with ``smplx.lbs.lbs`` on the buffers ``smplx`` loads."""

    frame = SMPL_FRAME

    def __init__(self, config: SmplConfig = SmplConfig()) -> None:
        if config.model_type not in VARIANTS:
            raise InputError(f"unknown SMPL family member {config.model_type!r}; use one of {', '.join(VARIANTS)}")
        try:
            import smplx
        except ImportError as exc:
            raise InputError("SMPL body models need smplx: pip install 'opensim-biopose[smpl]'") from exc
        self.config = config
        self.name = config.model_type
        self.variant = VARIANTS[config.model_type]
        path = resolve_model_file(config)
        try:
            cls = {"smpl": smplx.SMPL, "smplh": smplx.SMPLH, "smplx": smplx.SMPLX}[config.model_type]
            with contextlib.redirect_stdout(io.StringIO()):      # smplx prints notes on stdout
                module = cls(model_path=str(path), gender=config.gender, num_betas=config.num_betas,
                             use_pca=False, ext=path.suffix.lstrip("."))
        except Exception as exc:  # smplx's loaders raise anything from pickle/zip/numpy on a bad file
            raise InputError(f"{path} is not a readable {config.model_type.upper()} model file: {exc}") from exc
        self._module = module.eval()
        self._file = path
        self._parents = module.parents
        self._num_tree_joints = int(module.parents.shape[0])
        self._pose_names = JOINT_NAMES[1: 1 + self.variant.num_body_joints]
        self._faces = torch.as_tensor(module.faces.astype("int64"))
        self._regressor: VertexRegressor | None = None

    @property
    def pose_joint_names(self) -> tuple[str, ...]:
        return self._pose_names

    @property
    def shape_names(self) -> tuple[str, ...]:
        return tuple(f"beta{i}" for i in range(self._module.num_betas))

    @property
    def neutral_shape(self) -> torch.Tensor:
        return torch.zeros(self._module.num_betas)

    @property
    def shape_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self._module.num_betas
        return torch.full((n,), -3.0), torch.full((n,), 3.0)   # +-3 standard deviations

    @property
    def faces(self) -> torch.Tensor:
        return self._faces

    @property
    def num_vertices(self) -> int:
        return int(self._module.v_template.shape[0])

    def pose_limits(self) -> dict[str, PoseLimit]:
        # SMPL axes: X left, Y up, Z anterior; knee flexion is a positive X rotation.
        return {
            "left_knee": PoseLimit((-8, -30, -12), (150, 30, 12)),
            "right_knee": PoseLimit((-8, -30, -12), (150, 30, 12)),
        }

    def forward(self, pose: torch.Tensor, shape: torch.Tensor, transl: torch.Tensor | None = None,
                vertex_ids: torch.Tensor | None = None) -> BodyOutput:
        """(B, P, 3) rad, (1|B, num_betas), (B, 3) m -> vertices (B, V, 3), joints (B, J, 3)."""
        from smplx.lbs import lbs

        batch = check_pose_shape(self, pose, shape)
        m = self._module
        full = torch.zeros(batch, self._num_tree_joints, 3, dtype=pose.dtype)
        full = torch.cat([full[:, :1], pose, full[:, 1 + pose.shape[1]:]], dim=1)
        betas = shape.expand(batch, -1).to(m.shapedirs.dtype)
        vertices, joints = lbs(betas, full.reshape(batch, -1), m.v_template, m.shapedirs, m.posedirs,
                               m.J_regressor, self._parents, m.lbs_weights)
        if vertex_ids is not None:
            vertices = vertices[:, vertex_ids]
        if transl is not None:
            vertices = vertices + transl[:, None, :]
            joints = joints + transl[:, None, :]
        return BodyOutput(vertices=vertices, joints=joints)

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return tuple(self.keypoint_regressor().names)

    def keypoint_regressor(self) -> VertexRegressor:
        """Declared keypoints; landmark-vertex ones only for files of the standard vertex count."""
        if self._regressor is None:
            self._regressor = self._build_regressor()
        return self._regressor

    def _build_regressor(self) -> VertexRegressor:
        from smplx.vertex_ids import vertex_ids

        standard = self.num_vertices == self.variant.num_vertices
        ids = vertex_ids[self.variant.vertex_ids]
        regressor = self._module.J_regressor
        rows: dict[str, tuple[list[int], list[float]]] = {}
        skipped = []
        for name, entry in _keypoint_doc()["keypoints"].items():
            if "joint" in entry:
                row = regressor[JOINT_NAMES.index(entry["joint"])]
                nz = torch.nonzero(row.abs() > 1e-8).flatten()
                rows[name] = (nz.tolist(), (row[nz] / row[nz].sum()).tolist())
            elif standard:
                rows[name] = ([int(ids[entry["smplx_vertex_id"]])], [1.0])
            else:
                skipped.append(name)
        if skipped:
            log.warning("%s: %d-vertex model is not the standard topology; keypoints %s left out",
                        self._file, self.num_vertices, ", ".join(skipped))
        out = VertexRegressor.from_rows(rows)
        out.check_vertex_count(self.num_vertices, KEYPOINT_FILE)
        return out


@functools.lru_cache(maxsize=1)
def _keypoint_doc() -> dict:
    text = resources.files("opensim_biopose.body").joinpath("data", KEYPOINT_FILE).read_text()
    return json.loads(text)


def make_factory(model_type: str):
    """Factory registered as body model ``model_type`` ("smpl", "smplh", "smplx")."""

    def build(**options: object) -> SmplBody:
        return SmplBody(SmplConfig(model_type=model_type, **options))  # type: ignore[arg-type]

    return build
