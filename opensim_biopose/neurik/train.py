"""Training NeurIK on synthetic windows of one model and marker set.

Deterministic for a given seed and step count (``minutes`` adds a wall-clock stop, which
is not). Resumable: optimiser and generator state go to a sidecar file next to the
checkpoint (see :mod:`opensim_biopose.neurik.checkpoint`); a replay pool ("ik" targets) is not
saved but refilled on resume, so a resumed run then differs from an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from opensim_biopose.errors import CheckpointError, InputError
from opensim_biopose.neurik.checkpoint import (
    CheckpointMeta, load_checkpoint, load_state, save_checkpoint, save_state,
)
from opensim_biopose.neurik.features import Decoded, WindowInput, decode, target_in_frame, window_features
from opensim_biopose.neurik.frames import to_frame
from opensim_biopose.neurik.layout import ModelLayout, build_layout
from opensim_biopose.neurik.model import NeurIKConfig, NeurIKNet, build_neurik
from opensim_biopose.neurik.refine import CoordinateTargets
from opensim_biopose.neurik.synth import SUBJECT_SCALED, SynthBatch, SynthConfig, SyntheticMotion, WindowPool
from opensim_biopose.neurik.targets import TARGETS, IKTargetConfig, TargetContext


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Relative weights; units make 1 cm of marker error ~ 0.6 deg of coordinate error."""

    coords: float = 1.0            # rad (or m) smooth-L1 on directly predicted coordinates
    root_rotation: float = 0.5     # |R_pred - R_true| elements of the root orientation
    root_position: float = 1.0     # m
    markers: float = 1.0           # m, distance of predicted markers (through Skeleton.forward)
    range_violation: float = 1.0   # rad / m beyond a clamped range
    smoothness: float = 0.5        # second differences of the coordinate error over time
    scales: float = 0.5            # log scale factors


# Replay-pool size (frames) per target when TrainConfig.pool_frames is None.
_DEFAULT_POOL = {"fk": 0, "ik": 65536}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    steps: int = 4000                 # ~10-15 min on one CPU core with the default network
    minutes: float | None = None      # optional wall-clock stop (makes the run non-deterministic)
    batch: int = 48                   # windows per step: 48 x 16 frames = 768 poses
    lr: float = 1.5e-3
    warmup: int = 100                 # linear warm-up steps, then cosine decay to 5 %
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    save_every_s: float = 60.0        # resume granularity
    threads: int | None = None        # torch.set_num_threads; None keeps torch's default
    # What the network learns to answer (neurik.targets.TARGETS). "fk": the generating pose and
    # scale factors -- for the default video model, whose markers come without a scaled model and
    # whose pipeline needs the scale factors. "ik": OpenSim IK's answer to the observed markers on
    # the given model -- for lab models already scaled to the subject (train-neurik --setup
    # --subject-scaled), where NeurIK stands in for the InverseKinematicsTool: real markers sit
    # 14-17 mm (acromia 60-80 mm) from the model's, IK bends the trunk towards them, and a network
    # taught the generating pose treats that as placement error (3.3 deg from OpenSim on gait2354).
    target: str = "fk"
    ik: IKTargetConfig = IKTargetConfig()
    # Replay pool (synth.WindowPool), in frames: windows are kept and a few new ones drawn per
    # step. 0 draws every batch afresh; None: 0 for cheap "fk" targets, 65536 frames for "ik"
    # targets, 96 of them new per step: at 768 frames a step IK's cost falls 8x (it would
    # otherwise be most of a step) and each frame is seen ~8 times.
    pool_frames: int | None = None
    pool_refresh_frames: int = 96
    synth: SynthConfig = SynthConfig()
    loss: LossWeights = LossWeights()


# Lab models already scaled to the subject (train-neurik --subject-scaled): learn OpenSim IK's
# answer on the model with a per-frame network. Measured on the two lab trials under the same
# 10-min budget on the shared CPU: the 16-frame window transformer reached 3.2 deg (gait2354,
# 1032 steps), the per-frame network 2.1 deg (1441 steps of 768 independent poses) -- the
# window's frames are correlated, so a step of 48 windows teaches less than 768 frames, and IK
# itself answers frame by frame. The marker loss is off: with IK targets the coordinates and the
# root pose are exact targets already, and the Skeleton pass costs a third of a step; the root
# orientation term takes its place (weight 1). Lr 3e-3: per-frame batches of 768 are less noisy.
LAB_IK = TrainConfig(steps=6000, batch=768, lr=3e-3, synth=dataclasses.replace(SUBJECT_SCALED, window=1),
                     loss=LossWeights(markers=0.0, root_rotation=1.0), target="ik")


