"""Bounded, streaming video decoding at a fixed frame rate.

Two backends produce the same frames (RGB uint8, upright, resampled and resized):

* ``ffmpeg``: one ``ffmpeg`` subprocess (seek, ``fps`` + ``scale`` filters, raw RGB on a
  pipe). Measured faster on 720p sources (``bench/decode.py``, ``docs/perception.md``).
* ``opencv``: ``cv2.VideoCapture`` with the ffmpeg ``fps`` filter's frame choice in Python.
  Measured faster on small sources (Kinetics' usual 340p-360p): no subprocess start, no
  pipe copy.

``backend="auto"`` reads the metadata with ffprobe (rotation, duration), decodes with the
faster backend for the source size and falls back to the other one when the first fails
before producing a frame.

Frames are streamed in batches (:class:`FrameBatch`) so that a long clip is never held in
memory; the caller consumes the iterator and drops each batch. Every failure is raised as
a :class:`DecodeError` whose ``reason`` is a :class:`pipeline.records.RejectReason` code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.records import RejectReason

logger = logging.getLogger(__name__)

__all__ = [
    "DecodeConfig",
    "DecodeError",
    "FrameBatch",
    "SourceInfo",
    "VideoMeta",
    "decode_video",
    "plan_decode",
    "probe_video",
]

BACKENDS = ("auto", "ffmpeg", "opencv")


@dataclass(frozen=True)
class DecodeConfig:
    """Bounds and output format of decoding.

    Attributes:
        target_fps: output frame rate, Hz; None keeps the source rate.
        max_side: longest side of the output frames, pixels (never upscaled).
        max_pixels: most pixels (width x height) of one output frame.
        max_duration_s: longest clip (after the time range) that is decoded; longer clips
            are rejected as ``too_long``.
        max_frames: most output frames; a clip producing more is rejected as ``too_long``.
        max_source_pixels: largest source frame (width x height) that is decoded at all
            (guards against absurd resolutions); larger sources are ``unreadable``.
        timeout_s: wall-clock bound of the whole decode, seconds (``timeout``).
        batch_frames: frames per yielded :class:`FrameBatch`.
        backend: "auto" (ffprobe metadata, then OpenCV for sources up to
            ``opencv_max_source_pixels`` and ffmpeg above, each falling back to the
            other), "ffmpeg" or "opencv".
        threads: decoder threads for ffmpeg (0 = ffmpeg decides).
        opencv_max_source_pixels: "auto" decodes sources up to this size with OpenCV
            (measured faster there: no subprocess start, no pipe copy).
    """

    target_fps: float | None = 25.0
    max_side: int = 640
    max_pixels: int = 640 * 480
    max_duration_s: float = 60.0
    max_frames: int = 1800
    max_source_pixels: int = 4096 * 2304
    timeout_s: float = 300.0
    batch_frames: int = 32
    backend: str = "auto"
    threads: int = 0
    opencv_max_source_pixels: int = 640 * 480

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"DecodeConfig.backend={self.backend!r}; use one of {BACKENDS}.")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"DecodeConfig.target_fps={self.target_fps} must be > 0 or None.")
        for name in ("max_side", "max_pixels", "max_frames", "batch_frames", "max_source_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"DecodeConfig.{name} must be >= 1.")


class DecodeError(Exception):
    """A clip that cannot be decoded; ``reason`` is a RejectReason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SourceInfo:
    """What the container says about the source video stream.

    Attributes:
        path: the probed file.
        width, height: display size in pixels (after the rotation is applied).
        fps: average frame rate, Hz.
        num_frames: frames in the stream (None when the container does not say).
        duration_s: stream duration in seconds (None when unknown).
        rotation: display rotation in degrees as stored in the container, in [0, 360);
            decoded frames are always delivered upright.
        codec: codec name.
    """

    path: str
    width: int
    height: int
    fps: float
    num_frames: int | None
    duration_s: float | None
    rotation: int
    codec: str


@dataclass(frozen=True)
class VideoMeta:
    """The decode plan of one clip.

    Attributes:
        source: the probed source stream.
        fps: output frame rate, Hz.
        width, height: output frame size, pixels.
        time_start: source second of output frame 0.
        time_end: source second where the output ends (None: end of stream).
        expected_frames: output frames implied by the duration (None when unknown); the
            actual count is what the iterator yields.
        backend: the backend that decodes ("ffmpeg" or "opencv").
    """

    source: SourceInfo
    fps: float
    width: int
    height: int
    time_start: float
    time_end: float | None
    expected_frames: int | None
    backend: str

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy) factors from source display pixels to output pixels."""
        return self.width / self.source.width, self.height / self.source.height


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive output frames.

    Attributes:
        frames: (B, H, W, 3) uint8 RGB.
        frame_index: (B,) int64 output frame index (0 = first frame of the clip).
        frame_time: (B,) float64 seconds from the decoded clip start.
    """

    frames: np.ndarray
    frame_index: np.ndarray
    frame_time: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


