"""Perception of one clip: decode -> detect -> track -> init, frames never leave the call.

:func:`perceive_clip` streams the decoded frames in batches; each batch is detected (YOLO
pose, or precomputed keypoints mapped onto the decoded frames), and when an HMR checkpoint
is loaded every detection is cropped and regressed right away, so that no more than one
batch of frames is ever held. Tracking then runs on the keypoints of the whole clip, and
each track becomes an :class:`optimize.problem.TrackProblem` holding the selected
detections, every candidate of each frame (padded) with its SMPL/camera estimate, the image
size, fps and frame times.

Bad input never raises: every reason is returned in :class:`pipeline.records.PerceptionResult`
(``reject_reason`` + ``message``); an unexpected exception becomes ``failed`` with the error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from models.pose_detector import FrameDetections, PoseDetector
from models.pose_runtime import DETECTOR_RUNTIMES, weights_sha256, yolo_pose_detector
from optimize.problem import TrackProblem
from optimize.validate import boolean, choice, declare_ranges, integer, real, text, validate_fields
from pipeline.perception.crops import CropConfig, encode_detection_crops, track_crops
from pipeline.perception.decode import (
    DecodeConfig,
    DecodeError,
    FrameBatch,
    VideoMeta,
    check_last_frame,
    decode_video,
    plan_decode,
    probe_video,
    source_frame_index,
)
from pipeline.perception.init import DetectionInit, KeypointInitializer, hmr_initialize, mean_pose_from_params
from pipeline.perception.inputs import local_file_problem
from pipeline.perception.keypoint_source import KEYPOINT_SOURCES, detector_source, file_source
from pipeline.perception.keypoints_io import KeypointsError, PrecomputedKeypoints, load_keypoints
from pipeline.perception.nms import OKS_THRESHOLD, duplicate_tracks, oks_nms
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.perception.stage_timer import StageTimer
from pipeline.perception.track import PaddedDetections, Track, TrackingConfig, pad_detections, track_people

logger = logging.getLogger(__name__)

# the minimum person height as a fraction of the decoded frame height where the frame is
# too small for min_person_height: 50 px on frames of 300 px and more, 20 px at 160x120
MIN_PERSON_HEIGHT_FRACTION = 1.0 / 6.0

__all__ = ["PerceptionConfig", "PerceptionModels", "load_perception_models", "perceive_clip", "tracking_at_rate"]


@dataclass(frozen=True)
class PerceptionConfig:
    """Settings of the per-clip perception step.

    Attributes:
        decode: decoding bounds and output format.
        tracking: shortest-path tracker settings (crowd rule included).
        keypoints_source: one of
            :data:`pipeline.perception.keypoint_source.KEYPOINT_SOURCES` (the ``--keypoints``
            flag); "precomputed" loads no detector. Each clip's source is decided by
            :func:`pipeline.perception.keypoint_source.choose_keypoints`.
        detector_weights: local YOLO ``*-pose.pt`` path (None: no detector).
        detector_confidence: minimum person score.
        detector_iou: NMS IoU threshold.
        detector_image_size: YOLO inference size (longest side), pixels; None: the decoded
            frame's longest side x ``detector_upscale`` (rounded up to a multiple of 32).
        detector_upscale: enlargement of the decoded frames at the detector's input when
            ``detector_image_size`` is None (small people; ``docs/perception.md``).
        detector_batch_size: frames per detector forward pass.
        detector_runtime: "torch" (the checkpoint), or ultralytics' "onnx" (ONNX Runtime) or
            "openvino" export of it, made once and cached (:mod:`models.pose_runtime`; CPU only).
        hmr_checkpoint: SPIN-format HMR checkpoint (None: keypoint-only initialiser).
        smpl_mean_params: SPIN mean-parameter ``.npz`` (required with ``hmr_checkpoint``;
            optional mean pose for the keypoint initialiser).
        hmr_batch_size: crops per HMR forward pass.
        min_keypoint_confidence: keypoints above it count as seen (crop boxes, init).
        min_visible_keypoints: detections with fewer seen keypoints are dropped.
        oks_threshold: pose-aware NMS within a frame: of two detections whose keypoints
            have an OKS above this, the lower-scored one is dropped
            (:func:`pipeline.perception.nms.oks_nms`); 1 disables it.
        min_person_height: the tallest minimum person height, pixels of the decoded frame.
            Detections whose box is shorter than :meth:`person_height_floor` (the smaller
            of this and ``min_person_height_fraction`` x the decoded frame height) are
            dropped before tracking: too small to fit, and not counted by the crowd rule
            (``tracking.max_people``). A clip whose every detection is smaller is rejected
            ``too_small``.
        min_person_height_fraction: the minimum as a fraction of the decoded frame height,
            for frames too small for ``min_person_height`` (the default, a sixth, keeps
            ``min_person_height`` on frames 300 px tall and more; 1 keeps it on any frame
            taller than it).
        store_crops: JPEG crops of every detection are cut while the frames are decoded
            and each problem carries its track's crop per frame (``TrackProblem.crops``).
        crop: size / margin / quality of the stored crops.
    """

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    keypoints_source: str = "auto"
    detector_weights: str | None = None
    detector_confidence: float = 0.25
    detector_iou: float = 0.7
    detector_image_size: int | None = None
    detector_upscale: float = 1.5
    detector_batch_size: int = 16
    detector_runtime: str = "torch"
    hmr_checkpoint: str | None = None
    smpl_mean_params: str | None = None
    hmr_batch_size: int = 64
    min_keypoint_confidence: float = 0.2
    min_visible_keypoints: int = 4
    oks_threshold: float = OKS_THRESHOLD
    min_person_height: float = 50.0
    min_person_height_fraction: float = MIN_PERSON_HEIGHT_FRACTION
    store_crops: bool = False
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self) -> None:
        validate_fields(self)  # types and ranges: PERCEPTION_RANGES below
        if self.keypoints_source not in KEYPOINT_SOURCES:
            raise ValueError(f"PerceptionConfig.keypoints_source={self.keypoints_source!r}; use one of {KEYPOINT_SOURCES}.")
        if self.hmr_checkpoint is not None and self.smpl_mean_params is None:
            raise ValueError("PerceptionConfig: hmr_checkpoint needs smpl_mean_params (the SPIN mean-parameter .npz).")

    def person_height_floor(self, frame_height: int) -> float:
        """The smallest person tracked and counted in a decoded frame ``frame_height`` px tall,
        px: the smaller of ``min_person_height`` and ``min_person_height_fraction`` x
        ``frame_height``."""
        return min(self.min_person_height, self.min_person_height_fraction * frame_height)

    def person_height_rule(self, frame_height: int) -> str:
        """Where :meth:`person_height_floor` comes from, for messages ("the smaller of ...")."""
        return (f"the smaller of min_person_height={self.min_person_height:g} px and min_person_height_fraction="
                f"{self.min_person_height_fraction:.4g} of the {frame_height} px frame height")


PERCEPTION_RANGES = declare_ranges(PerceptionConfig, {
    # decode, tracking and crop are checked by their own classes.
    "keypoints_source": choice(*KEYPOINT_SOURCES),
    "detector_weights": text(optional=True),
    "detector_confidence": real(ge=0, le=1),
    "detector_iou": real(ge=0, le=1),
    "detector_image_size": integer(ge=32, le=8192, optional=True),
    "detector_upscale": real(ge=0.25, le=8),
    "detector_batch_size": integer(ge=1),
    "detector_runtime": choice(*DETECTOR_RUNTIMES),
    "hmr_checkpoint": text(optional=True),
    "smpl_mean_params": text(optional=True),
    "hmr_batch_size": integer(ge=1),
    "min_keypoint_confidence": real(ge=0, lt=1),
    "min_visible_keypoints": integer(ge=0, le=17),
    "oks_threshold": real(gt=0, le=1),
    "min_person_height": real(ge=0),
    "min_person_height_fraction": real(gt=0, le=1),
    "store_crops": boolean(),
})


@dataclass
class PerceptionModels:
    """Models loaded once per worker (see :func:`load_perception_models`).

    Attributes:
        detector: pose detector, or None (precomputed keypoints only).
        hmr: HMR regressor, or None (keypoint-only initialiser).
        keypoint_init: the initialiser used without HMR.
        device: torch device string.
        detector_source: the detector's ``keypoint_source`` value
            (``detector:<weights>@sha256:<12 hex>``; "" without a detector).
    """

    detector: PoseDetector | None
    hmr: object | None
    keypoint_init: KeypointInitializer
    device: str = "cpu"
    detector_source: str = ""

    @property
    def init_source(self) -> str:
        return "hmr" if self.hmr is not None else "keypoints"


def load_perception_models(config: PerceptionConfig, body_model, device: str = "cpu",
                           export_dir: str | None = None) -> PerceptionModels:
    """Load the detector and HMR once (heavy; call in ``DoFn.setup``).

    Args:
        config: perception settings (weights paths).
        body_model: :class:`models.body_model.BodyModel` (keypoint initialiser geometry).
        device: torch device for detector and HMR.
        export_dir: local folder caching the detector's export (``detector_runtime`` onnx or
            openvino; the job passes ``<output>/_cache/detector`` for a local output).

    Raises:
        FileNotFoundError / ValueError: a configured weights file is missing or wrong.
    """
    detector, source = None, ""
    if config.detector_weights is not None and config.keypoints_source != "precomputed":
        detector = yolo_pose_detector(
            config.detector_weights,
            device=device,
            confidence=config.detector_confidence,
            iou=config.detector_iou,
            image_size=config.detector_image_size,
            upscale=config.detector_upscale,
            batch_size=config.detector_batch_size,
            runtime=config.detector_runtime,
            export_dir=export_dir,
        )
        source = detector_source(config.detector_weights, weights_sha256(config.detector_weights))
    hmr = None
    if config.hmr_checkpoint is not None:
        from models.hmr import HMRRegressor

        hmr = HMRRegressor.from_files(config.hmr_checkpoint, config.smpl_mean_params, device, config.hmr_batch_size)
        logger.info("initialisation: HMR (%s)", config.hmr_checkpoint)
    else:
        logger.info("initialisation: keypoints only (no HMR checkpoint configured)")
    keypoint_init = KeypointInitializer(
        body_model, mean_pose_from_params(config.smpl_mean_params), config.min_keypoint_confidence
    )
    return PerceptionModels(detector, hmr, keypoint_init, device, source)


class _Reject(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _filter(found: FrameDetections, config: PerceptionConfig) -> FrameDetections:
    """Detections with enough seen keypoints, one per person (pose-aware NMS)."""
    seen = (found.keypoints[..., 2] > config.min_keypoint_confidence).sum(-1)
    found = found.select(seen >= config.min_visible_keypoints)
    if config.oks_threshold < 1:
        found = oks_nms(found, config.oks_threshold, config.min_keypoint_confidence)
    return found


def tracking_at_rate(tracking: TrackingConfig, fps: float, target_fps: float | None) -> TrackingConfig:
    """The tracker's frame-count settings at the clip's output rate.

    ``min_track_length``, ``max_gap``, ``first_pass_max_gap`` and ``velocity_window`` are
    frame counts at ``target_fps``; a source slower than the target is decoded at its own
    rate (never upsampled), so they are scaled by ``fps / target_fps`` to keep their length
    in seconds (a 10 fps clip needs 4 detections where a 25 fps one needs 10).

    Args:
        tracking: the configured settings.
        fps: the clip's output rate, Hz.
        target_fps: ``DecodeConfig.target_fps`` (None: no scaling).
    """
    if not target_fps or fps >= target_fps:
        return tracking
    factor = fps / target_fps
    return dataclasses.replace(
        tracking,
        min_track_length=max(2, math.ceil(tracking.min_track_length * factor - 1e-9)),
        max_gap=max(1, round(tracking.max_gap * factor)),
        first_pass_max_gap=max(1, round(tracking.first_pass_max_gap * factor)),
        velocity_window=max(2, round(tracking.velocity_window * factor)),
    )


def _pad_init(inits: list[DetectionInit], slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T = len(inits)
    pose = np.zeros((T, slots, 72), np.float32)
    betas = np.zeros((T, slots, 10), np.float32)
    camera = np.zeros((T, slots, 3), np.float32)
    for t, init in enumerate(inits):
        n = init.pose.shape[0]
        pose[t, :n], betas[t, :n], camera[t, :n] = init.pose, init.betas, init.camera
    return pose, betas, camera


def _problem(
    clip: ClipRef,
    k: int,
    track: Track,
    padded: PaddedDetections,
    init: tuple[np.ndarray, np.ndarray, np.ndarray],
    frame_time: np.ndarray,
    image_size: tuple[int, int],
    fps: float,
    init_source: str,
    meta: dict[str, str],
    detection_crops: list[list[bytes]] | None,
) -> TrackProblem:
    rows = slice(track.start, track.stop)
    slots = max(1, int(padded.mask[rows].sum(1).max()))
    selected = track.selected.astype(np.int32)
    candidates = padded.keypoints[rows, :slots].astype(np.float32)
    keypoints, boxes = _track_detections(track, padded)
    pose, betas, camera = (a[rows, :slots] for a in init)
    problem = TrackProblem(
        clip_id=clip.clip_id,
        track_id=k,
        image_size=image_size,
        fps=float(fps),
        frame_index=np.arange(track.start, track.stop, dtype=np.int32),
        frame_time=frame_time[rows].astype(np.float64),
        selected=selected,
        keypoints=keypoints,
        boxes=boxes,
        candidates=candidates,
        candidate_mask=padded.mask[rows, :slots].copy(),
        init_pose=np.ascontiguousarray(pose),
        init_betas=np.ascontiguousarray(betas),
        init_camera=np.ascontiguousarray(camera),
        init_source=init_source,
        meta=dict(meta),
        crops=track_crops(detection_crops[rows], selected) if detection_crops is not None else (),
    )
    problem.validate()
    return problem


def _track_detections(track: Track, padded: PaddedDetections) -> tuple[np.ndarray, np.ndarray]:
    """A track's own detection per frame of its span: (L, 17, 3) keypoints (zeros where it
    skips the frame) and (L, 4) boxes (NaN there), pixels."""
    rows = slice(track.start, track.stop)
    index = np.flatnonzero(track.selected >= 0)
    keypoints = np.zeros((track.selected.size, 17, 3), np.float32)
    boxes = np.full((track.selected.size, 4), np.nan, np.float32)
    keypoints[index] = padded.keypoints[rows][index, track.selected[index]]
    boxes[index] = padded.boxes[rows][index, track.selected[index]]
    return keypoints, boxes


PERCEPTION_STAGES = ("decode", "detect", "track", "init")


@dataclass
class _ClipState:
    """What the result reports of a clip, filled in as its frames are read."""

    frames: int = 0
    size: tuple[int, int] = (0, 0)
    fps: float = 0.0
    max_people: int = 0
    crowded_frame: int = -1
    people: list[int] = field(default_factory=list)
    smallest: float = math.inf
    tallest: float = 0.0
    duplicate_tracks: int = 0

    def summary(self) -> dict:
        """The detection fields of :class:`PerceptionResult`."""
        return dict(
            max_people=self.max_people,
            detections_median=float(np.median(self.people)) if self.people else 0.0,
            detections_max=max(self.people, default=0),
            smallest_person_px=self.smallest if math.isfinite(self.smallest) else float("nan"),
            duplicate_tracks=self.duplicate_tracks,
        )


@dataclass
class _Detections:
    """Per decoded frame: the people found, their initial estimates (HMR), frame times, crops."""

    found: list[FrameDetections] = field(default_factory=list)
    inits: list[DetectionInit] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    crops: list[list[bytes]] | None = None


def perceive_clip(clip: ClipRef, config: PerceptionConfig, models: PerceptionModels) -> PerceptionResult:
    """Decode, detect, track and initialise one clip.

    Args:
        clip: the input clip, its keypoint source decided by
            :func:`pipeline.perception.keypoint_source.choose_keypoints`: with
            ``keypoints_uri`` set, the keypoints are read from it; without, ``models.detector``
            finds them.
        config: perception settings.
        models: loaded models (:func:`load_perception_models`).

    Returns:
        :class:`PerceptionResult` with one :class:`TrackProblem` per track, or a
        ``reject_reason`` (missing_file, not_a_file, unreadable, no_video_stream, zero_frames, too_long,
        timeout, corrupt_keypoints, no_person, too_small, crowded, failed); ``stage_seconds`` holds the
        wall seconds of each of :data:`PERCEPTION_STAGES`.
    """
    timer = StageTimer(*PERCEPTION_STAGES)
    state = _ClipState()

    def result(**kwargs) -> PerceptionResult:
        return PerceptionResult(
            clip=clip,
            num_frames=state.frames,
            image_size=state.size,
            fps=state.fps,
            **state.summary(),
            stage_seconds=timer.rounded(),
            stage_cpu_seconds={name: round(value, 4) for name, value in timer.cpu_seconds.items()},
            init_source=models.init_source,
            keypoint_source=file_source(clip.keypoints_uri) if clip.keypoints_uri else models.detector_source,
            **kwargs,
        )

    try:
        problems = _perceive(clip, config, models, timer, state)
        return result(problems=tuple(problems))
    except (_Reject, DecodeError, KeypointsError) as exc:
        logger.debug("clip %s rejected: %s (%s)", clip.clip_id, exc.reason, exc.message)
        return result(reject_reason=exc.reason, message=exc.message)
    except Exception as exc:  # an unexpected error is recorded, never raised per clip
        logger.error("clip %s failed: %s", clip.clip_id, traceback.format_exc())
        return result(reject_reason=RejectReason.FAILED, message=f"{type(exc).__name__}: {exc}")


def _perceive(clip: ClipRef, config: PerceptionConfig, models: PerceptionModels, timer: StageTimer,
              state: _ClipState) -> list[TrackProblem]:
    with timer.stage("detect"):
        precomputed = _open_keypoints(clip, models)
    need_frames = precomputed is None or models.hmr is not None or config.store_crops
    with timer.stage("decode"):
        meta, batches = _open_frames(clip, config.decode, precomputed, need_frames)
    state.size = (meta.width, meta.height)
    state.fps = meta.fps
    scale = _keypoint_scale(precomputed, meta) if precomputed is not None else None
    detected = _detect_frames(clip, config, models, timer, state, meta, batches, precomputed, scale)
    if not detected.found:
        raise _Reject(RejectReason.ZERO_FRAMES, f"{clip.uri}: no frame decoded.")
    _check_people(clip, config, state, meta)
    with timer.stage("track"):
        padded = pad_detections(detected.found)
        tracking = tracking_at_rate(config.tracking, meta.fps, config.decode.target_fps)
        tracks = track_people(padded, tracking)
        dropped = duplicate_tracks(
            *zip(*(_track_detections(track, padded) for track in tracks)), [track.start for track in tracks],
            min_confidence=config.min_keypoint_confidence,
        ) if len(tracks) > 1 else []
        state.duplicate_tracks = len(dropped)
        tracks = [track for k, track in enumerate(tracks) if k not in dropped]
    if not tracks:
        raise _Reject(
            RejectReason.NO_PERSON,
            f"{clip.uri}: no person track with at least min_track_length={config.tracking.min_track_length} "
            + (f"(= {tracking.min_track_length} at {meta.fps:g} fps) " if tracking is not config.tracking else "")
            + f"detections ({int(padded.mask.sum())} detections in {padded.num_frames} frames); to keep shorter tracks pass "
            f"--perception_config '{{\"tracking\": {{\"min_track_length\": N}}}}'.",
        )
    with timer.stage("init"):
        init = _initial_estimates(models, padded, detected.inits)
    logger.debug(
        "clip %s: %d frames, %d tracks, init=%s", clip.clip_id, padded.num_frames, len(tracks), models.init_source
    )
    frame_time = np.concatenate(detected.times)
    meta_strings = {"label": clip.label, "split": clip.split, "uri": clip.uri}
    if clip.keypoints_uri is not None:
        meta_strings["keypoints"] = clip.keypoints_uri
    meta_strings["keypoint_source"] = file_source(clip.keypoints_uri) if clip.keypoints_uri else models.detector_source
    return [
        _problem(
            clip, k, track, padded, init, frame_time, (meta.width, meta.height), meta.fps, models.init_source,
            meta_strings, detected.crops,
        )
        for k, track in enumerate(tracks)
    ]


def _open_keypoints(clip: ClipRef, models: PerceptionModels) -> PrecomputedKeypoints | None:
    """The clip's precomputed keypoints (None: the detector finds them); rejects a bad video file."""
    precomputed = None
    if clip.keypoints_uri is not None:
        precomputed = load_keypoints(clip.keypoints_uri)
    elif models.detector is None:
        raise ValueError(
            f"{clip.uri}: no keypoints_uri and no detector loaded; decide the clip's keypoints with "
            "pipeline.perception.keypoint_source.choose_keypoints first."
        )
    problem = local_file_problem(clip.uri)  # dangling links, folders, FIFOs, devices, permissions
    if problem is not None:
        raise _Reject(*problem)
    return precomputed


