"""Synthetic training windows generated from the OpenSim model itself, on the fly.

Each window is T frames of one subject: coordinates inside the model's ranges (smooth random
motion, or a gait / squat / sit-to-stand / jump pattern with random amplitudes), random
per-segment scale factors, systematic marker placement offsets (constant over the window, in
the body frames: real markers sit 14-17 mm from a registered model's markers, a few 25-80 mm),
measurement noise, missing markers and frames, random heading, position and walking speed.
Markers come from :meth:`Skeleton.forward`. Everything is a batched tensor op; a batch of
32 windows x 32 frames costs one forward pass.

Units: rad / m inside; ground frame Y-up.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import torch
from torch import Tensor

from opensim_biopose.neurik.frames import yaw_matrix
from opensim_biopose.neurik.layout import ModelLayout, RootPose, body_pose
from opensim_biopose.neurik.targets import Targets

DEG = math.pi / 180.0


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """How synthetic windows are drawn. Defaults suit a generic (unscaled) model and video markers."""

    window: int = 16                       # frames per window; must match the network's window
    fps_range: tuple[float, float] = (25.0, 120.0)   # video 25-60 fps, lab 60-120 Hz
    # Share of windows per motion pattern (see PATTERNS); smooth random motion keeps the
    # whole range covered, the patterns put weight on postures people actually adopt.
    pattern_weights: tuple[tuple[str, float], ...] = (
        ("smooth", 0.4), ("gait", 0.3), ("squat", 0.1), ("sit_to_stand", 0.1), ("jump", 0.1),
    )
    # Smooth random motion: each coordinate is a centre plus 3 sinusoids in this band.
    frequency_range_hz: tuple[float, float] = (0.1, 2.5)
    # Rotations of unbounded/wide joints are drawn within default +- this (rad): beyond a
    # half turn nothing is anatomical.
    max_rotation_excursion: float = 100 * DEG
    # ... and within default +- this for unclamped coordinates (placeholder ranges); the
    # gait/squat/jump patterns still reach further (e.g. 125 deg of knee flexion).
    unclamped_rotation_excursion: float = 50 * DEG
    # Root (floating-base) rotations: +- this around zero; heading comes from a global yaw.
    root_rotation_range: float = 35 * DEG
    root_height_jitter: float = 0.25        # m, root translation coordinates +- this around default
    walk_speed_range: tuple[float, float] = (0.0, 2.0)   # m/s progression of gait windows
    position_range: float = 3.0             # m, horizontal placement in the lab
    # Scale factors: exp(global + per-body + per-axis) with uniform log-ranges.
    global_scale: float = 0.15              # +-15 % height: adults
    body_scale: float = 0.06
    axis_scale: float = 0.03
    # Systematic marker offsets in the body frame (soft tissue, placement/registration error).
    offset_std: float = 0.009              # m per axis -> ~15 mm typical distance
    large_offset_prob: float = 0.1          # share of markers with a large offset ...
    large_offset_range: tuple[float, float] = (0.025, 0.08)  # ... of this length (m)
    # Markers the IK setup weights less are trusted less: their offsets are scaled by
    # (mean weight / weight) ** this, clipped to offset_scale_clip. The network then leans on
    # the markers the experimenter trusts, as OpenSim IK does.
    offset_weight_power: float = 0.5
    offset_scale_clip: tuple[float, float] = (0.5, 3.0)
    noise_std_range: tuple[float, float] = (0.0005, 0.012)    # m, iid per frame (lab ... video)
    missing_marker_prob: float = 0.08       # mean share of markers absent for a whole window
    dropout_prob: float = 0.02              # per frame and marker
    missing_frame_prob: float = 0.01        # whole frames without any marker
    # Per-window offset added to a pattern's coordinate family: uniform over this width (deg);
    # families not named get 10 deg (+-5).
    pattern_jitter_deg: tuple[tuple[str, float], ...] = ()


# Lab motion capture on a model already scaled to the subject: segment dimensions known to a
# few percent, optical noise of a millimetre or two, few gaps. Registered markers still sit
# off the model's (gait2354 lab trial at the OpenSim IK answer: most 2-15 mm, both acromions
# 60-80 mm), so large offsets stay as frequent as in the default.
# Subjects lean their trunk differently, and torso marker registration shifts lumbar extension
# further (gait2354's subject walks at -18..-20 deg, Rajagopal's at -7..-12): the patterns'
# lumbar extension varies +-20 deg between windows instead of +-5.
SUBJECT_SCALED = SynthConfig(global_scale=0.03, body_scale=0.03, axis_scale=0.01,
                             noise_std_range=(0.0005, 0.004), missing_marker_prob=0.03,
                             pattern_jitter_deg=(("lumbar_extension", 40.0),))


@dataclasses.dataclass(frozen=True, eq=False)
class SynthBatch:
    """One batch of synthetic windows.

    Attributes:
        markers: (B, T, M, 3) observed markers in ground (m), NaN where missing.
        visible: (B, T, M) bool.
        clean_markers: (B, T, M, 3) model markers without offsets/noise (m), never NaN.
        q: (B, T, n) true coordinates (rad / m) as the Skeleton reports them (``q_full``).
        root: root body pose in ground per frame, rotation (B, T, 3, 3), position (B, T, 3).
        log_scales: (B, NB, 3) natural log of the segment scale factors.
        dt: (B,) seconds between frames.
    """

    markers: Tensor
    visible: Tensor
    clean_markers: Tensor
    q: Tensor
    root: RootPose
    log_scales: Tensor
    dt: Tensor


def _rows(batch: SynthBatch, fn: Callable[[Tensor], Tensor]) -> SynthBatch:
    """Apply ``fn`` to the leading (window) axis of every tensor of ``batch``."""
    root = RootPose(fn(batch.root.rotation), fn(batch.root.position))
    return SynthBatch(fn(batch.markers), fn(batch.visible), fn(batch.clean_markers), fn(batch.q), root,
                      fn(batch.log_scales), fn(batch.dt))


class WindowPool:
    """A replay pool of synthetic windows: costly targets (``"ik"``) are reused for several steps.

    Filled with ``size`` windows up front; each :meth:`draw` replaces the ``refresh`` oldest
    windows by new ones and returns a random batch. Every window is seen ~``batch / refresh``
    times over its life, so the target cost per training step falls by that factor while the
    data keep changing.
    """

    def __init__(self, synth: SyntheticMotion, size: int, refresh: int, g: torch.Generator,
                 chunk_frames: int = 1024) -> None:
        chunk = max(1, chunk_frames // synth.cfg.window)       # windows per sample() call while filling
        parts = [synth.sample(min(chunk, size - i), g) for i in range(0, size, chunk)]
        self.data = _concat(parts)
        self.synth, self.size, self.refresh, self.next = synth, size, min(refresh, size), 0

    def draw(self, b: int, g: torch.Generator) -> SynthBatch:
        """Refresh the oldest windows, then ``b`` windows drawn at random from the pool."""
        if self.refresh > 0:
            fresh = self.synth.sample(self.refresh, g)
            slots = (self.next + torch.arange(self.refresh)) % self.size
            for f in ("markers", "visible", "clean_markers", "q", "log_scales", "dt"):
                getattr(self.data, f)[slots] = getattr(fresh, f)
            self.data.root.rotation[slots] = fresh.root.rotation
            self.data.root.position[slots] = fresh.root.position
            self.next = int(slots[-1] + 1) % self.size
        idx = torch.randint(self.size, (b,), generator=g)
        return _rows(self.data, lambda x: x[idx])


def _concat(parts: list[SynthBatch]) -> SynthBatch:
    cat = torch.cat
    return SynthBatch(cat([p.markers for p in parts]), cat([p.visible for p in parts]),
                      cat([p.clean_markers for p in parts]), cat([p.q for p in parts]),
                      RootPose(cat([p.root.rotation for p in parts]), cat([p.root.position for p in parts])),
                      cat([p.log_scales for p in parts]), cat([p.dt for p in parts]))


# ---- coordinate families for the patterns (matched on names; absent ones are skipped) ----
_FAMILIES: dict[str, re.Pattern[str]] = {
    "hip_flexion": re.compile(r"^hip_flex(ion)?_(?P<side>[rl])$"),
    "hip_adduction": re.compile(r"^hip_add(uction)?_(?P<side>[rl])$"),
    "knee": re.compile(r"^knee_(angle|flex(ion)?)_(?P<side>[rl])$"),
    "ankle": re.compile(r"^ankle_(angle|flex(ion)?)_(?P<side>[rl])$"),
    "lumbar_extension": re.compile(r"^lumbar_ext(ension)?$"),
    "arm_flexion": re.compile(r"^(arm|shoulder)_flex(ion)?_(?P<side>[rl])$"),
    "elbow": re.compile(r"^elbow_flex(ion)?_(?P<side>[rl])$"),
}


def _families(names: tuple[str, ...]) -> dict[str, list[tuple[int, int]]]:
    """family -> [(coordinate index, side sign: 0 right/centre, 1 left)]."""
    out: dict[str, list[tuple[int, int]]] = {k: [] for k in _FAMILIES}
    for j, name in enumerate(names):
        for fam, pat in _FAMILIES.items():
            m = pat.match(name)
            if m:
                side = m.groupdict().get("side")
                out[fam].append((j, 1 if side == "l" else 0))
    return out


def _bump(phase: Tensor, centre: float, kappa: float) -> Tensor:
    """Smooth periodic bump (von Mises shape), 1 at ``centre``, in [0, 1]."""
    return torch.exp(kappa * (torch.cos(phase - centre) - 1.0))


# Pattern templates: family -> f(phase (B,T), depth (B,1)) in degrees of *flexion*
# (sign fixed per model from the coordinate's range). Gait shapes follow the textbook
# sagittal curves of walking (e.g. Perry & Burnfield, Gait Analysis, 2010): hip +25..-10,
# knee 5/15 (loading) / 60 (swing), ankle +10 dorsi / -15 plantar.
Template = Callable[[Tensor, Tensor], Tensor]
_GAIT: dict[str, Template] = {
    "hip_flexion": lambda p, a: a * (7.5 + 17.5 * torch.cos(p)),
    "hip_adduction": lambda p, a: a * (5.0 * torch.sin(p + 0.3)),
    "knee": lambda p, a: a * (3.0 + 15.0 * _bump(p, 0.94, 4.0) + 57.0 * _bump(p, 4.5, 3.0)),
    "ankle": lambda p, a: a * (8.0 * _bump(p, 2.8, 3.0) - 22.0 * _bump(p, 3.9, 6.0)),
    "lumbar_extension": lambda p, a: a * (-3.0 + 2.0 * torch.cos(2 * p)),
    "arm_flexion": lambda p, a: a * (-15.0 * torch.cos(p)),
    "elbow": lambda p, a: a * (25.0 - 10.0 * torch.cos(p)),
}
_SQUAT: dict[str, Template] = {
    "hip_flexion": lambda s, d: d * 110.0 * s,
    "knee": lambda s, d: d * 125.0 * s,
    "ankle": lambda s, d: d * 30.0 * s,
    "lumbar_extension": lambda s, d: -d * 25.0 * s,
    "arm_flexion": lambda s, d: d * 80.0 * s,
    "elbow": lambda s, d: 10.0 + d * 20.0 * s,
}
_SIT_TO_STAND: dict[str, Template] = {
    "hip_flexion": lambda s, d: d * 95.0 * s + 15.0 * _bump(s * math.pi, math.pi / 2, 4.0),
    "knee": lambda s, d: d * 95.0 * s,
    "ankle": lambda s, d: d * 12.0 * s,
    "lumbar_extension": lambda s, d: -d * 35.0 * _bump(s * math.pi, math.pi / 2, 2.0),
    "arm_flexion": lambda s, d: d * 30.0 * s,
    "elbow": lambda s, d: 20.0 + d * 10.0 * s,
}
_JUMP: dict[str, Template] = {
    "hip_flexion": lambda s, d: d * 80.0 * s - 8.0 * (1 - s),
    "knee": lambda s, d: d * 100.0 * s,
    "ankle": lambda s, d: d * 30.0 * s - 35.0 * (1 - s) ** 4,
    "lumbar_extension": lambda s, d: -d * 20.0 * s,
    "arm_flexion": lambda s, d: -40.0 * d * s + 120.0 * (1 - s) ** 3,
    "elbow": lambda s, d: 15.0 + 10.0 * s,
}


class SyntheticMotion:
    """Streams :class:`SynthBatch` windows for one Skeleton and marker list.

    ``sample(batch, generator)`` is deterministic given the generator's state.
    """

    def __init__(self, sk, layout: ModelLayout, cfg: SynthConfig, marker_weights: Tensor | None = None,
                 retarget: Callable[[Tensor, Tensor, Targets], Targets] | None = None,
                 held: tuple[Tensor, Tensor] | None = None) -> None:
        self.sk = sk
        # (index (K,), values (K,)): coordinates drawn at fixed values. An IK setup's coordinate
        # task (gait2354: subtalar and mtp at 0 with weight 1000) holds them there in OpenSim's
        # answer; drawn freely instead, IK's answer swings the hip rotation 7-9 deg to compensate.
        self.held = held
        # Replaces the generating pose by another training target (see neurik.targets); None keeps it.
        self.retarget = retarget
        self.layout = layout
        self.cfg = cfg
        self.offset_scale = self._offset_scale(marker_weights, len(layout.marker_names))
        self.dtype = torch.float32
        self.families = _families(layout.coordinate_names)
        n = layout.n_coordinates
        lo, hi = layout.lower.clone(), layout.upper.clone()
        d = layout.default_q
        rot = layout.rotational
        # Clamped ranges are anatomical: sample all of them. Unclamped ranges are often
        # placeholders (gait2354: +-120 deg for all three hip angles), and sampling them makes
        # Euler-angle triplets ambiguous; stay within default +- the unclamped excursion there.
        exc = torch.where(layout.clamped, cfg.max_rotation_excursion, cfg.unclamped_rotation_excursion)
        lo = torch.where(rot, torch.maximum(lo, d - exc), torch.maximum(lo, d - 0.3))
        hi = torch.where(rot, torch.minimum(hi, d + exc), torch.minimum(hi, d + 0.3))
        root = layout.root
        lo[root] = torch.where(layout.root_rotational, -cfg.root_rotation_range, d[root] - cfg.root_height_jitter)
        hi[root] = torch.where(layout.root_rotational, cfg.root_rotation_range, d[root] + cfg.root_height_jitter)
        self.sample_lo, self.sample_hi = lo, hi
        self.free = torch.zeros(n, dtype=torch.bool)
        self.free[layout.predicted] = True
        self.free[root] = True
        # Flexion sign per coordinate. OpenSim models agree on hip/ankle/lumbar/arm/elbow
        # (flexion, dorsiflexion positive) but not on the knee: gait2354's is -120..10 deg,
        # Rajagopal's 0..120 deg. The knee's sign follows the side its range extends to.
        self.flex_sign = torch.ones(layout.n_coordinates)
        for j, _ in self.families["knee"]:
            self.flex_sign[j] = 1.0 if layout.upper[j].abs() >= layout.lower[j].abs() else -1.0
        self.n_bodies = len(sk.body_names)
        names = [p for p, _ in cfg.pattern_weights]
        unknown = set(names) - set(PATTERNS)
        if unknown:
            raise ValueError(f"unknown synthetic patterns {sorted(unknown)}; known: {sorted(PATTERNS)}")
        self.pattern_names = names
        self.pattern_probs = torch.tensor([w for _, w in cfg.pattern_weights], dtype=torch.float64)
        self.jitter_deg = dict(cfg.pattern_jitter_deg)

    def _offset_scale(self, weights: Tensor | None, m: int) -> Tensor:
        """(M, 1) factor on each marker's placement offset from its IK weight."""
        if weights is None:
            return torch.ones(m, 1)
        w = torch.as_tensor(weights, dtype=torch.float32).clamp_min(1e-6)
        lo, hi = self.cfg.offset_scale_clip
        return ((w.mean() / w) ** self.cfg.offset_weight_power).clamp(lo, hi).unsqueeze(-1)

    # ---- coordinates -------------------------------------------------------------------
    def _smooth(self, b: int, t: Tensor, g: torch.Generator) -> Tensor:
        """(B, T, n) smooth random motion inside the sampling ranges."""
        n = self.layout.n_coordinates
        lo, hi = self.sample_lo.float(), self.sample_hi.float()
        span = hi - lo
        # Centres cluster around the default pose (where people spend their time) but reach
        # the range limits: a normal of 0.35 x span, clipped.
        d = self.layout.default_q.float().clamp(lo, hi)
        centre = torch.minimum(torch.maximum(d + 0.35 * span * torch.randn(b, 1, n, generator=g), lo), hi)
        amp_scale = torch.rand(b, 1, n, generator=g) * 0.5 * span
        f0, f1 = self.cfg.frequency_range_hz
        q = centre.expand(b, t.shape[1], n).clone()
        for k in range(1, 4):
            f = f0 + (f1 - f0) * torch.rand(b, 1, n, generator=g)
            phase = 2 * math.pi * torch.rand(b, 1, n, generator=g)
            q = q + amp_scale / k * torch.rand(b, 1, n, generator=g) * torch.sin(2 * math.pi * f * t.unsqueeze(-1) + phase)
        return q

    def _apply_template(self, q: Tensor, template: dict[str, Template], phase_of: Callable[[int], Tensor],
                        depth: Tensor, g: torch.Generator) -> Tensor:
        b = q.shape[0]
        for fam, members in self.families.items():
            fn = template.get(fam)
            if fn is None:
                continue
            for j, side in members:
                deg = fn(phase_of(side), depth)
                jitter = (torch.rand(b, 1, generator=g) - 0.5) * self.jitter_deg.get(fam, 10.0)
                q[:, :, j] = self.flex_sign[j] * (deg + jitter) * DEG
        return q

    def coordinates(self, pattern: str, b: int, t: Tensor, g: torch.Generator) -> Tensor:
        """(B, T, n) coordinates for ``pattern``; all families not in the pattern move smoothly."""
        q = self._smooth(b, t, g)
        if pattern == "smooth":
            return q
        # Other coordinates: keep their smooth motion but shrink it towards the default.
        d = self.layout.default_q.float()
        keep = self.layout.root
        shrunk = d + (q - d) * 0.35
        shrunk[:, :, keep] = q[:, :, keep]
        return PATTERNS[pattern](self, shrunk, t, g)

    # ---- full batch --------------------------------------------------------------------
    def _scales(self, b: int, g: torch.Generator) -> Tensor:
        c = self.cfg
        u = lambda *s: 2 * torch.rand(*s, generator=g) - 1  # noqa: E731
        return c.global_scale * u(b, 1, 1) + c.body_scale * u(b, self.n_bodies, 1) + c.axis_scale * u(b, self.n_bodies, 3)

    def _offsets(self, b: int, m: int, g: torch.Generator) -> Tensor:
        c = self.cfg
        small = torch.randn(b, m, 3, generator=g) * c.offset_std
        direction = torch.nn.functional.normalize(torch.randn(b, m, 3, generator=g), dim=-1)
        lo, hi = c.large_offset_range
        length = lo + (hi - lo) * torch.rand(b, m, 1, generator=g)
        large = torch.rand(b, m, 1, generator=g) < c.large_offset_prob
        return torch.where(large, direction * length, small) * self.offset_scale

    def _visibility(self, b: int, t: int, m: int, g: torch.Generator) -> Tensor:
        c = self.cfg
        p_missing = torch.rand(b, 1, 1, generator=g) * 2 * c.missing_marker_prob
        whole = torch.rand(b, 1, m, generator=g) < p_missing
        drop = torch.rand(b, t, m, generator=g) < c.dropout_prob
        frame = torch.rand(b, t, 1, generator=g) < c.missing_frame_prob
        return ~(whole | drop | frame)

    def sample(self, b: int, g: torch.Generator) -> SynthBatch:
        """Draw ``b`` windows (see :class:`SynthBatch` for shapes)."""
        c, lay = self.cfg, self.layout
        tw = c.window
        fps = c.fps_range[0] + (c.fps_range[1] - c.fps_range[0]) * torch.rand(b, generator=g)
        dt = 1.0 / fps
        t = torch.arange(tw, dtype=torch.float32).unsqueeze(0) * dt.unsqueeze(1)     # (B,T)
        which = torch.multinomial(self.pattern_probs, b, replacement=True, generator=g)
        q = torch.empty(b, tw, lay.n_coordinates)
        for k, name in enumerate(self.pattern_names):
            sel = (which == k).nonzero().flatten()
            if sel.numel():
                q[sel] = self.coordinates(name, sel.numel(), t[sel], g)
        q = torch.where(self.free, q, lay.default_q.float())
        if self.held is not None:
            q[..., self.held[0]] = self.held[1].float()
        q = torch.minimum(torch.maximum(q, lay.lower.float()), lay.upper.float())
        log_scales = self._scales(b, g)
        m_all = len(self.sk.marker_names)
        out = self.sk.forward(
            q.reshape(b * tw, -1).to(self.sk_dtype),
            scales=torch.exp(log_scales).repeat_interleave(tw, 0).to(self.sk_dtype),
        )
        clean = out.markers.reshape(b, tw, m_all, 3)[:, :, lay.marker_index].float()
        tf = out.body_transforms.reshape(b, tw, *out.body_transforms.shape[1:]).float()
        offsets = self._offsets(b, len(lay.marker_names), g)                       # body frame
        body_of = torch.as_tensor(self.sk.marker_body_index)[lay.marker_index]
        rot_m = tf[:, :, body_of, :3, :3]                                          # (B,T,M,3,3)
        observed = clean + (rot_m @ offsets.unsqueeze(1).unsqueeze(-1)).squeeze(-1)
        sigma = c.noise_std_range[0] + (c.noise_std_range[1] - c.noise_std_range[0]) * torch.rand(b, 1, 1, 1, generator=g)
        observed = observed + sigma * torch.randn(observed.shape, generator=g)
        target = Targets(out.q_full.reshape(b, tw, -1).float(), clean, tf, log_scales)
        visible = None
        if self.retarget is not None:
            visible = self._visibility(b, tw, len(lay.marker_names), g)
            target = self.retarget(observed, visible, target)
        root = body_pose(target.body_transforms, lay.root_body) if lay.has_root else RootPose(
            torch.eye(3).expand(b, tw, 3, 3), torch.zeros(b, tw, 3))
        observed, clean, root = self._place(observed, target.clean_markers, root, t, which, g)
        if visible is None:
            visible = self._visibility(b, tw, len(lay.marker_names), g)
        observed = torch.where(visible.unsqueeze(-1), observed, torch.nan)
        return SynthBatch(observed, visible, clean, target.q, root, target.log_scales, dt)

    @property
    def sk_dtype(self) -> torch.dtype:
        return getattr(self.sk, "dtype", torch.float64)

    def _place(self, observed: Tensor, clean: Tensor, root: RootPose, t: Tensor, which: Tensor,
               g: torch.Generator) -> tuple[Tensor, Tensor, RootPose]:
        """Random heading, horizontal position and (gait) walking progression of each window."""
        c = self.cfg
        b = observed.shape[0]
        if not self.layout.has_root:
            return observed, clean, root
        psi = (2 * torch.rand(b, generator=g) - 1) * math.pi
        ry = yaw_matrix(psi)                                                      # (B,3,3)
        shift = (2 * torch.rand(b, 3, generator=g) - 1) * c.position_range
        shift[:, 1] = 0.0
        gait = torch.tensor([self.pattern_names[int(k)] == "gait" for k in which])
        v0, v1 = c.walk_speed_range
        speed = torch.where(gait, v0 + (v1 - v0) * torch.rand(b, generator=g), torch.zeros(b))
        walk = torch.zeros(b, t.shape[1], 3)
        walk[:, :, 0] = speed.unsqueeze(1) * t                                   # along the model's +X
        def move(x: Tensor) -> Tensor:                                            # (B,T,M,3)
            x = x + walk.unsqueeze(2)
            return (x.unsqueeze(-2) @ ry.transpose(-1, -2)[:, None, None]).squeeze(-2) + shift[:, None, None]
        rot = ry[:, None] @ root.rotation
        pos = move(root.position.unsqueeze(2)).squeeze(2)
        return move(observed), move(clean), RootPose(rot, pos)


