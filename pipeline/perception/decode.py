"""Bounded, streaming video decoding at a fixed frame rate.

Two backends produce the same frames (RGB uint8, upright, resampled and resized):

* ``ffmpeg``: one ``ffmpeg`` subprocess (seek, ``fps`` + ``scale`` filters, raw RGB on a
  pipe). Measured faster on 720p sources (``bench/decode.py``, ``docs/perception.md``).
* ``opencv``: ``cv2.VideoCapture``, each output frame the source frame that
  :func:`source_frame_index` names (the ffmpeg ``fps`` filter's choice).
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
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from optimize.validate import choice, declare_ranges, integer, real, validate_fields
from pipeline.perception.ffmpeg_cli import decode_command, one_frame_command, packet_times_command, probe_command
from pipeline.records import RejectReason

logger = logging.getLogger(__name__)

__all__ = [
    "DecodeConfig",
    "DecodeError",
    "FrameBatch",
    "SourceInfo",
    "VideoMeta",
    "check_last_frame",
    "decode_video",
    "plan_decode",
    "probe_video",
    "source_frame_index",
]

BACKENDS = ("auto", "ffmpeg", "opencv")


@dataclass(frozen=True)
class DecodeConfig:
    """Bounds and output format of decoding.

    Attributes:
        target_fps: highest output frame rate, Hz: the output rate is
            ``min(source rate, target_fps)`` (a slower source is never upsampled by
            duplicating frames); None keeps the source rate.
        max_side: longest side of the output frames, pixels (never upscaled).
        max_pixels: most pixels (width x height) of one output frame.
        max_duration_s: longest clip (after the time range) that is decoded, seconds, at
            ``target_fps``; for a source slower than ``target_fps`` the bound scales by
            ``target_fps / output rate`` so that it allows the same number of output frames
            (the work is per frame). Longer clips are rejected as ``too_long``.
        max_frames: most output frames (at the output rate); a clip producing more is
            rejected as ``too_long``.
        max_source_pixels: largest source frame (width x height) that is decoded at all
            (guards against absurd resolutions); larger sources are ``unreadable``.
        min_source_side: smallest source width or height, pixels; smaller sources (a 1x1
            "video") cannot show a person and are ``unreadable``.
        timeout_s: wall-clock bound of the whole decode, seconds (``timeout``).
        batch_frames: frames per yielded :class:`FrameBatch`.
        backend: "auto" (ffprobe metadata, then OpenCV for sources up to
            ``opencv_max_source_pixels`` and ffmpeg above, each falling back to the
            other), "ffmpeg" or "opencv".
        threads: decoder threads for ffmpeg (0 = ffmpeg decides).
        opencv_max_source_pixels: "auto" decodes sources up to this size with OpenCV
            (faster there: no subprocess start, no pipe copy).
    """

    target_fps: float | None = 25.0
    max_side: int = 640
    max_pixels: int = 640 * 480
    max_duration_s: float = 60.0
    max_frames: int = 1800
    max_source_pixels: int = 4096 * 2304
    min_source_side: int = 16
    timeout_s: float = 300.0
    batch_frames: int = 32
    backend: str = "auto"
    threads: int = 0
    opencv_max_source_pixels: int = 640 * 480

    def __post_init__(self) -> None:
        validate_fields(self)  # types and ranges: DECODE_RANGES below
        if self.backend not in BACKENDS:
            raise ValueError(f"DecodeConfig.backend={self.backend!r}; use one of {BACKENDS}.")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"DecodeConfig.target_fps={self.target_fps} must be > 0 or None.")
        for name in ("max_side", "max_pixels", "max_frames", "batch_frames", "max_source_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"DecodeConfig.{name} must be >= 1.")


DECODE_RANGES = declare_ranges(DecodeConfig, {
    "target_fps": real(gt=0, le=1000, optional=True),
    "max_side": integer(ge=8, le=16384),
    "max_pixels": integer(ge=64),
    "max_duration_s": real(gt=0),
    "max_frames": integer(ge=1),
    "max_source_pixels": integer(ge=1),
    "min_source_side": integer(ge=1),
    "timeout_s": real(gt=0),
    "batch_frames": integer(ge=1, le=4096),
    "backend": choice(*BACKENDS),
    "threads": integer(ge=0, le=256),
    "opencv_max_source_pixels": integer(ge=0),
})


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
        start_time_s: presentation time of the first frame in the container, seconds
            (often 0; e.g. 1.4 in MPEG-TS). Every other time here and in
            :class:`VideoMeta` counts from that first frame, as ``ffmpeg -ss`` and the
            decoders do.
        frame_times: for variable-frame-rate streams only, the (num_frames,) presentation
            times of the frames in display order, seconds from the first frame; None for
            a constant rate (frame j is at j / fps).
    """

    path: str
    width: int
    height: int
    fps: float
    num_frames: int | None
    duration_s: float | None
    rotation: int
    codec: str
    start_time_s: float = 0.0
    frame_times: tuple[float, ...] | None = None

    @property
    def span_s(self) -> float | None:
        """Seconds from the first frame to the end of the last one (None when unknown):
        ``num_frames / fps`` for a constant rate, the last frame time plus one mean
        interval for a variable rate, else the container's duration."""
        if self.frame_times is not None and len(self.frame_times) > 0:
            n = len(self.frame_times)
            step = self.frame_times[-1] / (n - 1) if n > 1 else 1.0 / self.fps
            return float(self.frame_times[-1] + step)
        if self.num_frames:
            return self.num_frames / self.fps
        return self.duration_s

    def frame_time(self, index: np.ndarray) -> np.ndarray:
        """Presentation time, seconds from the first frame, of source frames ``index`` (F,)."""
        index = np.asarray(index, np.int64)
        if self.frame_times is not None:
            return np.asarray(self.frame_times, np.float64)[index]
        return index / self.fps