def _open_frames(clip: ClipRef, decode: DecodeConfig, precomputed: PrecomputedKeypoints | None,
                 need_frames: bool) -> tuple[VideoMeta, Iterator[FrameBatch]]:
    """The decode plan and its frame batches: decoded pixels, or (keypoints without any use
    for pixels) empty frames at the planned times, the video only probed."""
    if need_frames:
        meta, batches = decode_video(clip.uri, decode, clip.time_start, clip.time_end)
        return meta, iter(batches)
    source = probe_video(clip.uri, "auto", decode.timeout_s)
    meta = plan_decode(source, decode, clip.time_start, clip.time_end, backend="probe")
    check_last_frame(meta)
    count = meta.expected_frames
    if count is None:
        # Unknown stream length (no ffprobe): up to the last keypoint frame.
        count = int(math.floor((precomputed.num_frames / source.fps - meta.time_start) * meta.fps + 0.5))
    if count <= 0:
        raise _Reject(RejectReason.ZERO_FRAMES, f"{clip.uri}: the time range holds no frame.")
    index = np.arange(count, dtype=np.int64)
    return meta, iter(
        FrameBatch(np.zeros((len(chunk), 0, 0, 3), np.uint8), chunk, chunk / meta.fps)
        for chunk in np.array_split(index, max(1, math.ceil(count / decode.batch_frames)))
    )


