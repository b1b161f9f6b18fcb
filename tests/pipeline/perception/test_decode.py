"""Decoding: both backends, resampling, time range, resizing, bounds and error reasons."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from pipeline.perception.decode import DecodeConfig, DecodeError, check_last_frame, decode_video, output_size, plan_decode, probe_video
from pipeline.records import RejectReason

W, H, SRC_FPS, N = 320, 240, 30, 90


def _write_index_video(path, n=N, fps=SRC_FPS, width=W, height=H, extra=()):
    """Frame i shows the 8 bits of i as black/white vertical bands (survives compression)."""
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
           "-r", str(fps), "-i", "-", *extra, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12", str(path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    band = width // 8
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        for b in range(8):
            if (i >> b) & 1:
                frame[:, b * band : (b + 1) * band] = 255
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0


def _read_index(frames):
    width = frames.shape[2]
    return sum(((frames[:, frames.shape[1] // 2, int((b + 0.5) * width / 8), 1] > 127).astype(int) << b) for b in range(8))


def _decode(path, **kw):
    time_start, time_end = kw.pop("time_start", None), kw.pop("time_end", None)
    meta, batches = decode_video(str(path), DecodeConfig(**kw), time_start, time_end)
    batches = list(batches)
    frames = np.concatenate([b.frames for b in batches])
    return meta, batches, frames


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "index.mp4"
    _write_index_video(path)
    return path


def test_probe(index_video):
    info = probe_video(str(index_video))
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == pytest.approx(30.0) and info.num_frames == N
    assert info.duration_s == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("fps,time_start,time_end", [(25.0, None, None), (10.0, 1.0, 2.0), (12.5, 0.3, 1.9)])
def test_backends_agree_and_resample(index_video, fps, time_start, time_end):
    results = {}
    for backend in ("ffmpeg", "opencv"):
        meta, batches, frames = _decode(
            index_video, target_fps=fps, backend=backend, time_start=time_start, time_end=time_end, batch_frames=7
        )
        assert meta.backend == backend and meta.fps == fps
        assert all(len(b) <= 7 for b in batches)
        index = np.concatenate([b.frame_index for b in batches])
        np.testing.assert_array_equal(index, np.arange(len(index)))
        np.testing.assert_allclose(np.concatenate([b.frame_time for b in batches]), index / fps)
        results[backend] = _read_index(frames)
    np.testing.assert_array_equal(results["ffmpeg"], results["opencv"])
    shown = results["ffmpeg"]
    start = time_start or 0.0
    k = np.arange(len(shown))
    # Output frame k shows the last source frame earlier than (k + 0.5) / fps (+ start).
    expected = np.ceil((start + (k + 0.5) / fps) * SRC_FPS - 1e-6) - 1
    np.testing.assert_array_equal(shown, expected)
    duration = (time_end or N / SRC_FPS) - start
    assert abs(len(shown) - duration * fps) <= 1


def test_resize_bound_and_rgb(index_video):
    meta, _, frames = _decode(index_video, target_fps=None, max_side=160)
    assert (meta.width, meta.height) == (160, 120) and frames.shape == (N, 120, 160, 3)
    assert frames.dtype == np.uint8
    assert output_size(1920, 1080, 640, 640 * 480) == (640, 360)
    assert output_size(4000, 3000, 10000, 400 * 300) == (400, 300)


def test_rotation_metadata_gives_upright_frames(index_video, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(index_video), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)  # fmt: skip
    meta, _, frames = _decode(rotated, target_fps=None)
    assert meta.source.rotation in (90, 270)
    assert (meta.width, meta.height) == (H, W) and frames.shape[1:3] == (W, H)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(DecodeError) as info:
        decode_video(str(tmp_path / "nope.mp4"))
    assert info.value.reason == RejectReason.MISSING_FILE
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError) as info:
        decode_video(str(garbage))
    assert info.value.reason == RejectReason.UNREADABLE
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError) as info:
        decode_video(str(empty))
    assert info.value.reason == RejectReason.UNREADABLE


def test_no_video_stream(tmp_path):
    audio = tmp_path / "audio.m4a"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-t", "0.5", str(audio)], check=True)  # fmt: skip
    with pytest.raises(DecodeError) as info:
        decode_video(str(audio))
    assert info.value.reason == RejectReason.NO_VIDEO_STREAM


def test_bounds(index_video):
    with pytest.raises(DecodeError) as info:
        decode_video(str(index_video), DecodeConfig(max_duration_s=2.0))
    assert info.value.reason == RejectReason.TOO_LONG
    with pytest.raises(DecodeError) as info:
        decode_video(str(index_video), DecodeConfig(max_frames=20))
    assert info.value.reason == RejectReason.TOO_LONG
    with pytest.raises(DecodeError) as info:
        decode_video(str(index_video), DecodeConfig(), time_start=10.0)
    assert info.value.reason == RejectReason.ZERO_FRAMES
    for backend in ("ffmpeg", "opencv"):
        with pytest.raises(DecodeError) as info:
            list(decode_video(str(index_video), DecodeConfig(timeout_s=1e-4, backend=backend))[1])
        assert info.value.reason == RejectReason.TIMEOUT


def test_stream_can_be_abandoned(index_video):
    _, batches = decode_video(str(index_video), DecodeConfig(batch_frames=4))
    first = next(batches)
    assert len(first) == 4
    batches.close()  # stops the ffmpeg process without reading the rest


def test_check_last_frame_catches_a_truncated_file_that_still_probes(tmp_path):
    """A faststart mp4 cut in half keeps its header (it probes with the full duration) but
    cannot deliver its last frames: the cheap integrity check used by keypoint-only runs
    reports it as unreadable, while the intact file passes."""
    whole = tmp_path / "whole.mp4"
    _write_index_video(whole, extra=("-movflags", "+faststart"))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    config = DecodeConfig()
    check_last_frame(plan_decode(probe_video(str(whole)), config, None, None, backend="probe"))
    meta = plan_decode(probe_video(str(cut)), config, None, None, backend="probe")
    assert meta.expected_frames and meta.expected_frames > 0
    with pytest.raises(DecodeError) as excinfo:
        check_last_frame(meta)
    assert excinfo.value.reason == RejectReason.UNREADABLE
    assert "truncated" in str(excinfo.value) and "cut.mp4" in str(excinfo.value)


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-y", "-nostdin", "-loglevel", "error", *args], check=True)


def test_an_intact_mpeg_ts_named_mp4_passes_the_last_frame_check(tmp_path):
    """MPEG-TS has no seek index: an input seek returns nothing without an error. The check
    falls back to an output seek, so the intact stream passes; a cut faststart MP4 (header
    intact, data cut) still fails."""
    ts = tmp_path / "stream.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12", "-t", "1", "-c:v", "libx264", "-f", "mpegts", str(ts))
    source = probe_video(str(ts))
    meta = plan_decode(source, DecodeConfig(), None, None, backend="probe")
    assert meta.expected_frames == 12
    check_last_frame(meta)
    whole = tmp_path / "whole.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12", "-t", "1", "-c:v", "libx264", "-movflags", "+faststart", str(whole))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DecodeError) as excinfo:
        check_last_frame(plan_decode(probe_video(str(cut)), DecodeConfig(), None, None, backend="probe"))
    assert excinfo.value.reason == RejectReason.UNREADABLE and "re-download" in excinfo.value.message


@pytest.mark.parametrize("container,codec", [("mkv", "libx264"), ("webm", "libvpx")])
def test_a_matroska_or_webm_cut_in_half_is_an_unreadable_video(tmp_path, container, codec):
    """The header of a cut Matroska/WebM file still declares the whole duration while its
    packets stop half way: the video is reported truncated (never blamed on a sidecar
    whose frame ids run past the surviving packets), and the intact file probes fine."""
    whole = tmp_path / f"whole.{container}"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12", "-t", "2", "-c:v", codec, "-b:v", "200k", str(whole))
    assert probe_video(str(whole)).num_frames == 24
    cut = tmp_path / f"cut.{container}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DecodeError) as excinfo:
        check_last_frame(plan_decode(probe_video(str(cut)), DecodeConfig(), None, None, backend="probe"))
    assert excinfo.value.reason == RejectReason.UNREADABLE
    assert f"cut.{container}" in excinfo.value.message and "re-download" in excinfo.value.message


def test_a_webm_whose_audio_outlasts_its_video_is_not_truncated(tmp_path):
    av = tmp_path / "av.webm"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=1", "-f", "lavfi", "-i", "sine=duration=3",
            "-c:v", "libvpx", "-c:a", "libopus", str(av))  # fmt: skip
    meta = plan_decode(probe_video(str(av)), DecodeConfig(), None, None, backend="probe")
    check_last_frame(meta)
    assert meta.expected_frames == 12


def test_ffmpeg_messages_drop_memory_addresses():
    """ffmpeg's log prefixes carry a pointer that differs per process: a rejection message
    built from them must not (rows are the same on every run and runner)."""
    from pipeline.perception.decode import ffmpeg_text

    text = ffmpeg_text(b"[NULL @ 0x5592e585fe80] Invalid NAL unit size (3016 > 269).\n[h264 @ 0x55d2aa] error")
    assert text == "[NULL] Invalid NAL unit size (3016 > 269).\n[h264] error"