@dataclasses.dataclass(frozen=True)
class TrainReport:
    """What a run did: steps done in total, wall seconds in total, the last loss, checkpoint path."""

    path: Path
    steps: int
    seconds: float
    loss: float
    coord_error_deg: float


@dataclasses.dataclass(frozen=True, eq=False)
class Losses:
    total: Tensor
    coord_error_deg: float


def default_config(sk, marker_names: Sequence[str], **overrides) -> NeurIKConfig:
    """NeurIKConfig sized for ``sk`` and ``marker_names`` (overrides: any other field).

    A window of one frame gets no temporal transformer (nothing to attend to) unless asked for.
    """
    layout = build_layout(sk, marker_names)
    if overrides.get("window") == 1:
        overrides.setdefault("temporal_layers", 0)
    return NeurIKConfig(n_markers=len(marker_names), n_predicted=int(layout.predicted.numel()),
                        n_bodies=len(sk.body_names), predict_root=layout.has_root, **overrides)


def _check_config(cfg: NeurIKConfig, layout: ModelLayout, sk, synth: SynthConfig) -> None:
    want = (len(layout.marker_names), int(layout.predicted.numel()), len(sk.body_names))
    have = (cfg.n_markers, cfg.n_predicted, cfg.n_bodies)
    if want != have:
        raise InputError(f"NeurIKConfig (markers, coordinates, bodies) = {have} does not fit the model {want}; "
                         "build it with neurik.default_config(sk, marker_names)")
    if cfg.window != synth.window:
        raise InputError(f"network window {cfg.window} != synthetic window {synth.window}")


def compute_losses(batch: SynthBatch, inp: WindowInput, dec: Decoded, sk, layout: ModelLayout,
                   marker_w: Tensor, w: LossWeights) -> Losses:
    """Training losses for one batch (see LossWeights for units)."""
    b, t, _ = dec.q.shape
    pred = layout.predicted
    err = dec.q[..., pred] - batch.q[..., pred]
    total = w.coords * torch.nn.functional.smooth_l1_loss(err, torch.zeros_like(err), beta=0.01)
    if t > 2:
        acc = err[:, 2:] - 2 * err[:, 1:-1] + err[:, :-2]
        total = total + w.smoothness * acc.abs().mean()
    lo, hi = layout.lower[pred].float(), layout.upper[pred].float()
    clamped = layout.clamped[pred]
    over = (torch.relu(dec.q[..., pred] - hi) + torch.relu(lo - dec.q[..., pred])) * clamped
    total = total + w.range_violation * over.mean()
    scales = dec.scales.expand(b, -1, -1) if dec.scales is not None else None
    if dec.scales is not None:
        total = total + w.scales * (torch.log(dec.scales) - batch.log_scales).abs().mean()
    frame = inp.frame
    if dec.root_local is not None:
        rl, pl = dec.root_local.rotation, dec.root_local.position
        true = target_in_frame(batch.root, frame)
        total = total + w.root_rotation * (rl - true.rotation).abs().mean() + w.root_position * (pl - true.position).abs().mean()
    if w.markers > 0:      # the forward pass through the Skeleton is a third of a step: skip it when unused
        total = total + w.markers * _marker_loss(batch, dec, sk, layout, frame, scales, marker_w)
    rot = layout.rotational[pred]
    deg = err[..., rot].abs().mean().item() * 180 / math.pi if bool(rot.any()) else 0.0
    return Losses(total, deg)


