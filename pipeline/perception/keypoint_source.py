"""Where a clip's 2D keypoints come from: precomputed keypoint files or the pose detector.

The one place that decides it (:func:`choose_keypoints`). The decision is carried by the
clip itself: a clip with ``keypoints_uri`` set is perceived from that file or folder, a clip
without one by the detector.
"""

from __future__ import annotations

from pipeline.perception.inputs import Exists, local_exists, locate_keypoints
from pipeline.perception.keypoints_io import find_sidecar_keypoints
from pipeline.records import ClipRef, PerceptionResult, RejectReason

# The values of the job's --keypoints flag.
KEYPOINT_SOURCES = ("auto", "precomputed", "detect")


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
            "auto" (keypoint files where present, else the detector when there is one).
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
    located = locate_keypoints(clip, keypoints_root, exists)
    if isinstance(located, ClipRef) or source == "precomputed" or not has_detector:
        return located
    if clip.keypoints_uri is None and keypoints_root is not None:
        # Nothing under the root: a file next to a local video still counts.
        return clip.replace(keypoints_uri=find_sidecar_keypoints(clip.uri))
    return clip  # a named but absent file is read, so the clip is rejected with that file's reason