def _gait(sm: SyntheticMotion, q: Tensor, t: Tensor, g: torch.Generator) -> Tensor:
    b = q.shape[0]
    stride_hz = 0.75 + 0.8 * torch.rand(b, 1, generator=g)                     # walking .. running
    phase0 = 2 * math.pi * torch.rand(b, 1, generator=g)
    amp = 0.6 + 0.9 * torch.rand(b, 1, generator=g)
    phase = lambda side: 2 * math.pi * stride_hz * t + phase0 + math.pi * side  # noqa: E731
    return sm._apply_template(q, _GAIT, phase, amp, g)


def _cycle(b: int, t: Tensor, g: torch.Generator, hz: tuple[float, float]) -> Tensor:
    """(B, T) in [0, 1]: 0 upright, 1 deepest, a smooth repetition at a random rate."""
    f = hz[0] + (hz[1] - hz[0]) * torch.rand(b, 1, generator=g)
    phase0 = 2 * math.pi * torch.rand(b, 1, generator=g)
    return 0.5 * (1 - torch.cos(2 * math.pi * f * t + phase0))


def _periodic(template: dict[str, Template], hz: tuple[float, float]) -> Callable:
    def pattern(sm: SyntheticMotion, q: Tensor, t: Tensor, g: torch.Generator) -> Tensor:
        b = q.shape[0]
        s = _cycle(b, t, g, hz)
        depth = 0.3 + 0.7 * torch.rand(b, 1, generator=g)
        return sm._apply_template(q, template, lambda side: s, depth, g)
    return pattern


def _smooth(sm: SyntheticMotion, q: Tensor, t: Tensor, g: torch.Generator) -> Tensor:
    return q


# Registry of motion patterns: name -> f(SyntheticMotion, q (B,T,n) background motion, t (B,T) s, generator).
PATTERNS: dict[str, Callable[[SyntheticMotion, Tensor, Tensor, torch.Generator], Tensor]] = {
    "smooth": _smooth,
    "gait": _gait,
    "squat": _periodic(_SQUAT, (0.2, 0.6)),
    "sit_to_stand": _periodic(_SIT_TO_STAND, (0.15, 0.4)),
    "jump": _periodic(_JUMP, (0.4, 1.0)),
}
