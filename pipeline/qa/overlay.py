"""QA overlays: the fitted mesh and skeleton drawn over the source video (``vid2mesh render``).

For each frame of a clip, every track of ``frames/`` is drawn in its own colour: the SMPL
mesh of the fit (``pose``, ``betas``) placed by its weak-perspective camera
(``x_px = s * X + tx``, ``y_px = s * Y + ty``, depth ``s * Z``), shaded by
:mod:`pipeline.synth.render` and blended semi-transparently, the fitted COCO-17 skeleton
(``reprojection_2d``) as lines, and the detected keypoints (``keypoints_2d``) as white
dots, so a reader sees at once where the fit and the detector disagree. A label gives the
track id, its selection score in the run's units (``tracks.selection_score``: "track ~52 mm"
under the default predicted-error score, E_norm where the run has no selection yet), the
frame's predicted 3D error (``frames.pred_err_mm``), "no detection" on frames where the
track has no detection, "outlier" on detected frames whose reprojection is above the
inlier bound, and, for a track that did not pass, its selection reason.

The optional side-by-side view puts the per-frame initial estimate on the left and the
bundle-adjusted fit on the right. ``frames/`` of schema 1.0.0 stores no initial
estimate; when the columns ``init_pose``, ``init_betas`` and ``init_camera`` are absent
the left panel shows what the fit started from that the dataset does hold: the detected
keypoints, with a caption that says so.

Frames come from the clip's ``source_uri`` decoded as the job decoded them (at the
stored ``fps``, resized to ``image_width x image_height``) or, when the video is not
available, from a plain background.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from models.joint_names import COCO17_SKELETON
from pipeline.dataset import schema
from pipeline.dataset.reader import FrameFilter, column_to_numpy, frames_schema, read_frames, read_tracks
from pipeline.dataset.selection.table import read_selection_summary
from pipeline.synth.render import Mesh, render_meshes

LOGGER = logging.getLogger(__name__)

__all__ = [
    "INIT_COLUMNS",
    "OverlayConfig",
    "RenderedClip",
    "TrackGeometry",
    "body_model_for_dataset",
    "clip_geometry",
    "draw_overlay",
    "image_space_vertices",
    "overlay_frames",
    "render_clip",
    "source_frames",
    "track_color",
    "write_mp4",
]

INIT_COLUMNS = ("init_pose", "init_betas", "init_camera")
# Distinct, colour-blind friendly track colours (Okabe-Ito, then Tol muted), RGB in [0, 1].
_PALETTE = np.array(
    [
        [0.90, 0.62, 0.00], [0.34, 0.71, 0.91], [0.00, 0.62, 0.45], [0.94, 0.89, 0.26],
        [0.00, 0.45, 0.70], [0.84, 0.37, 0.00], [0.80, 0.47, 0.65], [0.53, 0.80, 0.93],
        [0.27, 0.67, 0.60], [0.60, 0.60, 0.20], [0.87, 0.80, 0.47], [0.67, 0.27, 0.60],
    ]
)
_BODY_CHUNK = 64  # frames per body-model call (bounds memory: 64 x 6890 x 3 floats)


@dataclass(frozen=True)
class OverlayConfig:
    """What an overlay draws.

    Attributes:
        alpha: mesh opacity in [0, 1].
        supersample: anti-aliasing samples per pixel along each axis.
        mesh: draw the shaded mesh.
        skeleton: draw the fitted COCO-17 skeleton (``reprojection_2d``).
        detections: draw the detected keypoints (``keypoints_2d``) above ``min_confidence``.
        labels: write track id / E_norm / "no detection" or "outlier" next to each person, and a caption
            (frame index, panel) at the bottom.
        side_by_side: init (left) | bundle adjusted (right).
        min_confidence: detected keypoints at or below it are not drawn.
        scale: output magnification (overlays of small decoded frames read better at 2).
    """

    alpha: float = 0.6
    supersample: int = 2
    mesh: bool = True
    skeleton: bool = True
    detections: bool = True
    labels: bool = True
    side_by_side: bool = False
    min_confidence: float = 0.2
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"OverlayConfig.alpha={self.alpha}: use an opacity in [0, 1]")
        if self.supersample < 1 or not self.scale > 0:
            raise ValueError("OverlayConfig.supersample must be >= 1 and scale > 0")


@dataclass(frozen=True)
class TrackGeometry:
    """Everything drawn for one track of a clip (``T`` = its rows in ``frames/``).

    Attributes:
        track_id: the track.
        color: (3,) RGB in [0, 1].
        e_norm: the track's E_norm (the run's ``BAConfig.e_norm`` score).
        selected: the track passed selection.
        frame_index: (T,) int decoded frame indices.
        vertices: (T, V, 3) float32 mesh in image space: x px, y px, depth (s * Z, px).
        reprojection: (T, 17, 2) fitted keypoints, px.
        keypoints: (T, 17, 3) detected keypoints, px + confidence.
        inlier: (T,) bool.
        init_vertices: (T, V, 3) image-space mesh of the initial estimate, or None.
        detected: (T,) bool, the track has its own detection on the frame (None: every
            frame counts as detected).
        pred_err_mm: (T,) float predicted 3D joint error of each frame, mm (inf:
            undetermined; None: not in the rows, a shard written before it existed).
        score_name: the run's selection score (``SelectionConfig.score``: "predicted_error",
            "e_norm", ...), None when unknown (the label then gives E_norm).
        score: the track's ``selection_score`` in that score's units (mm for
            "predicted_error"; inf: undetermined).
        reason: the track's ``selection_reason`` after the selection (None: unknown).
    """

    track_id: int
    color: np.ndarray
    e_norm: float
    selected: bool
    frame_index: np.ndarray
    vertices: np.ndarray
    reprojection: np.ndarray
    keypoints: np.ndarray
    inlier: np.ndarray
    init_vertices: np.ndarray | None = None
    detected: np.ndarray | None = None
    pred_err_mm: np.ndarray | None = None
    score_name: str | None = None
    score: float | None = None
    reason: str | None = None

    def track_label(self) -> str:
        """The track's part of its label: its selection score in the score's units, e.g.
        "track ~52 mm" (predicted error), "E_norm 0.84", or E_norm when the score is unknown."""
        if self.score_name is None or self.score is None:
            return f"E_norm {self.e_norm:.3g}"
        if self.score_name == "predicted_error":
            return f"track ~{self.score:.0f} mm" if np.isfinite(self.score) else "track 3D undetermined"
        return f"{'E_norm' if self.score_name == 'e_norm' else self.score_name} {self.score:.3g}"

    def verdict(self) -> str:
        """" (not selected: REASON)" for a track that did not pass selection, else ""."""
        if self.selected:
            return ""
        return f" (not selected: {self.reason})" if self.reason else " (not selected)"

    def predicted(self, row: int) -> str:
        """The row's predicted 3D error for its label: " ~45 mm", " 3D undetermined" or "" (none stored)."""
        if self.pred_err_mm is None:
            return ""
        value = float(self.pred_err_mm[row])
        return f" ~{value:.0f} mm" if np.isfinite(value) else " 3D undetermined"

    def frame_status(self, row: int) -> str:
        """"no detection", "outlier" (detected, reprojection above the inlier bound) or ""
        (an inlier) for a row."""
        if self.detected is not None and not self.detected[row]:
            return "no detection"
        return "" if self.inlier[row] else "outlier"

    def row_of(self, frame_index: int) -> int | None:
        """Row of a decoded frame index, None when the track has no row there."""
        hits = np.nonzero(self.frame_index == frame_index)[0]
        return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class RenderedClip:
    """What :func:`render_clip` wrote.

    Attributes:
        clip_id: the clip.
        frames: decoded frame indices rendered.
        png_paths: one PNG per rendered frame (empty when PNGs were not asked for).
        mp4_path: the video, or None.
        source: "video" (decoded source) or "background" (plain, the video was unavailable).
        notes: what the overlay could not show (e.g. no init columns in the dataset).
    """

    clip_id: str
    frames: tuple[int, ...]
    png_paths: tuple[str, ...] = ()
    mp4_path: str | None = None
    source: str = "video"
    notes: tuple[str, ...] = field(default_factory=tuple)