def _keypoint_scale(precomputed: PrecomputedKeypoints, meta: VideoMeta) -> tuple[float, float]:
    """Checks the keypoints against the video; (x, y) factors from their pixels to the decoded frames'."""
    source_frames = meta.source.num_frames
    if source_frames is None and meta.source.duration_s:
        source_frames = int(math.ceil(meta.source.duration_s * meta.source.fps))
    precomputed.check_video(meta.source.width, meta.source.height, source_frames)
    base = precomputed.image_size or (meta.source.width, meta.source.height)
    return (meta.width / base[0], meta.height / base[1])


def _detect_frames(clip: ClipRef, config: PerceptionConfig, models: PerceptionModels, timer: StageTimer,
                   state: _ClipState, meta: VideoMeta, batches: Iterator[FrameBatch],
                   precomputed: PrecomputedKeypoints | None, scale: tuple[float, float] | None) -> _Detections:
    """People in every frame batch, one batch of frames held at a time (HMR and crops run per batch)."""
    detected = _Detections(crops=[] if config.store_crops else None)
    try:
        while True:
            with timer.stage("decode"):
                batch = next(batches, None)
            if batch is None:
                break
            with timer.stage("detect"):
                if precomputed is not None:
                    found = precomputed.for_frames(source_frame_index(meta, batch.frame_index), scale)
                else:
                    found = models.detector.detect(batch.frames)
                found = _count_people(batch, [_filter(f, config) for f in found], state,
                                      config.person_height_floor(meta.height))
            if models.hmr is not None:
                with timer.stage("init"):
                    detected.inits.extend(hmr_initialize(models.hmr, batch.frames, found, config.min_keypoint_confidence))
            if detected.crops is not None:
                with timer.stage("init"):
                    detected.crops.extend(encode_detection_crops(f, d.boxes, config.crop) for f, d in zip(batch.frames, found))
            detected.found.extend(found)
            detected.times.append(batch.frame_time)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return detected