# --------------------------------------------------------------------------- probing


def _local_path(uri: str) -> str | None:
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if "://" in uri:
        return None
    return uri


def _check_exists(uri: str) -> str:
    path = _local_path(uri)
    if path is None:
        return uri
    if not os.path.exists(path):
        raise DecodeError(RejectReason.MISSING_FILE, f"video file {uri} does not exist; check the input path.")
    if os.path.isdir(path):
        raise DecodeError(RejectReason.UNREADABLE, f"video path {uri} is a directory, not a video file.")
    if os.path.getsize(path) == 0:
        raise DecodeError(RejectReason.UNREADABLE, f"video file {uri} is empty (0 bytes); re-download it.")
    return path


def _ratio(text: str | None) -> float:
    if not text:
        return 0.0
    if "/" in text:
        num, den = text.split("/", 1)
        try:
            return float(num) / float(den) if float(den) != 0 else 0.0
        except ValueError:
            return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


def _rotation_of(stream: dict) -> int:
    rotation = 0.0
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            rotation = float(side["rotation"])
    tags = stream.get("tags", {}) or {}
    if "rotate" in tags:
        try:
            rotation = -float(tags["rotate"])
        except ValueError:
            pass
    return int(round(rotation)) % 360


def _probe_ffprobe(path: str, timeout_s: float) -> SourceInfo:
    cmd = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(RejectReason.TIMEOUT, f"ffprobe of {path} took more than {timeout_s:.0f} s.") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"ffprobe cannot read {path}: {detail[-1] if detail else 'unknown error'}; the file is not a video "
            "or is corrupt.",
        )
    info = json.loads(done.stdout.decode("utf-8", "replace") or "{}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    streams = [s for s in streams if not (s.get("disposition", {}) or {}).get("attached_pic")]
    if not streams:
        raise DecodeError(RejectReason.NO_VIDEO_STREAM, f"{path} has no video stream (audio-only or data file).")
    stream = streams[0]
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        raise DecodeError(RejectReason.UNREADABLE, f"{path}: video stream has no frame size; the file is corrupt.")
    rotation = _rotation_of(stream)
    if rotation in (90, 270):
        width, height = height, width
    fps = _ratio(stream.get("avg_frame_rate")) or _ratio(stream.get("r_frame_rate"))
    duration = _ratio(stream.get("duration")) or _ratio((info.get("format") or {}).get("duration")) or None
    nb = stream.get("nb_frames")
    num_frames = int(nb) if nb not in (None, "", "N/A") and str(nb).isdigit() else None
    if num_frames is None and duration and fps:
        num_frames = int(round(duration * fps))
    if not fps or fps <= 0 or fps > 1000:
        raise DecodeError(RejectReason.UNREADABLE, f"{path}: video stream has no usable frame rate ({fps}).")
    return SourceInfo(
        path=path,
        width=width,
        height=height,
        fps=float(fps),
        num_frames=num_frames,
        duration_s=float(duration) if duration else None,
        rotation=rotation,
        codec=str(stream.get("codec_name", "")),
    )


def _probe_opencv(path: str) -> SourceInfo:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DecodeError(RejectReason.UNREADABLE, f"OpenCV cannot open {path}; the file is not a video or is corrupt.")
        width = int(round(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        height = int(round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
    finally:
        cap.release()
    if width <= 0 or height <= 0:
        raise DecodeError(RejectReason.NO_VIDEO_STREAM, f"OpenCV finds no video stream in {path}.")
    if not fps or fps <= 0 or fps > 1000:
        raise DecodeError(RejectReason.UNREADABLE, f"{path}: video stream has no usable frame rate ({fps}).")
    if rotation in (90, 270):
        width, height = height, width
    return SourceInfo(
        path=path,
        width=width,
        height=height,
        fps=fps,
        num_frames=count if count > 0 else None,
        duration_s=count / fps if count > 0 else None,
        rotation=rotation,
        codec="",
    )


def _have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def probe_video(uri: str, backend: str = "auto", timeout_s: float = 60.0) -> SourceInfo:
    """Read the stream metadata of a video without decoding it.

    Args:
        uri: local path (or ``file://`` URI; other URLs are passed to ffprobe).
        backend: "auto", "ffmpeg" or "opencv".
        timeout_s: wall-clock bound of the probe.

    Raises:
        DecodeError: missing_file, unreadable, no_video_stream or timeout.
    """
    path = _check_exists(uri)
    if backend == "opencv" or (backend == "auto" and not _have_ffmpeg()):
        return _probe_opencv(path)
    try:
        return _probe_ffprobe(path, timeout_s)
    except DecodeError as exc:
        if backend == "auto" and exc.reason == RejectReason.UNREADABLE:
            try:
                return _probe_opencv(path)
            except DecodeError:
                pass
        raise


# --------------------------------------------------------------------------- planning


def check_last_frame(meta: VideoMeta, timeout_s: float = 30.0) -> None:
    """Decode the last frame of the plan, to catch truncated files cheaply.

    Used when a clip's frames are not otherwise decoded (precomputed keypoints and the
    keypoint-only initialiser): a file whose header survived but whose data was cut off
    probes fine, yet cannot deliver its last frames. Costs one seek and the decode of one
    group of pictures with ffmpeg (OpenCV's seek returns a stale frame instead of failing,
    so it is used only where ffmpeg is missing).

    Raises:
        DecodeError: ``unreadable`` when the frame cannot be decoded, ``timeout`` when the
            check takes longer than ``timeout_s``.
    """
    end = meta.time_end if meta.time_end is not None else meta.source.duration_s
    if end is None or meta.expected_frames is None or meta.expected_frames <= 0 or not _have_ffmpeg():
        return  # nothing to check against, or no ffmpeg to check with
    last_time = max(0.0, meta.time_start + (meta.expected_frames - 1) / meta.fps)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{last_time:.3f}", "-i", meta.source.path,
           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(RejectReason.TIMEOUT, f"{meta.source.path}: checking the last frame took over {timeout_s:.0f} s.") from exc
    if proc.returncode != 0 or len(proc.stdout) == 0:
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"{meta.source.path}: cannot decode the frame at {last_time:.2f} s although the container "
            f"says the video lasts {end:.2f} s; the file is probably truncated: re-download it.",
        )


def output_size(width: int, height: int, max_side: int, max_pixels: int) -> tuple[int, int]:
    """Output (width, height) keeping the aspect ratio, never upscaling, even-free."""
    factor = min(1.0, max_side / max(width, height), math.sqrt(max_pixels / (width * height)))
    return max(1, int(round(width * factor))), max(1, int(round(height * factor)))


def plan_decode(
    source: SourceInfo,
    config: DecodeConfig,
    time_start: float | None = None,
    time_end: float | None = None,
    backend: str = "ffmpeg",
) -> VideoMeta:
    """Decide output fps, size and time range, and apply the duration/pixel bounds.

    Raises:
        DecodeError: too_long, zero_frames (empty time range) or unreadable (huge frames).
    """
    if source.width * source.height > config.max_source_pixels:
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"{source.path}: source frames are {source.width}x{source.height}, more than "
            f"max_source_pixels={config.max_source_pixels}; raise the bound to decode it.",
        )
    start = max(0.0, float(time_start or 0.0))
    end = float(time_end) if time_end is not None else None
    if end is not None and end <= start:
        raise DecodeError(RejectReason.ZERO_FRAMES, f"{source.path}: empty time range [{start}, {end}] s.")
    stream_end = source.duration_s
    if stream_end is not None:
        if start >= stream_end:
            raise DecodeError(
                RejectReason.ZERO_FRAMES,
                f"{source.path}: time_start {start:.2f} s is past the end of the video ({stream_end:.2f} s).",
            )
        end = min(end, stream_end) if end is not None else None
    duration = (end if end is not None else stream_end) - start if (end is not None or stream_end) else None
    if duration is not None and duration > config.max_duration_s + 1e-6:
        raise DecodeError(
            RejectReason.TOO_LONG,
            f"{source.path}: clip lasts {duration:.1f} s, more than max_duration_s={config.max_duration_s:.0f}; "
            "give a time range or raise the bound.",
        )
    fps = float(config.target_fps) if config.target_fps else source.fps
    expected = int(round(duration * fps)) if duration is not None else None
    if expected is not None and expected > config.max_frames:
        raise DecodeError(
            RejectReason.TOO_LONG,
            f"{source.path}: clip would give {expected} frames at {fps:g} fps, more than "
            f"max_frames={config.max_frames}.",
        )
    width, height = output_size(source.width, source.height, config.max_side, config.max_pixels)
    return VideoMeta(
        source=source,
        fps=fps,
        width=width,
        height=height,
        time_start=start,
        time_end=end,
        expected_frames=expected,
        backend=backend,
    )


# --------------------------------------------------------------------------- ffmpeg


def _iter_ffmpeg(meta: VideoMeta, config: DecodeConfig, deadline: float) -> Iterator[FrameBatch]:
    src = meta.source
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", str(config.threads)]
    if meta.time_start > 0:
        cmd += ["-ss", f"{meta.time_start:.6f}"]
    cmd += ["-i", src.path]
    if meta.time_end is not None:
        cmd += ["-t", f"{meta.time_end - meta.time_start:.6f}"]
    filters = [f"fps=fps={meta.fps:.6f}"]
    if (meta.width, meta.height) != (src.width, src.height):
        filters.append(f"scale={meta.width}:{meta.height}:flags=area")
    cmd += ["-map", "0:v:0", "-an", "-sn", "-vf", ",".join(filters), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = meta.width * meta.height * 3
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _kill)
    watchdog.daemon = True
    watchdog.start()
    produced = 0
    try:
        while True:
            count = config.batch_frames
            batch = np.empty((count, meta.height, meta.width, 3), dtype=np.uint8)
            got = 0
            while got < count:
                view = memoryview(batch[got].reshape(-1))
                filled = 0
                while filled < frame_bytes:
                    n = proc.stdout.readinto(view[filled:])
                    if not n:
                        break
                    filled += n
                if filled < frame_bytes:
                    break
                got += 1
            if got:
                if produced + got > config.max_frames:
                    raise DecodeError(
                        RejectReason.TOO_LONG,
                        f"{src.path}: more than max_frames={config.max_frames} frames at {meta.fps:g} fps.",
                    )
                index = np.arange(produced, produced + got, dtype=np.int64)
                yield FrameBatch(batch[:got], index, index / meta.fps)
                produced += got
            if got < count:
                break
        proc.wait()
        if timed_out.is_set():
            raise DecodeError(RejectReason.TIMEOUT, f"decoding {src.path} took more than {config.timeout_s:.0f} s.")
        if proc.returncode != 0:
            stderr.seek(0)
            detail = stderr.read().decode("utf-8", "replace").strip().splitlines()
            message = f"ffmpeg failed on {src.path} (exit {proc.returncode}): {detail[-1] if detail else ''}"
            if produced == 0:
                raise DecodeError(RejectReason.UNREADABLE, message)
            logger.warning("%s; keeping the %d frames decoded before the error", message, produced)
        if produced == 0:
            raise DecodeError(RejectReason.ZERO_FRAMES, f"{src.path}: decoding produced no frame.")
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        stderr.close()


# --------------------------------------------------------------------------- OpenCV


def _iter_opencv(meta: VideoMeta, config: DecodeConfig, deadline: float) -> Iterator[FrameBatch]:
    import cv2

    src = meta.source
    cap = cv2.VideoCapture(src.path)
    if not cap.isOpened():
        raise DecodeError(RejectReason.UNREADABLE, f"OpenCV cannot open {src.path}.")
    produced = 0
    resize = (meta.width, meta.height) != (src.width, src.height)
    batch: list[np.ndarray] = []
    try:
        if meta.time_start > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, meta.time_start * 1000.0)
        end = meta.time_end
        source_index = -1
        previous: np.ndarray | None = None
        previous_time = -math.inf

        def emit(frame: np.ndarray):
            if resize:
                frame = cv2.resize(frame, (meta.width, meta.height), interpolation=cv2.INTER_AREA)
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

        def flush():
            nonlocal produced, batch
            index = np.arange(produced, produced + len(batch), dtype=np.int64)
            out = FrameBatch(np.stack(batch), index, index / meta.fps)
            produced += len(batch)
            batch = []
            return out

        def check_frame_cap():
            if produced + len(batch) >= config.max_frames:
                raise DecodeError(
                    RejectReason.TOO_LONG,
                    f"{src.path}: more than max_frames={config.max_frames} frames at {meta.fps:g} fps.",
                )

        while True:
            if time.monotonic() > deadline:
                raise DecodeError(RejectReason.TIMEOUT, f"decoding {src.path} took more than {config.timeout_s:.0f} s.")
            ok, frame = cap.read()
            source_index += 1
            if not ok:
                break
            stamp = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not stamp and source_index > 0:
                stamp = source_index / src.fps
            if stamp < meta.time_start - 0.5 / src.fps:
                continue
            if end is not None and stamp >= end - 1e-6:
                break
            now = stamp - meta.time_start
            # ffmpeg's fps filter (round=near): output frame k (time k/fps) shows the last
            # source frame earlier than (k + 0.5) / fps; match it so both backends agree.
            if previous is not None:
                while (produced + len(batch) + 0.5) / meta.fps <= now + 1e-9:
                    check_frame_cap()
                    batch.append(emit(previous))
                    if len(batch) == config.batch_frames:
                        yield flush()
            previous, previous_time = frame, now
        if previous is not None:
            last_time = previous_time + 1.0 / src.fps
            if end is not None:
                last_time = min(last_time, end - meta.time_start)
            while (produced + len(batch)) / meta.fps < last_time - 0.5 / meta.fps + 1e-9 or (
                produced + len(batch) == 0
            ):
                check_frame_cap()
                batch.append(emit(previous))
                if len(batch) == config.batch_frames:
                    yield flush()
        if batch:
            yield flush()
        if produced == 0:
            raise DecodeError(RejectReason.ZERO_FRAMES, f"{src.path}: decoding produced no frame.")
    finally:
        cap.release()


# --------------------------------------------------------------------------- entry point


def decode_video(
    uri: str,
    config: DecodeConfig = DecodeConfig(),
    time_start: float | None = None,
    time_end: float | None = None,
) -> tuple[VideoMeta, Iterator[FrameBatch]]:
    """Probe a video and return its decode plan plus a lazy iterator of frame batches.

    Args:
        uri: local video path.
        config: bounds and output format.
        time_start, time_end: source seconds to decode (Kinetics time range); None = whole.

    Returns:
        (meta, batches): ``batches`` yields :class:`FrameBatch` of RGB frames, upright, at
        ``meta.fps`` and ``meta.width x meta.height``. Close it (or exhaust it) to stop the
        decoder process.

    Raises:
        DecodeError: from probing and planning immediately, from decoding while iterating.
    """
    start_clock = time.monotonic()
    use_ffmpeg = config.backend == "ffmpeg" or (config.backend == "auto" and _have_ffmpeg())
    if config.backend == "ffmpeg" and not _have_ffmpeg():
        raise DecodeError(RejectReason.FAILED, "backend 'ffmpeg' asked for but ffmpeg/ffprobe are not on PATH.")
    source = probe_video(uri, "ffmpeg" if use_ffmpeg else "opencv", timeout_s=config.timeout_s)
    meta = plan_decode(source, config, time_start, time_end, backend="ffmpeg" if use_ffmpeg else "opencv")
    deadline = start_clock + config.timeout_s
    if not use_ffmpeg:
        return meta, _iter_opencv(meta, config, deadline)
    if config.backend == "ffmpeg":
        return meta, _iter_ffmpeg(meta, config, deadline)
    # auto: the measured faster backend for this source size first (docs/perception.md).
    primary = "opencv" if source.width * source.height <= config.opencv_max_source_pixels else "ffmpeg"
    meta = dataclasses.replace(meta, backend=primary)
    return meta, _with_fallback(meta, config, deadline, primary)


_ITERATORS = {"ffmpeg": _iter_ffmpeg, "opencv": _iter_opencv}


def _with_fallback(meta: VideoMeta, config: DecodeConfig, deadline: float, primary: str) -> Iterator[FrameBatch]:
    """The primary backend; the other one when it fails before producing a single frame."""
    secondary = "opencv" if primary == "ffmpeg" else "ffmpeg"
    produced = 0
    try:
        for batch in _ITERATORS[primary](meta, config, deadline):
            produced += len(batch)
            yield batch
        return
    except DecodeError as exc:
        if produced or exc.reason not in (RejectReason.UNREADABLE, RejectReason.ZERO_FRAMES):
            raise
        logger.info("%s could not decode %s (%s); trying %s", primary, meta.source.path, exc.message, secondary)
        first_error = exc
    try:
        yield from _ITERATORS[secondary](dataclasses.replace(meta, backend=secondary), config, deadline)
    except DecodeError as exc:
        raise DecodeError(first_error.reason, f"{first_error.message}; {secondary} fallback: {exc.message}") from exc
