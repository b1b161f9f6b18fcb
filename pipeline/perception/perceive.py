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
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from models.pose_detector import FrameDetections, PoseDetector, YoloPoseDetector
from optimize.problem import TrackProblem
from optimize.validate import boolean, choice, declare_ranges, integer, real, text, validate_fields
from pipeline.perception.crops import CropConfig, encode_detection_crops, track_crops
from pipeline.perception.decode import (
    DecodeConfig,
    DecodeError,
    FrameBatch,
    check_last_frame,
    decode_video,
    plan_decode,
    probe_video,
    source_frame_index,
)
from pipeline.perception.init import DetectionInit, KeypointInitializer, hmr_initialize, mean_pose_from_params
from pipeline.perception.inputs import local_file_problem
from pipeline.perception.keypoints_io import KeypointsError, PrecomputedKeypoints, find_sidecar_keypoints, load_keypoints
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.perception.track import PaddedDetections, Track, TrackingConfig, pad_detections, track_people

logger = logging.getLogger(__name__)

__all__ = ["PerceptionConfig", "PerceptionModels", "load_perception_models", "perceive_clip", "tracking_at_rate"]

KEYPOINT_SOURCES = ("auto", "detector", "precomputed")


@dataclass(frozen=True)
class PerceptionConfig:
    """Settings of the per-clip perception step.

    Attributes:
        decode: decoding bounds and output format.
        tracking: shortest-path tracker settings (crowd rule included).
        keypoints_source: "auto" (the clip's ``keypoints_uri``, else a ``<stem>.coco.json``
            / ``<stem>_openpose/`` next to the video, else the detector), "detector" or
            "precomputed".
        detector_weights: local YOLO ``*-pose.pt`` path (None: no detector).
        detector_confidence: minimum person score.
        detector_iou: NMS IoU threshold.
        detector_image_size: YOLO inference size, pixels.
        detector_batch_size: frames per detector forward pass.
        hmr_checkpoint: SPIN-format HMR checkpoint (None: keypoint-only initialiser).
        smpl_mean_params: SPIN mean-parameter ``.npz`` (required with ``hmr_checkpoint``;
            optional mean pose for the keypoint initialiser).
        hmr_batch_size: crops per HMR forward pass.
        min_keypoint_confidence: keypoints above it count as seen (crop boxes, init).
        min_visible_keypoints: detections with fewer seen keypoints are dropped.
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
    detector_image_size: int = 640
    detector_batch_size: int = 16
    hmr_checkpoint: str | None = None
    smpl_mean_params: str | None = None
    hmr_batch_size: int = 64
    min_keypoint_confidence: float = 0.2
    min_visible_keypoints: int = 4
    store_crops: bool = False
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self) -> None:
        validate_fields(self)  # types and ranges: PERCEPTION_RANGES below
        if self.keypoints_source not in KEYPOINT_SOURCES:
            raise ValueError(f"PerceptionConfig.keypoints_source={self.keypoints_source!r}; use one of {KEYPOINT_SOURCES}.")
        if self.hmr_checkpoint is not None and self.smpl_mean_params is None:
            raise ValueError("PerceptionConfig: hmr_checkpoint needs smpl_mean_params (the SPIN mean-parameter .npz).")


PERCEPTION_RANGES = declare_ranges(PerceptionConfig, {
    # decode, tracking and crop are checked by their own classes.
    "keypoints_source": choice(*KEYPOINT_SOURCES),
    "detector_weights": text(optional=True),
    "detector_confidence": real(ge=0, le=1),
    "detector_iou": real(ge=0, le=1),
    "detector_image_size": integer(ge=32, le=8192),
    "detector_batch_size": integer(ge=1),
    "hmr_checkpoint": text(optional=True),
    "smpl_mean_params": text(optional=True),
    "hmr_batch_size": integer(ge=1),
    "min_keypoint_confidence": real(ge=0, lt=1),
    "min_visible_keypoints": integer(ge=0, le=17),
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
    """

    detector: PoseDetector | None
    hmr: object | None
    keypoint_init: KeypointInitializer
    device: str = "cpu"

    @property
    def init_source(self) -> str:
        return "hmr" if self.hmr is not None else "keypoints"


def load_perception_models(config: PerceptionConfig, body_model, device: str = "cpu") -> PerceptionModels:
    """Load the detector and HMR once (heavy; call in ``DoFn.setup``).

    Args:
        config: perception settings (weights paths).
        body_model: :class:`models.body_model.BodyModel` (keypoint initialiser geometry).
        device: torch device for detector and HMR.

    Raises:
        FileNotFoundError / ValueError: a configured weights file is missing or wrong.
    """
    detector = None
    if config.detector_weights is not None and config.keypoints_source != "precomputed":
        detector = YoloPoseDetector(
            config.detector_weights,
            device=device,
            confidence=config.detector_confidence,
            iou=config.detector_iou,
            image_size=config.detector_image_size,
            batch_size=config.detector_batch_size,
        )
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
    return PerceptionModels(detector, hmr, keypoint_init, device)