@dataclass(frozen=True)
class VideoMeta:
    """The decode plan of one clip.

    Attributes:
        source: the probed source stream.
        fps: output frame rate, Hz (``min(source rate, target_fps)``).
        width, height: output frame size, pixels.
        time_start: source second (from the first frame) where output frame 0 starts.
        time_end: source second where the output ends (None: end of stream).
        expected_frames: output frames of the plan (None when the length is unknown):
            ``floor(duration x fps + 0.5)``, what ffmpeg's ``fps`` filter produces and the
            decoders yield for an intact file.
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
        raise DecodeError(RejectReason.UNREADABLE, f"video path {uri} is a directory, not a video file; give a video file.")
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
    cmd = probe_command(path, v="error")
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(RejectReason.TIMEOUT, f"ffprobe of {path} took more than {timeout_s:.0f} s; check the file and its disk, or re-encode it.") from exc
    if done.returncode != 0:
        detail = ffmpeg_text(done.stderr).strip().splitlines()
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"ffprobe cannot read {path}: {detail[-1] if detail else 'unknown error'}; the file is not a video "
            "or is corrupt: re-download or re-encode it.",
        )
    info = json.loads(done.stdout.decode("utf-8", "replace") or "{}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    streams = [s for s in streams if not (s.get("disposition", {}) or {}).get("attached_pic")]
    if not streams:
        raise DecodeError(RejectReason.NO_VIDEO_STREAM, f"{path} has no video stream (audio-only or data file); give a file with a video stream.")
    stream = streams[0]
    container = str((info.get("format") or {}).get("format_name", ""))
    if container.endswith("_pipe") or container == "image2":
        raise DecodeError(
            RejectReason.NO_VIDEO_STREAM,
            f"{path} is a still image ({stream.get('codec_name', container)}), not a video; give a video file.",
        )
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        raise DecodeError(RejectReason.UNREADABLE, f"{path}: video stream has no frame size; the file is corrupt: re-download or re-encode it.")
    rotation = _rotation_of(stream)
    if rotation in (90, 270):
        width, height = height, width
    avg_rate, real_rate = _ratio(stream.get("avg_frame_rate")), _ratio(stream.get("r_frame_rate"))
    fps = avg_rate or real_rate
    duration = _ratio(stream.get("duration")) or _ratio((info.get("format") or {}).get("duration")) or None
    nb = stream.get("nb_frames")
    num_frames = int(nb) if nb not in (None, "", "N/A") and str(nb).isdigit() else None
    start_time = _ratio(stream.get("start_time"))
    frame_times = None
    if not fps or fps <= 0 or fps > 1000:
        raise DecodeError(RejectReason.UNREADABLE, f"{path}: video stream has no usable frame rate ({fps}); re-encode it with a constant rate (ffmpeg -r 30).")
    if num_frames is None or (real_rate and abs(real_rate - avg_rate) > 0.01 * real_rate):
        # No frame count in the header (Matroska/WebM) or a variable rate: list the packet
        # times (reads the container only, no decoding).
        times = _packet_times(path, timeout_s)
        if times.size:
            _check_packets_fill_the_stream(path, times, fps, _declared_duration(stream, info))
            num_frames = int(times.size)
            start_time = float(times[0])
            times = times - times[0]
            if np.abs(times - np.arange(times.size) / fps).max() > 0.25 / fps:
                frame_times = tuple(float(t) for t in times)  # variable rate: keep each time
    return SourceInfo(
        path=path,
        width=width,
        height=height,
        fps=float(fps),
        num_frames=num_frames,
        duration_s=float(duration) if duration else None,
        rotation=rotation,
        codec=str(stream.get("codec_name", "")),
        start_time_s=float(start_time),
        frame_times=frame_times,
    )


TRUNCATION_SLACK_FRAMES = 2
"""Frames by which a stream's packets may fall short of its declared duration (rounding of
durations, a last frame without a duration) before the file is called truncated."""


def _declared_duration(stream: dict, info: dict) -> float | None:
    """The video stream's duration as its container header declares it (s), or None.

    The stream's own ``duration``, else its ``DURATION`` tag (Matroska/WebM), else the
    container's duration when the file has no other stream (an audio track may run longer).
    """
    value = _ratio(stream.get("duration"))
    if value:
        return value
    tag = str((stream.get("tags") or {}).get("DURATION", ""))
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", tag.strip())
    if match:
        return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    if len(info.get("streams", [])) == 1:
        return _ratio((info.get("format") or {}).get("duration")) or None
    return None


class _Truncated(DecodeError):
    """A file whose data stop before its header says: no other backend can read more."""


def _check_packets_fill_the_stream(path: str, times: np.ndarray, fps: float, declared: float | None) -> None:
    """Raise ``unreadable`` when a stream's packets stop well before the duration its
    container header declares: the file was cut (a Matroska/WebM header survives a cut, and
    without this the frames it lost would be blamed on the keypoint sidecar).

    Args:
        times: (N,) sorted packet presentation times, seconds.
        fps: the stream's frame rate, frames per second.
        declared: the header's duration of the stream (s), or None (nothing to check).
    """
    if not declared:
        return
    span = float(times[-1] - times[0]) + 1.0 / fps
    if span < declared - max(TRUNCATION_SLACK_FRAMES / fps, 0.05 * declared):
        raise _Truncated(
            RejectReason.UNREADABLE,
            f"{path}: the container declares {declared:.2f} s of video but its data hold only {times.size} frames "
            f"({span:.2f} s); the file is truncated: re-download it.",
        )


def _packet_times(path: str, timeout_s: float) -> np.ndarray:
    """Sorted presentation times (s) of the first video stream's packets (= frames)."""
    cmd = packet_times_command(path)
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(RejectReason.TIMEOUT, f"ffprobe of {path} took more than {timeout_s:.0f} s; check the file and its disk, or re-encode it.") from exc
    values = []
    for line in done.stdout.decode("ascii", "replace").split():
        try:
            values.append(float(line.strip().rstrip(",")))
        except ValueError:
            continue  # a packet without a timestamp
    return np.sort(np.asarray(values, np.float64))