def _marker_loss(batch: SynthBatch, dec: Decoded, sk, layout: ModelLayout, frame, scales: Tensor | None,
                 marker_w: Tensor) -> Tensor:
    """Weighted mean distance (m) of the predicted markers (through ``Skeleton.forward``) from the targets'."""
    b, t, _ = dec.q.shape
    out = sk.forward(dec.q.reshape(b * t, -1),
                     scales=scales.repeat_interleave(t, 0) if scales is not None else None)
    markers = out.markers[:, layout.marker_index].reshape(b, t, -1, 3)
    target = to_frame(batch.clean_markers, frame.rotation, frame.position)
    if dec.root_local is not None:
        tf = out.body_transforms[:, layout.root_body].reshape(b, t, 4, 4)
        in_root = to_frame(markers, tf[..., :3, :3], tf[..., :3, 3])         # markers in the root body
        rl, pl = dec.root_local.rotation, dec.root_local.position
        markers = (in_root.unsqueeze(-2) @ rl.transpose(-1, -2).unsqueeze(2)).squeeze(-2) + pl.unsqueeze(2)
    else:
        markers = to_frame(markers, frame.rotation, frame.position)
    dist = (markers - target).norm(dim=-1)                                   # (B,T,M)
    return (dist * marker_w).mean()