class _Reject(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _keypoints_uri(clip: ClipRef, config: PerceptionConfig) -> str | None:
    if config.keypoints_source == "detector":
        return None
    if clip.keypoints_uri:
        return clip.keypoints_uri
    return find_sidecar_keypoints(clip.uri)


def _filter(found: FrameDetections, config: PerceptionConfig) -> FrameDetections:
    seen = (found.keypoints[..., 2] > config.min_keypoint_confidence).sum(-1)
    return found.select(seen >= config.min_visible_keypoints)


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
    kept = selected >= 0
    keypoints = np.zeros((selected.size, 17, 3), np.float32)
    boxes = np.full((selected.size, 4), np.nan, np.float32)
    index = np.flatnonzero(kept)
    keypoints[index] = candidates[index, selected[index]]
    boxes[index] = padded.boxes[rows][index, selected[index]]
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


def perceive_clip(clip: ClipRef, config: PerceptionConfig, models: PerceptionModels) -> PerceptionResult:
    """Decode, detect, track and initialise one clip.

    Args:
        clip: the input clip.
        config: perception settings.
        models: loaded models (:func:`load_perception_models`).

    Returns:
        :class:`PerceptionResult` with one :class:`TrackProblem` per track, or a
        ``reject_reason`` (missing_file, not_a_file, unreadable, no_video_stream, zero_frames, too_long,
        timeout, missing_keypoints, corrupt_keypoints, no_person, crowded, failed).
    """
    seconds = {"decode": 0.0, "detect": 0.0, "track": 0.0, "init": 0.0}
    state = {"frames": 0, "size": (0, 0), "fps": 0.0, "max_people": 0}

    def result(**kwargs) -> PerceptionResult:
        return PerceptionResult(
            clip=clip,
            num_frames=state["frames"],
            image_size=state["size"],
            fps=state["fps"],
            max_people=state["max_people"],
            stage_seconds={k: round(v, 4) for k, v in seconds.items()},
            init_source=models.init_source,
            **kwargs,
        )

    try:
        problems = _perceive(clip, config, models, seconds, state)
        return result(problems=tuple(problems))
    except (_Reject, DecodeError, KeypointsError) as exc:
        logger.debug("clip %s rejected: %s (%s)", clip.clip_id, exc.reason, exc.message)
        return result(reject_reason=exc.reason, message=exc.message)
    except Exception as exc:  # an unexpected error is recorded, never raised per clip
        logger.error("clip %s failed: %s", clip.clip_id, traceback.format_exc())
        return result(reject_reason=RejectReason.FAILED, message=f"{type(exc).__name__}: {exc}")


def _perceive(clip, config, models, seconds, state) -> list[TrackProblem]:
    tick = time.perf_counter()
    keypoints_uri = _keypoints_uri(clip, config)
    precomputed: PrecomputedKeypoints | None = None
    if keypoints_uri is not None:
        precomputed = load_keypoints(keypoints_uri)
    elif config.keypoints_source == "precomputed":
        raise _Reject(
            RejectReason.MISSING_KEYPOINTS,
            f"no precomputed keypoints for {clip.uri}: set keypoints_uri or put <stem>.coco.json next to the video.",
        )
    elif models.detector is None:
        raise _Reject(
            RejectReason.MISSING_KEYPOINTS,
            f"no precomputed keypoints for {clip.uri} and no detector configured (detector_weights).",
        )
    problem = local_file_problem(clip.uri)  # dangling links, folders, FIFOs, devices, permissions
    if problem is not None:
        raise _Reject(*problem)
    seconds["detect"] += time.perf_counter() - tick

    need_frames = precomputed is None or models.hmr is not None or config.store_crops
    detection_crops: list[list[bytes]] | None = [] if config.store_crops else None
    max_people = config.tracking.max_people
    detections: list[FrameDetections] = []
    inits: list[DetectionInit] = []
    times: list[np.ndarray] = []

    if need_frames:
        tick = time.perf_counter()
        meta, batches = decode_video(clip.uri, config.decode, clip.time_start, clip.time_end)
        seconds["decode"] += time.perf_counter() - tick
        batch_iter = iter(batches)
    else:
        tick = time.perf_counter()
        source = probe_video(clip.uri, "auto", config.decode.timeout_s)
        meta = plan_decode(source, config.decode, clip.time_start, clip.time_end, backend="probe")
        check_last_frame(meta)
        seconds["decode"] += time.perf_counter() - tick
        count = meta.expected_frames
        if count is None:
            # Unknown stream length (no ffprobe): up to the last keypoint frame.
            count = int(math.floor((precomputed.num_frames / source.fps - meta.time_start) * meta.fps + 0.5))
        if count <= 0:
            raise _Reject(RejectReason.ZERO_FRAMES, f"{clip.uri}: the time range holds no frame.")
        index = np.arange(count, dtype=np.int64)
        batch_iter = iter(
            FrameBatch(np.zeros((len(chunk), 0, 0, 3), np.uint8), chunk, chunk / meta.fps)
            for chunk in np.array_split(index, max(1, math.ceil(count / config.decode.batch_frames)))
        )
    state["size"] = (meta.width, meta.height)
    state["fps"] = meta.fps
    if precomputed is not None:
        source_frames = meta.source.num_frames
        if source_frames is None and meta.source.duration_s:
            source_frames = int(math.ceil(meta.source.duration_s * meta.source.fps))
        precomputed.check_video(meta.source.width, meta.source.height, source_frames)
        base = precomputed.image_size or (meta.source.width, meta.source.height)
        scale = (meta.width / base[0], meta.height / base[1])

    try:
        while True:
            tick = time.perf_counter()
            batch = next(batch_iter, None)
            seconds["decode"] += time.perf_counter() - tick
            if batch is None:
                break
            tick = time.perf_counter()
            if precomputed is not None:
                source_index = source_frame_index(meta, batch.frame_index)
                found = precomputed.for_frames(source_index, scale)
            else:
                found = models.detector.detect(batch.frames)
            found = [_filter(f, config) for f in found]
            seconds["detect"] += time.perf_counter() - tick
            counts = [len(f) for f in found]
            state["max_people"] = max([state["max_people"]] + counts)
            state["frames"] += len(batch)
            if max_people is not None and state["max_people"] > max_people:
                worst = int(np.argmax(counts))
                raise _Reject(
                    RejectReason.CROWDED,
                    f"{clip.uri}: {counts[worst]} people in frame {int(batch.frame_index[worst])}, more than "
                    f"max_people={max_people}; to fit crowded clips pass --perception_config "
                    f"'{{\"tracking\": {{\"max_people\": {counts[worst]}}}}}'.",
                )
            if models.hmr is not None:
                tick = time.perf_counter()
                inits.extend(hmr_initialize(models.hmr, batch.frames, found, config.min_keypoint_confidence))
                seconds["init"] += time.perf_counter() - tick
            if detection_crops is not None:
                tick = time.perf_counter()
                detection_crops.extend(encode_detection_crops(f, d.boxes, config.crop) for f, d in zip(batch.frames, found))
                seconds["init"] += time.perf_counter() - tick
            detections.extend(found)
            times.append(batch.frame_time)
    finally:
        close = getattr(batch_iter, "close", None)
        if close is not None:
            close()

    if not detections:
        raise _Reject(RejectReason.ZERO_FRAMES, f"{clip.uri}: no frame decoded.")
    if state["max_people"] == 0:
        raise _Reject(
            RejectReason.NO_PERSON,
            f"{clip.uri}: no person detected in {len(detections)} frames; check that its keypoints (or the detector) "
            "see the people in it.",
        )

    tick = time.perf_counter()
    padded = pad_detections(detections)
    tracking = tracking_at_rate(config.tracking, meta.fps, config.decode.target_fps)
    tracks = track_people(padded, tracking)
    seconds["track"] += time.perf_counter() - tick
    if not tracks:
        raise _Reject(
            RejectReason.NO_PERSON,
            f"{clip.uri}: no person track with at least min_track_length={config.tracking.min_track_length} "
            + (f"(= {tracking.min_track_length} at {meta.fps:g} fps) " if tracking is not config.tracking else "")
            + f"detections ({int(padded.mask.sum())} detections in {padded.num_frames} frames); to keep shorter tracks pass "
            f"--perception_config '{{\"tracking\": {{\"min_track_length\": N}}}}'.",
        )

    tick = time.perf_counter()
    if models.hmr is None:
        flat = padded.keypoints[padded.mask]
        estimate = models.keypoint_init(flat)
        counts = padded.counts
        bounds = np.concatenate([[0], np.cumsum(counts)])
        inits = [
            DetectionInit(estimate.pose[a:b], estimate.betas[a:b], estimate.camera[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
    init = _pad_init(inits, padded.mask.shape[1])
    seconds["init"] += time.perf_counter() - tick
    logger.debug(
        "clip %s: %d frames, %d tracks, init=%s", clip.clip_id, padded.num_frames, len(tracks), models.init_source
    )
    frame_time = np.concatenate(times)
    meta_strings = {"label": clip.label, "split": clip.split, "uri": clip.uri}
    if keypoints_uri is not None:
        meta_strings["keypoints"] = keypoints_uri
    return [
        _problem(
            clip, k, track, padded, init, frame_time, (meta.width, meta.height), meta.fps, models.init_source,
            meta_strings, detection_crops,
        )
        for k, track in enumerate(tracks)
    ]
