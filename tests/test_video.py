"""VideoReader: upright frames, container timestamps, rotation metadata, bad files."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from opensim_biopose.errors import InputError
from opensim_biopose.io.video import VideoReader, read_frames_at


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write BGR uint8 frames as an mp4 (mpeg4 codec, available in every OpenCV build)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def set_rotation_90(path: Path) -> None:
    """Patch the mp4 track header's display matrix to 'rotate 90 degrees clockwise'.

    The matrix sits 44 bytes after the 'tkhd' tag in a version-0 track header
    (ISO/IEC 14496-12 TrackHeaderBox: version/flags, 5 x 32-bit fields, 8 reserved,
    layer, alternate group, volume, reserved, then the 3x3 matrix in 16.16/2.30 fixed point).
    """
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0
    data[at + 44:at + 80] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


MP4_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")


def set_sample_durations(path: Path, durations: list[int]) -> None:
    """Rewrite the mp4's time-to-sample table (stts) so frame i lasts durations[i] ticks:
    a variable-frame-rate file. Boxes enclosing stts grow by the same number of bytes; the
    writer puts moov after mdat, so no chunk offset moves. Keep the sum of durations (the
    edit list and header durations are left as they are)."""
    data = bytearray(path.read_bytes())
    ancestors: list[int] = []

    def find(start: int, end: int) -> tuple[int, int] | None:
        i = start
        while i < end:
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            if kind == b"stts":
                return i, size
            if kind in MP4_CONTAINERS:
                ancestors.append(i)
                hit = find(i + 8, i + size)
                if hit:
                    return hit
                ancestors.pop()
            i += size
        return None

    hit = find(0, len(data))
    assert hit is not None
    at, size = hit
    runs: list[list[int]] = []
    for d in durations:
        if runs and runs[-1][1] == d:
            runs[-1][0] += 1
        else:
            runs.append([1, d])
    body = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">II", c, d) for c, d in runs)
    box = struct.pack(">I4s", 8 + len(body), b"stts") + body
    data[at:at + size] = box
    for a in ancestors:
        data[a:a + 4] = struct.pack(">I", struct.unpack(">I", data[a:a + 4])[0] + len(box) - size)
    path.write_bytes(bytes(data))


def marked_frames(n: int, w: int = 160, h: int = 120) -> list[np.ndarray]:
    """Black frames with a white block in the top-left corner (40 x 20 px)."""
    frames = []
    for _ in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:20, :40] = 255
        frames.append(f)
    return frames


def white_extent(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image[..., 0] > 128)
    return int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())


def test_shared_portrait_video_is_upright_with_container_times() -> None:
    path = shared_path("videos", "pose2sim_singleperson_cam01.mp4")
    with VideoReader(path, max_frames=5) as reader:
        frames = list(reader)
        info = reader.info
    assert (info.width, info.height) == (1080, 1920)          # portrait: taller than wide
    assert info.fps == pytest.approx(60.0, rel=1e-3)
    assert [f.image.shape for f in frames] == [(1920, 1080, 3)] * 5
    times = np.array([f.time for f in frames])
    np.testing.assert_allclose(np.diff(times), 1 / 60, atol=1e-3)   # seconds


@pytest.mark.parametrize("backend_rotation", [True, False])
def test_rotation_metadata_is_applied(tmp_path: Path, backend_rotation: bool) -> None:
    path = write_video(tmp_path / "rot.mp4", marked_frames(3))
    set_rotation_90(path)
    with VideoReader(path, backend_rotation=backend_rotation) as reader:
        frame = next(iter(reader))
        assert reader.info.rotation_deg == 90
        assert (reader.info.width, reader.info.height) == (120, 160)
    assert frame.image.shape == (160, 120, 3)
    # rotated 90 deg clockwise, the top-left block lands in the top-right corner, 20 px wide, 40 tall
    x0, x1, y0, y1 = white_extent(frame.image)
    assert abs(x0 - 100) <= 2 and x1 >= 117 and y0 <= 2 and abs(y1 - 39) <= 2


def test_max_side_scales_frames_and_reports_scale(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", marked_frames(4))
    with VideoReader(path, max_side=80, max_frames=2) as reader:
        frames = list(reader)
    assert len(frames) == 2
    assert frames[0].image.shape == (60, 80, 3)
    assert frames[0].scale == pytest.approx(0.5)
    np.testing.assert_allclose([f.time for f in frames], [0.0, 0.04], atol=1e-3)


def test_variable_frame_rate_times_come_from_container(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)]
    path = write_video(tmp_path / "vfr.mp4", frames, fps=25.0)      # timescale 12800: 512 ticks/frame
    set_sample_durations(path, [256] * 4 + [768] * 4 + [512] * 2)  # 20 ms, 60 ms, 40 ms frames
    with VideoReader(path) as reader:
        got = list(reader)
    expected = [0.0, 0.02, 0.04, 0.06, 0.08, 0.14, 0.20, 0.26, 0.32, 0.36]
    np.testing.assert_allclose([f.time for f in got], expected, atol=1e-3)   # seconds
    # and the frames are the right ones, in order (grey level 20 i survives the codec)
    assert np.all(np.abs(np.array([f.image.mean() for f in got]) - 20 * np.arange(10)) < 6)


def test_iterating_twice_starts_over(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoReader(write_video(tmp_path / "v.mp4", frames)) as reader:
        first = [f.image.mean() for f in reader]
        second = [f.image.mean() for f in reader]
    assert len(first) == 5 and np.allclose(first, second)


def test_read_frames_at_returns_requested_indices(tmp_path: Path) -> None:
    frames = [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(8)]
    path = write_video(tmp_path / "v.mp4", frames)
    got = read_frames_at(path, [6, 2])
    assert sorted(got) == [2, 6]
    assert abs(float(got[6].image.mean()) - 120) < 6     # grey level survives the codec


def test_missing_video(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        VideoReader(tmp_path / "nope.mp4")


def test_empty_video_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        VideoReader(path)


def test_corrupt_video_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"this is not a video\n" * 200)
    with pytest.raises(InputError, match=r"corrupt\.mp4"):
        list(VideoReader(path))


def test_truncated_video_names_file(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", marked_frames(5))
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated.mp4"):
        list(VideoReader(bad))