def _count_people(batch: FrameBatch, found: list[FrameDetections], state: _ClipState,
                  min_height: float) -> list[FrameDetections]:
    """Records the batch's frames, people and person heights; returns the people at least
    ``min_height`` pixels tall (the ones tracked, fitted and counted by the crowd rule)."""
    state.frames += len(batch)
    tall = []
    for frame, f in zip(batch.frame_index, found):
        heights = f.boxes[:, 3] - f.boxes[:, 1]
        state.people.append(len(f))
        if len(f):
            state.smallest = min(state.smallest, float(np.nanmin(heights)))
            state.tallest = max(state.tallest, float(np.nanmax(heights)))
        keep = f.select(heights >= min_height) if len(f) else f
        if len(keep) > state.max_people:
            state.max_people, state.crowded_frame = len(keep), int(frame)
        tall.append(keep)
    return tall


def _check_people(clip: ClipRef, config: PerceptionConfig, state: _ClipState, meta: VideoMeta) -> None:
    """The whole clip's people against the rules: somebody, tall enough, not a crowd."""
    flag = "--perception_config"
    if max(state.people, default=0) == 0:
        raise _Reject(
            RejectReason.NO_PERSON,
            f"{clip.uri}: no person detected in {state.frames} frames; check that its keypoints (or the "
            "detector) see the people in it.",
        )
    floor, rule = config.person_height_floor(meta.height), config.person_height_rule(meta.height)
    if state.max_people == 0:
        raise _Reject(
            RejectReason.TOO_SMALL,
            f"{clip.uri}: every person detected is shorter than the minimum person height {floor:.4g} px ({rule}; "
            f"the tallest {state.tallest:.0f} px of the decoded {meta.width}x{meta.height} frames); to fit people "
            f"this small pass {flag} '{{\"min_person_height\": {max(1, math.floor(state.tallest))}}}'.",
        )
    max_people = config.tracking.max_people
    if max_people is not None and state.max_people > max_people:
        raise _Reject(
            RejectReason.CROWDED,
            f"{clip.uri}: up to {state.max_people} people at least {floor:.4g} px tall in a frame (first in frame "
            f"{state.crowded_frame}; the minimum height is {rule}), more than max_people={max_people}; to fit this clip "
            f"pass {flag} '{{\"tracking\": {{\"max_people\": {state.max_people}}}}}' (with --overwrite, or "
            "into a new --output: clips already written are skipped).",
        )


def _initial_estimates(models: PerceptionModels, padded: PaddedDetections,
                       inits: list[DetectionInit]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pose, betas, camera) per frame and detection slot: HMR's, else the keypoint initialiser's."""
    if models.hmr is None:
        estimate = models.keypoint_init(padded.keypoints[padded.mask])
        bounds = np.concatenate([[0], np.cumsum(padded.counts)])
        inits = [
            DetectionInit(estimate.pose[a:b], estimate.betas[a:b], estimate.camera[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
    return _pad_init(inits, padded.mask.shape[1])
