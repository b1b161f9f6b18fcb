"""Where a clip's 2D keypoints come from: precomputed keypoint files or the pose detector.

The one place that decides it (:func:`choose_keypoints`). The decision is carried by the
clip itself: a clip with ``keypoints_uri`` set is perceived from that file or folder, a clip
without one by the detector.

Precedence under ``--keypoints auto`` (explicit beats implicit; an explicit ``--pose_model``
is never silently ignored):

1. keypoints the input names for the clip: a manifest row's ``keypoints_uri``, or a file
   found under an explicit ``--keypoints_root``;
2. the detector, when ``--pose_model`` is given;
3. keypoint files found next to the video (``<stem>.coco.json``, ``<stem>_openpose/``),
   only without a detector.

``--keypoints precomputed`` uses files only (1 and 3), ``--keypoints detect`` the detector
only. Each clip's rows record the source it used (the ``keypoint_source`` column):
``detector:<weights file name>@sha256:<first 12 hex digits>`` (:func:`detector_source`) or
``keypoints:<path of the keypoint file or folder>`` (:func:`file_source`).
"""

from __future__ import annotations

import dataclasses
import os

from pipeline.perception.inputs import Exists, local_exists, locate_keypoints
from pipeline.records import ClipRef, PerceptionResult, RejectReason

# The values of the job's --keypoints flag.
KEYPOINT_SOURCES = ("auto", "precomputed", "detect")


def detector_source(weights: str | os.PathLike, sha256: str) -> str:
    """The ``keypoint_source`` value of a detector: ``detector:<file name>@sha256:<12 hex>``."""
    return f"detector:{os.path.basename(os.fspath(weights))}@sha256:{sha256[:12]}"


def file_source(path: str) -> str:
    """The ``keypoint_source`` value of precomputed keypoints: ``keypoints:<path>``."""
    return f"keypoints:{path}"


def with_file_source(result: PerceptionResult, path: str | None) -> PerceptionResult:
    """``result`` with its keypoint file named ``path`` (the file as the input gave it, when
    perception read a local copy of it); unchanged when ``path`` is None (the detector)."""
    if path is None:
        return result
    source = file_source(path)
    problems = tuple(dataclasses.replace(p, meta={**p.meta, "keypoints": path, "keypoint_source": source})
                     for p in result.problems)
    return dataclasses.replace(result, keypoint_source=source, problems=problems)


def check_keypoint_source(source: str) -> str:
    """``source`` when it is one of :data:`KEYPOINT_SOURCES`.

    Raises:
        ValueError: another value; the message names the ``--keypoints`` flag.
    """
    if source not in KEYPOINT_SOURCES:
        raise ValueError(f"--keypoints {source!r}: use one of {KEYPOINT_SOURCES}")
    return source


def choose_keypoints(
    clip: ClipRef,
    source: str,
    has_detector: bool,
    keypoints_root: str | None = None,
    exists: Exists = local_exists,
) -> ClipRef | PerceptionResult:
    """Decide where the clip's keypoints come from.

    Args:
        clip: the input clip; its own ``keypoints_uri`` (a manifest's) is tried first.
        source: "precomputed" (keypoint files only), "detect" (the pose detector only) or
            "auto" (named keypoint files, else the detector when there is one, else files
            next to the video; see the module docstring).
        has_detector: a pose detector is loaded.
        keypoints_root: folder of precomputed keypoints (None: next to the videos; see
            :func:`pipeline.perception.inputs.keypoint_candidates`).
        exists: file-system existence check (the Beam layer passes one that sees gs://...).

    Returns:
        The clip to perceive: with ``keypoints_uri`` set, its keypoints are read from that
        file or folder; with ``keypoints_uri`` None, the detector finds them. Or a
        PerceptionResult rejected with ``missing_keypoints`` when no source applies.
    """
    check_keypoint_source(source)
    if source == "detect":
        if not has_detector:
            return PerceptionResult(
                clip=clip,
                reject_reason=RejectReason.MISSING_KEYPOINTS,
                message=f"no precomputed keypoints for {clip.uri} and no detector configured (detector_weights).",
            )
        return clip.replace(keypoints_uri=None)
    if source == "auto" and has_detector and clip.keypoints_uri is None and keypoints_root is None:
        return clip  # an explicit --pose_model wins over files found next to the video
    located = locate_keypoints(clip, keypoints_root, exists)
    if isinstance(located, ClipRef) or source == "precomputed" or not has_detector:
        return located
    return clip  # nothing under the root: the detector; a named but absent file is read and rejected for it
