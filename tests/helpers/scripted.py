"""Deterministic stand-in stages for testing the Beam layer without models or videos.

:class:`ScriptedPerception` reads the clip's file name: ``missing`` (no such file ->
``missing_file``), ``zero`` (zero-byte -> ``unreadable``), ``crowded``, ``noperson``,
``explode`` (raises: a failure), otherwise 1-2 tracks of 12-20 frames built from a
seeded generator. :class:`ScriptedBundleAdjust` returns fits whose E_norm is a function of
the clip id (so selection is reproducible); a track of a clip named ``diverge`` diverges
and one named ``bafail`` raises inside the batched call (the DoFn then fits tracks alone).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.records import ClipRef, PerceptionResult, RejectReason, TrackFit, TrackProblem


def _seed(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def make_problem(clip_id: str, track_id: int, num_frames: int, seed: int, people: int = 2) -> TrackProblem:
    """A valid TrackProblem with random but plausible arrays (T frames, ``people`` candidates)."""
    rng = np.random.default_rng(seed)
    T, P = num_frames, people
    keypoints = rng.uniform(20, 300, (T, 17, 3)).astype(np.float32)
    keypoints[..., 2] = rng.uniform(0.3, 1.0, (T, 17))
    selected = np.zeros(T, np.int32)
    selected[T // 2] = -1  # one skipped frame
    keypoints[T // 2, :, 2] = 0
    boxes = np.concatenate([keypoints[..., :2].min(1), keypoints[..., :2].max(1)], -1).astype(np.float32)
    boxes[T // 2] = np.nan
    candidates = np.zeros((T, P, 17, 3), np.float32)
    candidates[:, 0] = keypoints
    candidates[:, 1:] = rng.uniform(20, 300, (T, P - 1, 17, 3))
    return TrackProblem(
        clip_id=clip_id, track_id=track_id, image_size=(320, 240), fps=10.0,
        frame_index=np.arange(3, 3 + T, dtype=np.int32), frame_time=np.arange(3, 3 + T) / 10.0,
        selected=selected, keypoints=keypoints, boxes=boxes, candidates=candidates,
        candidate_mask=np.ones((T, P), bool),
        init_pose=rng.normal(0, 0.1, (T, P, 72)).astype(np.float32),
        init_betas=rng.normal(0, 0.5, (T, P, 10)).astype(np.float32),
        init_camera=np.tile(np.array([200, 160, 120], np.float32), (T, P, 1)),
        init_source="keypoints",
    )


def make_fit(problem: TrackProblem, e_norm: float, status: str = "ok", iterations: int = 17) -> TrackFit:
    """A TrackFit for ``problem`` with the given E_norm (energy = e_norm * length) and the
    same number as its predicted error (mm) on every detected frame (inf on skipped frames),
    so that a test reads one score whichever ``SelectionConfig.score`` it selects by."""
    rng = np.random.default_rng(_seed(f"{problem.clip_id}#{problem.track_id}"))
    T = problem.num_frames
    joints = rng.normal(0, 0.3, (T, 24, 3)).astype(np.float32)
    length = 2.5
    error = rng.uniform(0, 80, T).astype(np.float32)
    error[: T // 2] = rng.uniform(0, 20, T // 2)  # mostly inliers
    inlier = (error < 50) & problem.has_detection
    energies = {"reprojection": e_norm * length * 0.6, "temporal": e_norm * length * 0.3, "prior": e_norm * length * 0.1}
    energies["total"] = sum(energies.values())
    return TrackFit(
        clip_id=problem.clip_id, track_id=problem.track_id, status=status,
        betas=rng.normal(0, 0.5, 10).astype(np.float32), pose=rng.normal(0, 0.2, (T, 72)).astype(np.float32),
        camera=np.tile(np.array([200, 160, 120], np.float32), (T, 1)), joints3d=joints,
        keypoints3d=joints[:, :17].copy(), reprojection=problem.keypoints[..., :2].copy(),
        frame_error=error, matched_candidate=np.where(problem.has_detection, 0, -1).astype(np.int32),
        inlier=inlier, frame_energies={"reprojection": error}, energies=energies,
        trajectory_length=length, e_norm=float(e_norm), iterations=iterations, converged=True,
        pred_err_mm=np.where(problem.has_detection, np.float32(e_norm), np.float32(np.inf)).astype(np.float32),
    )


# The keypoint_source of the clips ScriptedPerception keeps.
SCRIPTED_DETECTOR = "detector:scripted-pose.pt@sha256:0123456789ab"


class ScriptedPerception:
    """A :class:`transforms.stages.PerceptionStage` scripted by file names (see module doc)."""

    def __init__(self, keypoints_source: str = "detect", keypoints_root: str | None = None, has_detector: bool = True):
        self.keypoints_source = keypoints_source
        self.keypoints_root = keypoints_root
        self.has_detector = has_detector
        self.setup_calls = 0

    def setup(self) -> None:
        self.setup_calls += 1

    def describe(self) -> dict[str, Any]:
        return {"stage": "scripted-perception", "keypoints_source": self.keypoints_source}

    def video_rejection(self, clip: ClipRef) -> PerceptionResult | None:
        if not os.path.exists(clip.uri):
            return PerceptionResult(clip, reject_reason=RejectReason.MISSING_FILE, message=f"{clip.uri}: no such file")
        if os.path.getsize(clip.uri) == 0:
            return PerceptionResult(clip, reject_reason=RejectReason.UNREADABLE, message=f"{clip.uri}: zero-byte file")
        return None

    def __call__(self, clip: ClipRef) -> PerceptionResult:
        name = os.path.basename(clip.uri)
        if not os.path.exists(clip.uri):
            return PerceptionResult(clip, reject_reason=RejectReason.MISSING_FILE, message=f"{clip.uri}: no such file")
        if os.path.getsize(clip.uri) == 0:
            return PerceptionResult(clip, reject_reason=RejectReason.UNREADABLE, message=f"{clip.uri}: zero-byte file")
        if "explode" in name:
            raise RuntimeError(f"scripted failure for {clip.clip_id}")
        timing = {"decode": 0.01, "detect": 0.02, "track": 0.001, "init": 0.003}
        if "noperson" in name:
            return PerceptionResult(clip, reject_reason=RejectReason.NO_PERSON, message="no detection", num_frames=20,
                                    image_size=(320, 240), fps=10.0, stage_seconds=timing)
        if "crowded" in name:
            return PerceptionResult(clip, reject_reason=RejectReason.CROWDED, message="9 people in frame 3", num_frames=20,
                                    image_size=(320, 240), fps=10.0, max_people=9, stage_seconds=timing)
        seed = _seed(clip.clip_id)
        tracks = 1 + seed % 2
        problems = tuple(
            make_problem(clip.clip_id, t, 12 + (seed >> (4 * t)) % 9, seed + t) for t in range(tracks)
        )
        return PerceptionResult(clip, problems=problems, num_frames=24, image_size=(320, 240), fps=10.0,
                                max_people=tracks + 1, stage_seconds=timing, init_source="keypoints",
                                keypoint_source=SCRIPTED_DETECTOR)


class ScriptedBundleAdjust:
    """A :class:`transforms.stages.BundleAdjustStage` with E_norm = f(clip id) in [1, 50)."""

    def __init__(self):
        self.calls: list[int] = []

    def setup(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"stage": "scripted-bundle-adjust"}

    def __call__(self, problems: Sequence[TrackProblem]) -> list[TrackFit]:
        self.calls.append(len(problems))
        if any("bafail" in p.clip_id for p in problems):
            if len(problems) > 1:
                raise RuntimeError("scripted batch failure")
            if problems[0].track_id == 0:
                raise RuntimeError(f"scripted track failure {problems[0].clip_id}")
        fits = []
        for p in problems:
            e_norm = 1.0 + (_seed(f"{p.clip_id}#{p.track_id}") % 4900) / 100.0
            fits.append(make_fit(p, e_norm, status="diverged" if "diverge" in p.clip_id else "ok"))
        return fits


SCRIPTED_CLIPS = ("a1_000001_000011", "a2_000002_000012", "a3_000003_000013", "crowded_000000_000010",
                  "explode_000000_000010", "noperson_000000_000010")


def write_scripted_corpus(root, names: Sequence[str] = SCRIPTED_CLIPS):
    """``root/corpus/train/walk/<name>.mp4`` placeholder files that :class:`ScriptedPerception`
    turns into the outcome each name asks for (``crowded``, ``explode``, ...); returns
    ``root/corpus``."""
    folder = root / "corpus" / "train" / "walk"
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    return root / "corpus"
