"""Frame timing against the source: one output-to-source frame map for decoding, the
last-frame check and precomputed keypoints, and output rate = min(source,
target).

The map is checked exhaustively in pure Python over source rates x lengths x target
rates; a representative set of tiny real files (80x16, lossless, frame index written as
10 black/white bands) is generated once per module and decoded with both backends: the
shown source frame, the count (= ffprobe's), and the truncation check (intact files pass,
files cut at 30/70/99 % are rejected).
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from pipeline.perception.decode import (
    DecodeConfig,
    DecodeError,
    SourceInfo,
    check_last_frame,
    decode_video,
    plan_decode,
    probe_video,
    source_frame_index,
)
from pipeline.records import RejectReason

RATES = ("10", "12", "15", "24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")
TARGETS = (None, 10.0, 25.0, 30.0)
W, H, BITS = 80, 16, 10


def _lengths(rate: str) -> list[int]:
    fps = float(Fraction(rate))
    lengths = [1, 2, 3, 7, 16, 37, 101, round(4 * fps), round(10 * fps), round(10 * fps) + 1]
    if rate in ("24000/1001", "24"):
        lengths += list(range(216, 240))
    return sorted(set(lengths))


# ---------------------------------------------------------------------- pure Python


def _source(rate: str, n: int) -> SourceInfo:
    fps = float(Fraction(rate))
    return SourceInfo("clip.mp4", 320, 240, fps, n, n / fps, 0, "h264")


@pytest.mark.parametrize("rate", RATES)
def test_frame_map_over_rates_lengths_and_targets(rate):
    """Exhaustive: every (length, target) of the rate, whole clip and a time range."""
    fps = float(Fraction(rate))
    for n in _lengths(rate):
        source = _source(rate, n)
        for target in TARGETS:
            meta = plan_decode(source, DecodeConfig(target_fps=target), None, None)
            out_fps = min(fps, target) if target else fps
            assert meta.fps == out_fps, "the output rate never exceeds the source rate"
            expected = meta.expected_frames
            assert expected == int(np.floor(n / fps * out_fps + 0.5 + 1e-6))
            if expected == 0:  # shorter than half an output frame: ffmpeg's fps filter gives none
                continue
            shown = source_frame_index(meta, np.arange(expected))
            assert shown.min() >= 0 and shown.max() <= n - 1, (rate, n, target)
            assert (np.diff(shown) >= 0).all()
            if out_fps == fps:  # no resampling: frame k is source frame k, every frame once
                np.testing.assert_array_equal(shown, np.arange(n))
            else:  # downsampling never skips more than the rate ratio allows
                assert (np.diff(shown) >= 1).all() and (np.diff(shown) <= np.ceil(fps / out_fps)).all()
            # Each output frame shows a source frame from its own half-frame window.
            grid = np.arange(expected) / out_fps
            assert (np.abs(shown / fps - grid) <= 0.5 / out_fps + 1.0 / fps + 1e-9).all()
            # The truncation check's frame is the last one the plan shows: inside the stream.
            assert shown[-1] / fps < n / fps
            if n > 5:  # a time range inside the stream maps inside it too
                ranged = plan_decode(source, DecodeConfig(target_fps=target), 1.0 / fps, (n - 2) / fps)
                index = source_frame_index(ranged, np.arange(ranged.expected_frames))
                assert index.min() >= 1 and index.max() <= n - 2


def test_variable_rate_map_uses_frame_times():
    times = tuple(np.concatenate([np.arange(30) / 30.0, 1.0 + np.arange(30) / 15.0]))
    source = SourceInfo("vfr.mp4", 320, 240, 60 / 3.0, 60, 3.0, 0, "h264", frame_times=times)
    meta = plan_decode(source, DecodeConfig(target_fps=None), None, None)
    shown = source_frame_index(meta, np.arange(meta.expected_frames))
    # Every output frame shows the last source frame presented before its half-frame edge.
    edges = (np.arange(meta.expected_frames) + 0.5) / meta.fps
    want = np.searchsorted(np.asarray(times), edges, side="left") - 1
    np.testing.assert_array_equal(shown, want.clip(0, 59))


def test_bounds_scale_with_the_output_rate_and_name_the_option():
    slow = SourceInfo("street.avi", 768, 576, 10.0, 800, 80.0, 0, "mpeg4")
    meta = plan_decode(slow, DecodeConfig(), None, None)  # 80 s at 10 fps: 800 frames, not 2000
    assert meta.fps == 10.0 and meta.expected_frames == 800
    with pytest.raises(DecodeError) as info:
        plan_decode(_source("25", 25 * 80), DecodeConfig(), None, None)
    assert info.value.reason == RejectReason.TOO_LONG
    assert "max_duration_s=60" in info.value.message and '{"decode": {"max_duration_s": 80}}' in info.value.message
    with pytest.raises(DecodeError) as info:
        plan_decode(_source("25", 250), DecodeConfig(max_frames=100), None, None)
    assert "max_frames=100" in info.value.message and '"max_frames": 250' in info.value.message
    with pytest.raises(DecodeError) as info:
        plan_decode(SourceInfo("big.mp4", 8000, 8000, 25.0, 10, 0.4, 0, "h264"), DecodeConfig(), None, None)
    assert "max_source_pixels=" in info.value.message and '"max_source_pixels": 64000000' in info.value.message


# ---------------------------------------------------------------------- real files


def _encode(path, rate: str, n: int, extra_in=(), extra_out=()):
    """Lossless 80x16 clip whose frame i shows the 10 bits of i as bands."""
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}",
           "-r", rate, *extra_in, "-i", "-", *extra_out, "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]  # fmt: skip
    band = W // BITS
    frames = np.zeros((n, H, W), np.uint8)
    for b in range(BITS):
        frames[((np.arange(n) >> b) & 1).astype(bool), :, b * band : (b + 1) * band] = 255
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def _shown(frames: np.ndarray) -> np.ndarray:
    band = frames.shape[2] / BITS
    row = frames[:, frames.shape[1] // 2]
    return sum(((row[:, int((b + 0.5) * band), 1] > 127).astype(np.int64) << b) for b in range(BITS))


def _ffprobe_count(path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "json", str(path)], capture_output=True, check=True)  # fmt: skip
    return int(json.loads(out.stdout)["streams"][0]["nb_read_frames"])


REAL = [(rate, round(10 * float(Fraction(rate)))) for rate in RATES]
REAL += [("24000/1001", n) for n in (216, 223, 229, 235, 239)] + [("24", n) for n in (223, 235)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("rates")
    paths = {}
    for rate, n in REAL:
        path = root / f"r{rate.replace('/', '_')}_{n}.mp4"
        _encode(path, rate, n)
        paths[(rate, n)] = path
    return paths


def _checks(source) -> dict[int, object]:
    """One plan per distinct last source frame over the targets (the check's only input)."""
    plans = {}
    for target in TARGETS:
        meta = plan_decode(source, DecodeConfig(target_fps=target), None, None)
        plans.setdefault(int(source_frame_index(meta, np.array([meta.expected_frames - 1]))[0]), meta)
    return plans


@pytest.mark.slow
def test_real_clips_keep_their_frames_at_every_target(clips):
    """No intact clip is rejected; counts equal ffprobe's; each frame is the mapped one."""
    for (rate, n), path in clips.items():
        count = _ffprobe_count(path)
        assert count == n
        source = probe_video(str(path))
        assert source.num_frames == count and source.frame_times is None
        for meta in _checks(source).values():
            check_last_frame(meta)  # never raises on an intact file
        runs = [(None, "opencv"), (25.0, "opencv")]
        if (rate, n) in (("24000/1001", 229), ("10", 100), ("60", 600)):
            runs += [(10.0, "opencv"), (30.0, "opencv"), (25.0, "ffmpeg"), (10.0, "ffmpeg")]
        for target, backend in runs:
            meta, batches = decode_video(str(path), DecodeConfig(target_fps=target, backend=backend))
            frames = np.concatenate([b.frames for b in batches])
            assert len(frames) == meta.expected_frames, (rate, n, target, backend)
            if target is None:
                assert len(frames) == count
            np.testing.assert_array_equal(_shown(frames), source_frame_index(meta, np.arange(len(frames))))


@pytest.mark.slow
@pytest.mark.parametrize("key", [("24000/1001", 229), ("30", 300), ("12", 120)])
def test_cut_clips_are_rejected_as_truncated(clips, key, tmp_path):
    whole = clips[key]
    data = whole.read_bytes()
    for percent in (30, 70, 99):
        cut = tmp_path / f"cut{percent}.mp4"
        cut.write_bytes(data[: len(data) * percent // 100])
        for meta in _checks(probe_video(str(cut))).values():
            with pytest.raises(DecodeError) as info:
                check_last_frame(meta)
            assert info.value.reason == RejectReason.UNREADABLE and "truncated" in info.value.message
            assert cut.name in info.value.message
        for backend in ("opencv", "ffmpeg") if percent == 70 else ("opencv",):
            with pytest.raises(DecodeError) as info:
                list(decode_video(str(cut), DecodeConfig(target_fps=25.0, backend=backend))[1])
            assert info.value.reason == RejectReason.UNREADABLE and "truncated" in info.value.message


def test_nonzero_start_time(tmp_path):
    """A stream whose first frame is presented at 1.5 s: times count from that frame."""
    path = tmp_path / "offset.mp4"
    _encode(path, "25", 60, extra_out=("-output_ts_offset", "1.5"))
    source = probe_video(str(path))
    assert source.start_time_s == pytest.approx(1.5, abs=0.05) and source.num_frames == 60
    for backend in ("opencv", "ffmpeg"):
        meta, batches = decode_video(str(path), DecodeConfig(target_fps=10.0, backend=backend), 0.4, 2.0)
        frames = np.concatenate([b.frames for b in batches])
        assert len(frames) == meta.expected_frames == 16
        np.testing.assert_array_equal(_shown(frames), source_frame_index(meta, np.arange(len(frames))))
    check_last_frame(plan_decode(source, DecodeConfig(), None, None))


def test_variable_frame_rate_file(tmp_path):
    """30 frames at 30 fps then 30 at 10 fps: the map follows the real frame times."""
    path = tmp_path / "vfr.mp4"
    _encode(path, "30", 60, extra_out=("-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "vfr"))
    source = probe_video(str(path))
    assert source.frame_times is not None and len(source.frame_times) == 60
    assert source.frame_times[31] - source.frame_times[30] == pytest.approx(0.1, abs=1e-3)
    for backend in ("opencv", "ffmpeg"):
        meta, batches = decode_video(str(path), DecodeConfig(target_fps=25.0, backend=backend))
        frames = np.concatenate([b.frames for b in batches])
        assert abs(len(frames) - meta.expected_frames) <= 1
        np.testing.assert_array_equal(_shown(frames), source_frame_index(meta, np.arange(len(frames))))
    check_last_frame(plan_decode(source, DecodeConfig(), None, None))
    cut = tmp_path / "vfr_cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 7 // 10])
    with pytest.raises(DecodeError):
        check_last_frame(plan_decode(probe_video(str(cut)), DecodeConfig(), None, None))


def test_tracking_frame_counts_keep_their_length_in_seconds():
    from pipeline.perception.perceive import tracking_at_rate
    from pipeline.perception.track import TrackingConfig

    base = TrackingConfig()
    assert tracking_at_rate(base, 25.0, 25.0) is base and tracking_at_rate(base, 30.0, 25.0) is base
    assert tracking_at_rate(base, 10.0, None) is base
    slow = tracking_at_rate(base, 10.0, 25.0)  # 10 fps footage: 0.4 s of detections, 0.8 s gaps
    assert (slow.min_track_length, slow.max_gap, slow.first_pass_max_gap, slow.velocity_window) == (4, 8, 3, 4)
    assert slow.max_people == base.max_people and slow.skip_penalty == base.skip_penalty