def _lr_factor(step: int, steps: int, warmup: int, progress: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = torch.as_tensor(v)
    return out


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _meta(sk, layout: ModelLayout, weights: Sequence[float], cfg: NeurIKConfig, tcfg: TrainConfig,
          steps: int, seconds: float) -> CheckpointMeta:
    return CheckpointMeta(
        coordinate_names=tuple(sk.coordinate_names), marker_names=layout.marker_names,
        marker_weights=tuple(float(x) for x in weights), model_hash=sk.model_hash, config=cfg,
        synth={**dataclasses.asdict(tcfg.synth), "target": tcfg.target, "ik": dataclasses.asdict(tcfg.ik)},
        steps=steps, train_seconds=seconds,
        model_file=str(getattr(sk, "model_path", "")))


def _resume(out_path: Path, net: NeurIKNet, opt, g: torch.Generator, sk, cfg: NeurIKConfig) -> tuple[int, float]:
    if not out_path.is_file():
        return 0, 0.0
    tensors, meta = load_checkpoint(out_path)
    if meta.model_hash != sk.model_hash or meta.config != cfg:
        raise CheckpointError(f"cannot resume {out_path}: it was trained for another model or network config; "
                              "pass a new --out path or delete the file")
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state = load_state(out_path)
    if state is None:
        return meta.steps, meta.train_seconds
    st, info = state
    _restore_optimizer(opt, st)
    if "rng.synth" in st:
        g.set_state(st["rng.synth"])
    return int(info.get("steps", meta.steps)), float(info.get("seconds", meta.train_seconds))


def _build_pool(synth: SyntheticMotion, tcfg: TrainConfig, g: torch.Generator) -> WindowPool | None:
    frames = tcfg.pool_frames if tcfg.pool_frames is not None else _DEFAULT_POOL[tcfg.target]
    window = tcfg.synth.window
    size = min(frames // window, tcfg.steps * tcfg.batch)     # never more than the run will draw
    refresh = max(1, tcfg.pool_refresh_frames // window)
    return WindowPool(synth, size, refresh, g) if size else None


def train_neurik(sk, marker_names: Sequence[str], marker_weights: Sequence[float] | None,
                 cfg: NeurIKConfig | None, train_cfg: TrainConfig, out_path: str | os.PathLike[str],
                 resume: bool = True, progress: bool = True,
                 coordinate_tasks: CoordinateTargets | None = None) -> TrainReport:
    """Train (or continue training) NeurIK for ``sk`` reading ``marker_names``; write ``out_path``.

    Args:
        sk: Skeleton of the model (any dtype; training runs in float32 on a copy).
        marker_names: markers the network reads, in checkpoint order.
        marker_weights: IK task weights of those markers (None: all 1); they weight the marker loss.
        cfg: network config (None: :func:`default_config`).
        train_cfg: steps, batch, seed, synthetic-data settings.
        out_path: checkpoint (.safetensors); with ``resume`` an existing one is continued.
        coordinate_tasks: the IK setup's coordinate tasks; used by the "ik" target only.
    """
    if train_cfg.target not in TARGETS:
        raise InputError(f"unknown training target {train_cfg.target!r}; choose one of {sorted(TARGETS)}")
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    out_path = Path(out_path)
    sk32 = sk.to(dtype=torch.float32)
    layout = build_layout(sk32, marker_names)
    # IK on the given model has no scale factors to predict.
    cfg = cfg or default_config(sk32, marker_names, window=train_cfg.synth.window,
                                predict_scales=train_cfg.target != "ik")
    _check_config(cfg, layout, sk32, train_cfg.synth)
    weights = list(marker_weights) if marker_weights is not None else [1.0] * len(marker_names)
    if len(weights) != len(marker_names) or any(x < 0 for x in weights):
        raise InputError(f"need one non-negative weight per marker ({len(marker_names)}), got {len(weights)}")
    marker_w = torch.tensor(weights, dtype=torch.float32)
    marker_w = marker_w / marker_w.mean().clamp_min(1e-9)
    torch.manual_seed(train_cfg.seed)
    net = build_neurik(cfg)
    g = torch.Generator().manual_seed(train_cfg.seed)
    retarget = TARGETS[train_cfg.target](TargetContext(sk, layout, torch.tensor(weights), coordinate_tasks, train_cfg.ik))
    held = (coordinate_tasks.index, coordinate_tasks.values) if (
        coordinate_tasks is not None and coordinate_tasks.values.ndim == 1 and coordinate_tasks.index.numel()) else None
    synth = SyntheticMotion(sk32, layout, train_cfg.synth, marker_weights=torch.tensor(weights), retarget=retarget,
                            held=held)
    opt = torch.optim.AdamW(net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    step, seconds = _resume(out_path, net, opt, g, sk, cfg) if resume else (0, 0.0)
    t_fill = time.monotonic()
    pool = _build_pool(synth, train_cfg, g)
    seconds += time.monotonic() - t_fill   # filling the pool is part of the training time
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=train_cfg.steps, initial=step, desc="train-neurik", unit="step", dynamic_ncols=True)
    t0 = time.monotonic() - seconds
    last_save = time.monotonic()
    loss_v, deg = float("nan"), float("nan")
    budget = train_cfg.minutes * 60 if train_cfg.minutes else None
    net.train()
    while step < train_cfg.steps:
        elapsed = time.monotonic() - t0
        if budget is not None and elapsed >= budget:
            break
        progress_frac = step / train_cfg.steps if budget is None else max(step / train_cfg.steps, elapsed / budget)
        for group in opt.param_groups:
            group["lr"] = train_cfg.lr * _lr_factor(step, train_cfg.steps, train_cfg.warmup, progress_frac)
        with torch.no_grad():
            batch = pool.draw(train_cfg.batch, g) if pool is not None else synth.sample(train_cfg.batch, g)
        inp = window_features(batch.markers, batch.visible, layout)
        dec = decode(net(inp.relative, inp.visible, inp.centroid), inp, layout)
        losses = compute_losses(batch, inp, dec, sk32, layout, marker_w, train_cfg.loss)
        opt.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), train_cfg.grad_clip)
        opt.step()
        step += 1
        loss_v = 0.98 * loss_v + 0.02 * losses.total.item() if math.isfinite(loss_v) else losses.total.item()
        deg = 0.98 * deg + 0.02 * losses.coord_error_deg if math.isfinite(deg) else losses.coord_error_deg
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.4f}", err_deg=f"{deg:.2f}")
        if time.monotonic() - last_save > train_cfg.save_every_s:
            _save(out_path, net, opt, g, sk, layout, weights, cfg, train_cfg, step, time.monotonic() - t0)
            last_save = time.monotonic()
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - t0
    _save(out_path, net, opt, g, sk, layout, weights, cfg, train_cfg, step, seconds)
    return TrainReport(out_path, step, seconds, loss_v, deg)


def _save(out_path: Path, net: NeurIKNet, opt, g: torch.Generator, sk, layout: ModelLayout,
          weights: Sequence[float], cfg: NeurIKConfig, tcfg: TrainConfig, step: int, seconds: float) -> None:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    save_checkpoint(out_path, tensors, _meta(sk, layout, weights, cfg, tcfg, step, seconds))
    state = _optimizer_tensors(opt)
    state["rng.synth"] = g.get_state()
    save_state(out_path, state, {"steps": step, "seconds": seconds})
