"""Error metrics of the rendered-video benchmark on constructed differences (pure numpy)."""
from __future__ import annotations

import numpy as np
import pytest

from opensim_biopose.render.truth import (dof_rmse_deg, left_right_swap_share, pelvis_translation_error_mm,
                                          root_relative_marker_error_mm)

NAMES = ("pelvis_tilt", "pelvis_tx", "pelvis_ty", "pelvis_tz", "knee_angle_r", "knee_angle_l")


def _q(frames: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.3, (frames, len(NAMES)))


def test_dof_rmse_averages_left_and_right_in_degrees() -> None:
    truth = _q()
    pred = truth.copy()
    pred[:, NAMES.index("knee_angle_r")] += np.radians(6.0)
    pred[:, NAMES.index("pelvis_tilt")] -= np.radians(2.0)
    rmse = dof_rmse_deg(NAMES, pred, truth, ("pelvis_tilt", "knee_angle"))
    assert rmse["knee_angle"] == pytest.approx(3.0)          # (6 + 0) / 2
    assert rmse["pelvis_tilt"] == pytest.approx(2.0)


def test_pelvis_translation_ignores_the_horizontal_origin_but_not_height() -> None:
    truth = _q()
    pred = truth.copy()
    pred[:, NAMES.index("pelvis_tx")] += 0.7                 # another ground origin: not an error
    pred[:, NAMES.index("pelvis_tz")] -= 0.2
    assert pelvis_translation_error_mm(NAMES, pred, truth) == pytest.approx(0.0, abs=1e-9)
    pred[:, NAMES.index("pelvis_ty")] += 0.03                # 30 mm too high is
    assert pelvis_translation_error_mm(NAMES, pred, truth) == pytest.approx(30.0)


def test_marker_metrics_see_offsets_and_left_right_swaps() -> None:
    names = ("RASI", "LASI", "RPSI", "LPSI", "RKNE", "LKNE", "RANK", "LANK", "C7")
    rng = np.random.default_rng(1)
    truth = rng.normal(0.0, 0.3, (10, len(names), 3))
    shifted = truth + np.array([0.4, 0.0, -1.0])             # whole body elsewhere: root-relative error 0
    assert root_relative_marker_error_mm(names, shifted, names, truth) == pytest.approx(0.0, abs=1e-9)
    assert left_right_swap_share(names, shifted, names, truth) == 0.0
    mirror = [names.index(n.replace("R", "#").replace("L", "R").replace("#", "L")) if n != "C7" else names.index(n)
              for n in names]
    swapped = truth.copy()
    swapped[5:] = truth[5:, mirror]                          # half the frames with sides exchanged
    assert left_right_swap_share(names, swapped, names, truth) == pytest.approx(0.5)
    assert root_relative_marker_error_mm(names, swapped, names, truth) > 100.0