def _probe_opencv(path: str) -> SourceInfo:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DecodeError(RejectReason.UNREADABLE, f"OpenCV cannot open {path}; the file is not a video or is corrupt: re-download or re-encode it.")
        width = int(round(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        height = int(round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
    finally:
        cap.release()
    if width <= 0 or height <= 0:
        raise DecodeError(RejectReason.NO_VIDEO_STREAM, f"OpenCV finds no video stream in {path}; give a file with a video stream.")
    if not fps or fps <= 0 or fps > 1000:
        raise DecodeError(RejectReason.UNREADABLE, f"{path}: video stream has no usable frame rate ({fps}); re-encode it with a constant rate (ffmpeg -r 30).")
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
        if backend == "auto" and exc.reason == RejectReason.UNREADABLE and not isinstance(exc, _Truncated):
            try:
                return _probe_opencv(path)
            except DecodeError:
                pass
        raise


# --------------------------------------------------------------------------- planning


def source_frame_index(meta: VideoMeta, output_index: np.ndarray) -> np.ndarray:
    """The source frame each output frame shows: the one rule of frame timing.

    Output frame k covers source time ``time_start + k / fps`` and shows the last source
    frame presented before ``time_start + (k + 0.5) / fps`` (ffmpeg's ``fps`` filter with
    ``round=near``; the OpenCV backend makes the same choice). Times count from the first
    frame of the stream (a non-zero container start time is subtracted, as ffmpeg does);
    a variable-frame-rate stream uses its listed frame times (``SourceInfo.frame_times``).
    Decoding, the last-frame check and precomputed keypoints (whose frame ids are source
    frame indices) all go through this function.

    Args:
        meta: the decode plan.
        output_index: (F,) output frame indices (0 = first frame of the clip).

    Returns:
        (F,) int64 source frame indices, in [0, num_frames - 1] when the count is known.
    """
    src = meta.source
    edge = meta.time_start + (np.asarray(output_index, np.float64) + 0.5) / meta.fps
    if src.frame_times is not None:
        index = np.searchsorted(np.asarray(src.frame_times, np.float64), edge - 1e-9, side="left") - 1
    else:
        index = np.ceil(edge * src.fps - 1e-6) - 1
    index = np.asarray(index, np.int64).clip(min=0)
    if src.num_frames:
        index = index.clip(max=src.num_frames - 1)
    return index


_DAMAGE = ("Invalid data found", "Error while decoding", "partial file", "Invalid NAL unit", "error reading header")


_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+")


def ffmpeg_text(stderr: bytes) -> str:
    """ffmpeg's or ffprobe's stderr as text, without the memory addresses ffmpeg prints in its
    log prefixes (``[h264 @ 0x55d2...]``), so a rejection message is the same on every run."""
    return _ADDRESS.sub("", stderr.decode("utf-8", "replace"))


def _damage(stderr: bytes) -> str | None:
    """The first line of ffmpeg's stderr that reports damaged or missing data, if any."""
    for line in ffmpeg_text(stderr).splitlines():
        if any(mark in line for mark in _DAMAGE):
            return line.strip()
    return None


def check_last_frame(meta: VideoMeta, timeout_s: float = 30.0) -> None:
    """Decode the last source frame the plan needs, to catch truncated files cheaply.

    Used when a clip's frames are not otherwise decoded (precomputed keypoints and the
    keypoint-only initialiser): a file whose header survived but whose data was cut off
    probes fine, yet cannot deliver its last frames. The frame looked for is
    :func:`source_frame_index` of the last output frame, so the check never asks for a time
    past the end of the stream whatever the source and output rates. Costs one seek and
    the decode of one group of pictures with ffmpeg (OpenCV's seek returns a stale frame
    instead of failing, so it is used only where ffmpeg is missing).

    Raises:
        DecodeError: ``unreadable`` when the frame cannot be decoded, ``timeout`` when the
            check takes longer than ``timeout_s``.
    """
    if meta.expected_frames is None or meta.expected_frames <= 0 or not _have_ffmpeg():
        return  # nothing to check against, or no ffmpeg to check with
    src = meta.source
    last = int(source_frame_index(meta, np.array([meta.expected_frames - 1]))[0])
    # Seek half a frame before it: ffmpeg's accurate seek drops every frame presented
    # earlier than the seek point, so the first frame out is frame `last` or nothing.
    if last > 0:
        seek = float(src.frame_time(np.array([last - 1, last])).mean())
    else:
        seek = 0.0
    # An input seek jumps near the frame (cheap); containers without a seek index (MPEG-TS,
    # whatever its file name) can land nowhere and return nothing without an error. Then
    # an output seek decodes from the start and drops frames until the seek point: slower,
    # but it finds the frame in every intact file and never in a cut one.
    for output_seek in (False, True):
        try:
            proc = subprocess.run(one_frame_command(src.path, seek, output_seek), capture_output=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DecodeError(RejectReason.TIMEOUT, f"{src.path}: checking the last frame took over {timeout_s:.0f} s; "
                              "re-encode the file (it cannot be seeked quickly) or check the disk it lies on.") from exc
        damage = _damage(proc.stderr)
        if proc.returncode != 0 or damage or len(proc.stdout) > 0:
            break
    if proc.returncode != 0 or len(proc.stdout) == 0 or damage:
        total = f"{src.num_frames} frames, " if src.num_frames else ""
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"{src.path}: cannot decode source frame {last} intact (at {float(src.frame_time(np.array([last]))[0]):.2f} s) "
            f"although the container says the video has {total}{src.span_s or 0:.2f} s"
            + (f" ({damage})" if damage else "") + "; the file is probably truncated: re-download it.",
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
            f"{source.path}: source frames are {source.width}x{source.height}, more than max_source_pixels="
            f"{config.max_source_pixels}; to decode it anyway pass --perception_config "
            f"'{{\"decode\": {{\"max_source_pixels\": {source.width * source.height}}}}}'.",
        )
    if min(source.width, source.height) < config.min_source_side:
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"{source.path}: source frames are {source.width}x{source.height}, smaller than min_source_side="
            f"{config.min_source_side} px: too small to show a person; check the file (or pass --perception_config "
            f"'{{\"decode\": {{\"min_source_side\": {min(source.width, source.height)}}}}}').",
        )
    start = max(0.0, float(time_start or 0.0))
    end = float(time_end) if time_end is not None else None
    if end is not None and end <= start:
        raise DecodeError(RejectReason.ZERO_FRAMES, f"{source.path}: empty time range [{start}, {end}] s; fix the clip's times.")
    stream_end = source.span_s
    if stream_end is not None:
        if start >= stream_end:
            raise DecodeError(
                RejectReason.ZERO_FRAMES,
                f"{source.path}: time_start {start:.2f} s is past the end of the video ({stream_end:.2f} s); "
                "fix the clip's times.",
            )
        end = min(end, stream_end) if end is not None else None
    duration = (end if end is not None else stream_end) - start if (end is not None or stream_end) else None
    fps = min(float(config.target_fps), source.fps) if config.target_fps else source.fps
    max_duration = config.max_duration_s
    if config.target_fps and fps < config.target_fps:
        max_duration *= config.target_fps / fps  # the same frame budget at the slower rate
    if duration is not None and duration > max_duration + 1e-6:
        raise DecodeError(
            RejectReason.TOO_LONG,
            f"{source.path}: clip lasts {duration:.1f} s, more than max_duration_s={config.max_duration_s:g}"
            + (f" (x {config.target_fps:g}/{fps:g} fps = {max_duration:.1f} s at this source's rate)"
               if max_duration != config.max_duration_s else "")
            + f"; give a time range, or pass --perception_config '{{\"decode\": {{\"max_duration_s\": "
            f"{math.ceil(duration * config.max_duration_s / max_duration)}}}}}'.",
        )
    expected = int(math.floor(duration * fps + 0.5 + 1e-6)) if duration is not None else None
    if expected is not None and expected > config.max_frames:
        raise DecodeError(
            RejectReason.TOO_LONG,
            f"{source.path}: clip would give {expected} frames at {fps:g} fps, more than "
            f"max_frames={config.max_frames}; give a time range, or pass --perception_config "
            f"'{{\"decode\": {{\"max_frames\": {expected}}}}}' (or a lower target_fps).",
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


def _too_many_frames(path: str, config: DecodeConfig, fps: float) -> DecodeError:
    """The ``too_long`` error of a decode that passed ``config.max_frames`` frames at ``fps``."""
    return DecodeError(
        RejectReason.TOO_LONG,
        f"{path}: more than max_frames={config.max_frames} frames at {fps:g} fps; give a time "
        f"range, or raise it: --perception_config '{{\"decode\": {{\"max_frames\": N}}}}'.",
    )


def _timed_out(path: str, config: DecodeConfig) -> DecodeError:
    """The ``timeout`` error of a decode that ran past ``config.timeout_s`` seconds."""
    return DecodeError(RejectReason.TIMEOUT, f"decoding {path} took more than timeout_s={config.timeout_s:g} s; "
                       f"raise it: --perception_config '{{\"decode\": {{\"timeout_s\": N}}}}'.")


def _no_frame(path: str) -> DecodeError:
    """The ``zero_frames`` error of a decode that produced no frame."""
    return DecodeError(RejectReason.ZERO_FRAMES,
                       f"{path}: decoding produced no frame; check the clip's time range, or re-encode the file.")


def _iter_ffmpeg(meta: VideoMeta, config: DecodeConfig, deadline: float) -> Iterator[FrameBatch]:
    src = meta.source
    size = None if (meta.width, meta.height) == (src.width, src.height) else (meta.width, meta.height)
    duration = None if meta.time_end is None else meta.time_end - meta.time_start
    cmd = decode_command(src.path, meta.fps, size, config.threads, meta.time_start, duration)
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
                    raise _too_many_frames(src.path, config, meta.fps)
                index = np.arange(produced, produced + got, dtype=np.int64)
                yield FrameBatch(batch[:got], index, index / meta.fps)
                produced += got
            if got < count:
                break
        proc.wait()
        if timed_out.is_set():
            raise _timed_out(src.path, config)
        stderr.seek(0)
        damage = _damage(stderr.read())
        if damage and produced:
            raise DecodeError(
                RejectReason.UNREADABLE,
                f"{src.path}: damaged data after {produced} frames ({damage}); the file is probably truncated: "
                "re-download it.",
            )
        if proc.returncode != 0:
            stderr.seek(0)
            detail = ffmpeg_text(stderr.read()).strip().splitlines()
            message = f"ffmpeg failed on {src.path} (exit {proc.returncode}): {detail[-1] if detail else ''}"
            if produced == 0:
                raise DecodeError(RejectReason.UNREADABLE, message)
            logger.warning("%s; keeping the %d frames decoded before the error", message, produced)
        if produced == 0:
            raise _no_frame(src.path)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        stderr.close()


# --------------------------------------------------------------------------- OpenCV


def _opencv_rgb(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """An OpenCV BGR frame as RGB, resized to ``size`` (width, height) unless None."""
    import cv2

    if size is not None:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _iter_opencv(meta: VideoMeta, config: DecodeConfig, deadline: float) -> Iterator[FrameBatch]:
    import cv2

    src = meta.source
    cap = cv2.VideoCapture(src.path)
    if not cap.isOpened():
        raise DecodeError(RejectReason.UNREADABLE, f"OpenCV cannot open {src.path}; re-download or re-encode it.")
    produced = 0
    size = (meta.width, meta.height) if (meta.width, meta.height) != (src.width, src.height) else None
    batch: list[np.ndarray] = []
    try:
        if meta.time_start > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, meta.time_start * 1000.0)
        end = meta.time_end
        source_index = -1
        previous: np.ndarray | None = None
        previous_time = -math.inf

        def flush():
            nonlocal produced, batch
            index = np.arange(produced, produced + len(batch), dtype=np.int64)
            out = FrameBatch(np.stack(batch), index, index / meta.fps)
            produced += len(batch)
            batch = []
            return out

        def check_frame_cap():
            if produced + len(batch) >= config.max_frames:
                raise _too_many_frames(src.path, config, meta.fps)

        if meta.expected_frames is not None and src.num_frames:
            # The plan is known: output frame k shows source frame targets[k] (source_frame_index,
            # the rule the ffmpeg backend's fps filter follows too).
            targets = source_frame_index(meta, np.arange(meta.expected_frames))
            k, current = 0, -1
            while k < targets.size:
                if time.monotonic() > deadline:
                    raise _timed_out(src.path, config)
                ok, frame = cap.read()
                if not ok:
                    break  # a short file: decode_video's completeness check reports it
                if current < 0 and meta.time_start > 0:  # where the seek landed
                    current = _nearest_source_index(src, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
                else:
                    current += 1
                while k < targets.size and targets[k] <= current:
                    check_frame_cap()
                    batch.append(_opencv_rgb(frame, size))
                    k += 1
                    if len(batch) == config.batch_frames:
                        yield flush()
            if batch:
                yield flush()
            if produced == 0:
                raise _no_frame(src.path)
            return

        # Unknown stream length: the same rule on the decoder's timestamps.
        while True:
            if time.monotonic() > deadline:
                raise _timed_out(src.path, config)
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
                    batch.append(_opencv_rgb(previous, size))
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
                batch.append(_opencv_rgb(previous, size))
                if len(batch) == config.batch_frames:
                    yield flush()
        if batch:
            yield flush()
        if produced == 0:
            raise _no_frame(src.path)
    finally:
        cap.release()


def _nearest_source_index(src: SourceInfo, stamp: float) -> int:
    """The source frame presented closest to ``stamp`` (seconds from the first frame)."""
    if src.frame_times is not None:
        return int(np.abs(np.asarray(src.frame_times) - stamp).argmin())
    return int(round(stamp * src.fps))


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
        raise DecodeError(RejectReason.FAILED, "backend 'ffmpeg' asked for but ffmpeg/ffprobe are not on PATH; install ffmpeg.")
    # ffprobe's metadata (frame count, start time, frame times, rotation) whatever decodes.
    source = probe_video(uri, "auto", timeout_s=config.timeout_s)
    meta = plan_decode(source, config, time_start, time_end, backend="ffmpeg" if use_ffmpeg else "opencv")
    deadline = start_clock + config.timeout_s
    if not use_ffmpeg:
        return meta, _complete(meta, _iter_opencv(meta, config, deadline))
    if config.backend == "ffmpeg":
        return meta, _complete(meta, _iter_ffmpeg(meta, config, deadline))
    # auto: the faster backend for this source size first (docs/perception.md).
    primary = "opencv" if source.width * source.height <= config.opencv_max_source_pixels else "ffmpeg"
    meta = dataclasses.replace(meta, backend=primary)
    return meta, _complete(meta, _with_fallback(meta, config, deadline, primary))


def _complete(meta: VideoMeta, batches: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
    """Pass the batches through; once they run out, raise ``unreadable`` when fewer frames
    came than the plan's ``expected_frames`` (a file whose data was cut off: its header
    still promises the frames). One frame of slack for a time range that ends inside the
    stream and for variable-rate streams, where the cut-off frame can round either way."""
    produced = 0
    try:
        for batch in batches:
            produced += len(batch)
            yield batch
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    expected = meta.expected_frames
    if expected is None:
        return
    span = meta.source.span_s
    partial = meta.time_end is not None and span is not None and meta.time_end < span - 1e-6
    slack = 1 if partial or meta.source.frame_times is not None else 0
    if produced < expected - slack:
        src = meta.source
        raise DecodeError(
            RejectReason.UNREADABLE,
            f"{src.path}: decoded {produced} of the {expected} frames the container promises "
            f"({src.num_frames or '?'} source frames, {span or 0:.2f} s); the file is probably truncated: "
            "re-download it.",
        )


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