def track_color(track_id: int) -> np.ndarray:
    """(3,) RGB in [0, 1] of a track (stable: the same track id always has the same colour)."""
    return _PALETTE[int(track_id) % len(_PALETTE)]


def image_space_vertices(vertices: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Place body-frame vertices in the image with the weak-perspective camera.

    Args:
        vertices: (..., V, 3) metres, body frame (x right, y down, z away).
        camera: (..., 3) (s px/m, tx px, ty px).

    Returns:
        (..., V, 3) x px, y px, depth ``s * Z`` px (isotropic, so shading normals are right).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    camera = np.asarray(camera, dtype=np.float64)
    s = camera[..., None, 0:1]
    offset = np.concatenate([camera[..., 1:3], np.zeros(camera.shape[:-1] + (1,))], axis=-1)[..., None, :]
    return (s * vertices + offset).astype(np.float32)


def body_model_for_dataset(
    metadata: dict[str, Any],
    smpl_model: str | None = None,
    model_cache: str | None = None,
    check_hash: bool = True,
):
    """Load the body model a dataset was fitted with (from its schema metadata).

    Args:
        metadata: :func:`pipeline.dataset.schema.read_metadata` of a frames/ schema.
        smpl_model: the SMPL file, for datasets fitted with variant "smpl".
        model_cache: cache folder of the generated stand-in (``--model_cache`` of the run;
            default ``$VID2MESH_CACHE`` or ``~/.cache/vid2mesh``), for variant "standin".
        check_hash: refuse a file whose sha256 differs from the one the run recorded.

    Returns:
        A ``models.body_model.BodyModel`` (float32, CPU).

    Raises:
        ValueError: the file is not the one the run used, or no file was given.
    """
    from models.body_model import BodyModel

    info = metadata.get(schema.KEY_BODY_MODEL) or {}
    variant, gender = info.get("variant", "standin"), info.get("gender", "neutral")
    if smpl_model:
        path = smpl_model
    elif variant == "smpl":
        raise ValueError(
            f"this dataset was fitted with the SMPL file {info.get('file_name')!r} (sha256 {info.get('sha256', '')[:16]}...); "
            "pass it with --smpl_model (it is licensed and never shipped)"
        )
    else:
        from models.standin import ensure_standin

        from models.standin import default_cache_root

        cache = model_cache or str(default_cache_root())
        path = str(getattr(ensure_standin(os.path.join(cache, "standin")), gender))
    expected = info.get("sha256", "")
    if check_hash and expected and set(expected) != {"0"}:
        actual = schema.file_sha256(path)
        if actual != expected:
            raise ValueError(
                f"body model {path} (sha256 {actual[:16]}...) is not the file this dataset was fitted with "
                f"({info.get('file_name')}, sha256 {expected[:16]}...); pass the run's --smpl_model, or disable the check"
            )
    return BodyModel.from_file(path, gender=gender)


def _mesh_vertices(body_model, pose: np.ndarray, betas: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(T, V, 3) image-space vertices of per-frame SMPL parameters (NaN rows stay NaN)."""
    import torch

    out = []
    for start in range(0, pose.shape[0], _BODY_CHUNK):
        sl = slice(start, start + _BODY_CHUNK)
        p = torch.as_tensor(np.nan_to_num(pose[sl]), dtype=torch.float32)
        b = torch.as_tensor(np.nan_to_num(betas[sl]), dtype=torch.float32)
        with torch.no_grad():
            verts = body_model.vertices(p, b).cpu().numpy()
        out.append(image_space_vertices(verts, camera[sl]))
    vertices = np.concatenate(out, axis=0)
    bad = ~(np.isfinite(pose).all(1) & np.isfinite(betas).all(1) & np.isfinite(camera).all(1))
    vertices[bad] = np.nan
    return vertices


def _stack(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(column_to_numpy(table.column(name), table.schema.field(name).type))


def clip_geometry(table: pa.Table, body_model, tracks: Sequence[int] | None = None) -> list[TrackGeometry]:
    """Per-track geometry of one clip's ``frames/`` rows.

    Args:
        table: the clip's rows (any order; one clip).
        body_model: ``models.body_model.BodyModel``.
        tracks: track ids to keep (None: all in the table).
    """
    clips = set(table.column("clip_id").to_pylist())
    if len(clips) > 1:
        raise ValueError(f"clip_geometry takes one clip's rows; got clips {sorted(clips)[:3]}")
    has_init = all(c in table.schema.names for c in INIT_COLUMNS)
    table = table.sort_by([("track_id", "ascending"), ("frame_index", "ascending")])
    track_ids = table.column("track_id").to_numpy()
    out = []
    for track_id in sorted(set(track_ids.tolist())):
        if tracks is not None and track_id not in tracks:
            continue
        rows = table.filter(pa.array(track_ids == track_id))
        pose, betas, camera = _stack(rows, "pose"), _stack(rows, "betas"), _stack(rows, "camera")
        init_vertices = None
        if has_init:
            init_vertices = _mesh_vertices(body_model, _stack(rows, "init_pose"), _stack(rows, "init_betas"), _stack(rows, "init_camera"))
        out.append(
            TrackGeometry(
                track_id=int(track_id),
                color=track_color(track_id),
                e_norm=float(rows.column("e_norm")[0].as_py()),
                selected=bool(rows.column("track_selected")[0].as_py()),
                frame_index=rows.column("frame_index").to_numpy().astype(np.int64),
                vertices=_mesh_vertices(body_model, pose, betas, camera),
                reprojection=_stack(rows, "reprojection_2d"),
                keypoints=_stack(rows, "keypoints_2d"),
                inlier=rows.column("inlier").to_numpy(zero_copy_only=False).astype(bool),
                init_vertices=init_vertices,
                detected=(rows.column("has_detection").to_numpy(zero_copy_only=False).astype(bool)
                          if "has_detection" in rows.column_names else None),
                pred_err_mm=(rows.column("pred_err_mm").to_numpy(zero_copy_only=False).astype(np.float64)
                             if "pred_err_mm" in rows.column_names else None),
            )
        )
    return out


def _with_selection(geometry: list[TrackGeometry], output, clip_id: str) -> list[TrackGeometry]:
    """The tracks with their selection score, score name and final reason from the run's
    ``tracks/`` and ``selection/`` (unchanged where the output has no such rows)."""
    root = str(output)
    if PurePath(root).name == "frames":
        root = str(PurePath(root).parent)
    try:
        rows = read_tracks(root, columns=["clip_id", "track_id", "selection_score", "selection_reason"])
    except (FileNotFoundError, KeyError, ValueError, pa.ArrowInvalid):  # a frames/ folder alone, or an old shard
        return geometry
    summary = read_selection_summary(root) or {}
    name = (summary.get("config") or {}).get("score")
    mine = {t: (score, reason) for c, t, score, reason in zip(*(rows.column(k).to_pylist() for k in (
        "clip_id", "track_id", "selection_score", "selection_reason"))) if c == clip_id}
    out = []
    for geom in geometry:
        score, reason = mine.get(geom.track_id, (None, None))
        out.append(replace(geom, score_name=name if score is not None else None,
                           score=None if score is None else float(score), reason=reason))
    return out


def _rgb255(color: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in color)


def _draw_skeleton(image: np.ndarray, points: np.ndarray, color, scale: float, thickness: int) -> None:
    pts = points[:, :2] * scale
    for a, b in COCO17_SKELETON:
        if np.isfinite(pts[[a, b]]).all():
            cv2.line(image, tuple(np.round(pts[a]).astype(int)), tuple(np.round(pts[b]).astype(int)), color, thickness, cv2.LINE_AA)
    for p in pts:
        if np.isfinite(p).all():
            cv2.circle(image, tuple(np.round(p).astype(int)), thickness + 1, color, -1, cv2.LINE_AA)


def _draw_detections(image: np.ndarray, keypoints: np.ndarray, min_confidence: float, scale: float) -> None:
    for x, y, c in keypoints:
        if c > min_confidence and np.isfinite([x, y]).all():
            centre = (int(round(x * scale)), int(round(y * scale)))
            cv2.circle(image, centre, 3, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(image, centre, 2, (255, 255, 255), -1, cv2.LINE_AA)


def _text_size(image: np.ndarray, text: str, size: float | None = None) -> tuple[float, int, int, int]:
    size = size or max(0.4, image.shape[0] / 700)
    thin = max(1, int(round(size * 1.6)))
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, thin)
    return size, thin, width, height


def _text(image: np.ndarray, text: str, origin: tuple[int, int], color, size: float | None = None,
          taken: list[tuple[int, int, int, int]] | None = None) -> None:
    """Outlined text (readable on any background); ``size`` defaults to the image height.

    ``taken`` holds the boxes of labels already written: the text moves down until it
    overlaps none of them, and its own box is appended.
    """
    size, thin, width, height = _text_size(image, text, size)
    x = int(np.clip(origin[0], 2, max(2, image.shape[1] - width - 2)))
    y = int(np.clip(origin[1], height + 2, image.shape[0] - 4))
    if taken is not None:
        for _ in range(8):
            box = (x, y - height - 2, x + width, y + 3)
            if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
                break
            y = min(y + height + 5, image.shape[0] - 4)
        taken.append((x, y - height - 2, x + width, y + 3))
    # Outline = the same glyphs shifted (a thicker stroke would advance the glyphs differently).
    for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, 2), (0, -2), (2, 0), (-2, 0)):
        cv2.putText(image, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), thin, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, color, thin, cv2.LINE_AA)


def _panel(
    frame: np.ndarray,
    placed: list[tuple[TrackGeometry, int]],
    faces: np.ndarray,
    config: OverlayConfig,
    init: bool,
    caption: str | None,
) -> np.ndarray:
    """One overlay panel: meshes, skeletons, detections and labels of the placed tracks."""
    scale = config.scale
    base = frame if scale == 1 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    meshes = []
    for geom, row in placed:
        verts = (geom.init_vertices if init else geom.vertices)
        if verts is None or not config.mesh:
            continue
        v = verts[row]
        if np.isfinite(v).all():
            meshes.append(Mesh(v * np.array([scale, scale, scale], np.float32), faces, geom.color))
    image = render_meshes(base, meshes, alpha=config.alpha, supersample=config.supersample) if meshes else base.copy()
    thickness = max(1, int(round(scale)))
    taken: list[tuple[int, int, int, int]] = []
    for geom, row in placed:
        color = _rgb255(geom.color)
        if config.skeleton and not init:
            _draw_skeleton(image, geom.reprojection[row], color, scale, thickness)
        if config.detections:
            _draw_detections(image, geom.keypoints[row], config.min_confidence, scale)
        if config.labels:
            kp = geom.keypoints[row]
            visible = kp[:, 2] > config.min_confidence
            anchor = kp[visible, :2] if visible.any() else geom.reprojection[row]
            extent = np.nanmax(anchor[:, 1]) - np.nanmin(anchor[:, 1])
            top_left = (np.nanmin(anchor[:, 0]) * scale, (np.nanmin(anchor[:, 1]) - 0.12 * extent) * scale - 4)
            frame = "" if init else geom.predicted(row)
            text = f"#{geom.track_id}" if init else f"#{geom.track_id} {geom.track_label()}" + (f", frame{frame}" if frame else "")
            status = "" if init else geom.frame_status(row)
            if status:
                text += f" {status}"
            text += geom.verdict()
            _text(image, text, (int(top_left[0]), int(top_left[1])), color, taken=taken)
    if caption and config.labels:
        _text(image, caption, (6, image.shape[0] - 6), (255, 255, 255))
    return image


def draw_overlay(
    frame: np.ndarray,
    frame_index: int,
    tracks: Sequence[TrackGeometry],
    faces: np.ndarray,
    config: OverlayConfig = OverlayConfig(),
) -> np.ndarray:
    """The overlay of one decoded frame.

    Args:
        frame: (H, W, 3) uint8 RGB, the decoded frame (``image_width x image_height``).
        frame_index: its decoded frame index.
        tracks: the clip's tracks (:func:`clip_geometry`).
        faces: (F, 3) mesh faces (``BodyModel.faces``).
        config: what to draw.

    Returns:
        (H * scale, W * scale, 3) uint8 RGB; twice as wide with ``side_by_side``.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"draw_overlay needs an (H, W, 3) uint8 RGB frame; got {frame.shape} {frame.dtype}")
    placed = [(g, row) for g in tracks if (row := g.row_of(frame_index)) is not None]
    fit = _panel(frame, placed, faces, config, init=False,
                 caption=f"bundle adjusted  frame {frame_index}" if config.side_by_side else f"frame {frame_index}")
    if not config.side_by_side:
        return fit
    has_init = bool(tracks) and all(g.init_vertices is not None for g in tracks)
    caption = "per-frame init" if has_init else "init: not stored in frames/ (detections shown)"
    init = _panel(frame, placed, faces, config, init=True, caption=caption)
    gap = np.full((fit.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([init, gap, fit], axis=1)


def source_frames(
    uri: str | None,
    size: tuple[int, int],
    fps: float,
    wanted: Sequence[int],
    time_start: float | None = None,
    time_end: float | None = None,
    background: bool = False,
) -> Iterator[tuple[int, np.ndarray, str]]:
    """The decoded frames an overlay is drawn on, as the job decoded them.

    Args:
        uri: the clip's video (``source_uri``, or a local copy).
        size: (width, height) of the decoded frames of the run, pixels.
        fps: decoded frame rate of the run, Hz.
        wanted: decoded frame indices to yield (sorted, unique).
        time_start, time_end: the clip's source time range, seconds (Kinetics CSV input
            with uncut videos; frames/ does not store it).
        background: skip the video and draw on a plain grey background.

    Yields:
        (frame_index, (H, W, 3) uint8 RGB frame, "video" or "background").

    Raises:
        FileNotFoundError / ValueError: the video cannot be read (message says to pass
            ``--video`` or ``--background``).
    """
    from pipeline.perception.decode import DecodeConfig, DecodeError, decode_video

    width, height = size
    wanted = sorted(set(int(i) for i in wanted))
    if background:
        for index in wanted:
            yield index, np.full((height, width, 3), 96, np.uint8), "background"
        return
    if uri and "://" in uri:  # a remote video (gs://, any fsspec URI): decode a local copy
        import shutil
        import tempfile

        from pipeline.dataset import fs as vfs

        folder = tempfile.mkdtemp(prefix="vid2mesh-render-")
        try:
            filesystem, inner = vfs.resolve(uri)
            if not vfs.is_file(filesystem, inner):
                raise FileNotFoundError(f"source video {uri!r} does not exist; pass --video PATH (a local copy) or --background")
            local = os.path.join(folder, os.path.basename(inner) or "video")
            with filesystem.open_input_stream(inner) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            yield from source_frames(local, size, fps, wanted, time_start, time_end, background)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if not uri or not os.path.isfile(uri):
        raise FileNotFoundError(
            f"source video {uri!r} is not a local file; pass --video PATH (a local copy) or --background to draw on grey"
        )
    # Bounds as loose as the source allows: the loop stops after the last wanted frame.
    config = DecodeConfig(target_fps=fps, max_side=max(width, height), max_pixels=width * height,
                          max_duration_s=24 * 3600.0, max_frames=10**8)
    try:
        _, batches = decode_video(uri, config, time_start, time_end)
        todo = iter(wanted)
        target = next(todo, None)
        for batch in batches:
            for frame, index in zip(batch.frames, batch.frame_index.tolist()):
                while target is not None and target < index:
                    target = next(todo, None)
                if target is None:
                    batches.close()
                    return
                if index == target:
                    if frame.shape[:2] != (height, width):
                        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                    yield index, np.ascontiguousarray(frame), "video"
                    target = next(todo, None)
    except DecodeError as exc:
        raise ValueError(f"cannot decode {uri} ({exc.reason}: {exc.message}); pass --video PATH or --background") from exc


def overlay_frames(
    output: str,
    clip_id: str,
    body_model,
    config: OverlayConfig = OverlayConfig(),
    frames: Sequence[int] | None = None,
    tracks: Sequence[int] | None = None,
    selected_only: bool = True,
    video: str | None = None,
    background: bool = False,
    time_range: tuple[float | None, float | None] = (None, None),
) -> Iterator[tuple[int, np.ndarray, str]]:
    """Overlays of one clip of a run's output, frame by frame.

    Args:
        output: the run's output folder (or its frames/ folder).
        clip_id: the clip.
        body_model: ``models.body_model.BodyModel`` the run fitted with
            (:func:`body_model_for_dataset`).
        config: what to draw.
        frames: decoded frame indices (None: every frame some track has a row for).
        tracks: track ids (None: all).
        selected_only: only tracks that passed selection.
        video: a local copy of the source video (default: the rows' ``source_uri``).
        background: draw on grey instead of the video.
        time_range: the clip's source time range (see :func:`source_frames`).

    Yields:
        (frame_index, overlay (H', W', 3) uint8 RGB, source "video" / "background").
    """
    table = read_frames(output, filter=FrameFilter(selected_only=selected_only, clip_ids=(clip_id,)))
    if table.num_rows == 0:
        raise ValueError(f"clip {clip_id!r} has no {'selected ' if selected_only else ''}rows in {output}/frames; "
                         "pick a clip id from frames/ (or pass --all_tracks)")
    geometry = _with_selection(clip_geometry(table, body_model, tracks), output, clip_id)
    if not geometry:
        raise ValueError(f"clip {clip_id!r} has no track among {list(tracks or [])}")
    present = sorted(set(np.concatenate([g.frame_index for g in geometry]).tolist()))
    wanted = present if frames is None else sorted(set(int(f) for f in frames) & set(present))
    if not wanted:
        raise ValueError(f"none of the asked frames of clip {clip_id!r} has rows; it has frames {present[0]}..{present[-1]}")
    size = (int(table.column("image_width")[0].as_py()), int(table.column("image_height")[0].as_py()))
    fps = float(table.column("fps")[0].as_py())
    uri = video or table.column("source_uri")[0].as_py()
    faces = np.asarray(body_model.faces, dtype=np.int64)
    for index, frame, source in source_frames(uri, size, fps, wanted, *time_range, background=background):
        yield index, draw_overlay(frame, index, geometry, faces, config), source


def _encoder() -> list[str]:
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout
    if " libx264 " in listing:
        return ["-c:v", "libx264", "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p"]
    return ["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"]


def write_mp4(images: Iterable[np.ndarray], path: str, fps: float) -> int:
    """Encode RGB frames to an MP4 (H.264, or MPEG-4 part 2 when libx264 is missing).

    Args:
        images: (H, W, 3) uint8 RGB frames, all the same size (odd sizes are padded).
        path: output file.
        fps: frame rate, Hz.

    Returns:
        Frames written.
    """
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is not on PATH: install it (apt-get install ffmpeg) or render PNG frames only")
    process = None
    count = 0
    size = None
    try:
        for image in images:
            if process is None:
                size = image.shape[:2]
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                process = subprocess.Popen(
                    ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                     "-s", f"{size[1]}x{size[0]}", "-r", f"{fps:.6g}", "-i", "-",
                     "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", *_encoder(), "-movflags", "+faststart", path],
                    stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                )
            if image.shape[:2] != size:
                raise ValueError(f"frame {count} is {image.shape[:2]}, the video is {size}")
            process.stdin.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
            count += 1
    finally:
        if process is not None:
            process.stdin.close()
            error = process.stderr.read().decode(errors="replace")
            if process.wait() != 0:
                raise RuntimeError(f"ffmpeg could not write {path}: {error.strip()[-500:]}")
    return count


def render_clip(
    output: str,
    clip_id: str,
    out_dir: str,
    body_model,
    config: OverlayConfig = OverlayConfig(),
    png: bool = True,
    mp4: bool = True,
    **kwargs,
) -> RenderedClip:
    """Render one clip's overlays to ``out_dir/<clip_id>/frame_<index>.png`` and
    ``out_dir/<clip_id>.mp4``.

    Args:
        output, clip_id, body_model, config: as for :func:`overlay_frames`.
        out_dir: where to write.
        png, mp4: which outputs to write.
        **kwargs: ``frames``, ``tracks``, ``selected_only``, ``video``, ``background``,
            ``time_range`` of :func:`overlay_frames`.
    """
    if not (png or mp4):
        raise ValueError("nothing to write: ask for PNG frames, an MP4 or both")
    notes = []
    if config.side_by_side and not all(c in frames_schema(output).names for c in INIT_COLUMNS):
        notes.append("frames/ has no init_pose/init_betas/init_camera columns: the left panel shows the detections only")
    rows = read_frames(output, columns=["fps"], filter=FrameFilter(selected_only=False, clip_ids=(clip_id,)))
    if rows.num_rows == 0:
        raise ValueError(f"clip {clip_id!r} is not in {output}/frames")
    fps = float(rows.column("fps")[0].as_py())
    clip_dir = Path(out_dir) / clip_id
    rendered, pngs, sources = [], [], set()

    def images() -> Iterator[np.ndarray]:
        for index, image, source in overlay_frames(output, clip_id, body_model, config, **kwargs):
            rendered.append(index)
            sources.add(source)
            if png:
                clip_dir.mkdir(parents=True, exist_ok=True)
                path = clip_dir / f"frame_{index:06d}.png"
                cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                pngs.append(str(path))
            yield image

    mp4_path = None
    if mp4:
        mp4_path = str(Path(out_dir) / f"{clip_id}.mp4")
        write_mp4(images(), mp4_path, fps)
    else:
        for _ in images():
            pass
    LOGGER.info("rendered %d frames of %s into %s", len(rendered), clip_id, out_dir)
    return RenderedClip(clip_id, tuple(rendered), tuple(pngs), mp4_path,
                        "background" if sources == {"background"} else "video", tuple(notes))
