"""The records that cross the perception -> bundle adjustment -> rows boundaries.

A :class:`TrackProblem` is what the per-clip perception step emits for one person track
(a few hundred KB at most: it is what crosses a Beam boundary). A :class:`TrackFit` is
what :func:`optimize.bundle_adjust.bundle_adjust` returns for it. Both hold plain numpy
arrays so they pickle cheaply and carry no torch state.

Conventions (shared by every stage, see ``docs/conventions.md``):

* Keypoints are COCO-17 in ultralytics order (``models.joint_names.COCO17_NAMES``), in
  pixels of the *decoded* frame, origin at the top-left pixel corner, x right, y down,
  with a confidence in [0, 1] as the third channel. A missing keypoint has confidence 0.
* Camera is weak perspective per frame, ``x = s * Pi(R X) + (tx, ty)`` in pixels
  (paper eq. 3): ``s`` in pixels per metre, ``(tx, ty)`` in pixels. The global rotation R
  is the first 3 entries of the SMPL pose vector (axis-angle, radians).
* SMPL pose is 72 axis-angle values (24 joints x 3, radians), shape is 10 betas.
* ``T`` is the number of frames of the track (consecutive decoded frames, first to last
  frame in which the track was seen), ``P`` the maximum number of candidate detections
  per frame in this problem (padding is marked by ``candidate_mask``), ``K = 17``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

NUM_KEYPOINTS = 17
NUM_POSE = 72
NUM_BETAS = 10
NUM_CAMERA = 3
NUM_JOINTS = NUM_POSE // 3  # SMPL-24


@dataclass(frozen=True)
class TrackProblem:
    """One person track of one clip, ready for bundle adjustment.

    Attributes:
        clip_id: deterministic id of the source clip.
        track_id: 0-based index of the track within the clip (0 = first path extracted).
        image_size: (width, height) of the decoded frames, pixels.
        fps: frame rate of the decoded frames, Hz.
        frame_index: (T,) int32, index of each frame in the decoded clip.
        frame_time: (T,) float64, seconds from the start of the decoded clip.
        selected: (T,) int32, index into the P axis of the detection the tracker picked,
            -1 where the tracker skipped the frame.
        keypoints: (T, 17, 3) float32, the selected detection (pixels + confidence);
            confidence 0 everywhere on skipped frames.
        boxes: (T, 4) float32, selected detection box x0, y0, x1, y1 in pixels, NaN on
            skipped frames.
        candidates: (T, P, 17, 3) float32, every candidate detection of the frame that
            the reprojection term may match (pixels + confidence), zero-padded.
        candidate_mask: (T, P) bool, True where ``candidates`` holds a real detection.
        init_pose: (T, P, 72) float32, per-candidate SMPL pose estimate (axis-angle, rad).
        init_betas: (T, P, 10) float32, per-candidate shape estimate.
        init_camera: (T, P, 3) float32, per-candidate camera (s px/m, tx px, ty px).
        init_source: "hmr" or "keypoints" (which initialiser produced ``init_*``).
        meta: small free-form string metadata (label, split, source uri, ...).
        crops: optional JPEG bytes of the tracked person's crop per frame (T entries, b""
            on skipped frames), only when the run stores crops (``--store_crops``);
            empty tuple otherwise. Made inside the perception worker, where frames live.
    """

    clip_id: str
    track_id: int
    image_size: tuple[int, int]
    fps: float
    frame_index: np.ndarray
    frame_time: np.ndarray
    selected: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    candidates: np.ndarray
    candidate_mask: np.ndarray
    init_pose: np.ndarray
    init_betas: np.ndarray
    init_camera: np.ndarray
    init_source: str = "hmr"
    meta: dict[str, str] = field(default_factory=dict)
    crops: tuple[bytes, ...] = ()

    @property
    def num_frames(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.shape[1])

    @property
    def has_detection(self) -> np.ndarray:
        """(T,) bool, True where the tracker kept a detection for this track."""
        return self.selected >= 0

    def validate(self) -> None:
        """Check shapes and dtypes; raise ValueError naming the field and the track."""
        T, P = self.num_frames, self.num_candidates
        expected = {
            "frame_index": (T,),
            "frame_time": (T,),
            "selected": (T,),
            "keypoints": (T, NUM_KEYPOINTS, 3),
            "boxes": (T, 4),
            "candidates": (T, P, NUM_KEYPOINTS, 3),
            "candidate_mask": (T, P),
            "init_pose": (T, P, NUM_POSE),
            "init_betas": (T, P, NUM_BETAS),
            "init_camera": (T, P, NUM_CAMERA),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(
                    f"TrackProblem {self.clip_id}#{self.track_id}: field {name!r} has shape "
                    f"{got}, expected {shape}; build problems with pipeline.perception.perceive."
                )
        if T < 1 or P < 1:
            raise ValueError(f"TrackProblem {self.clip_id}#{self.track_id} is empty (T={T}, P={P}).")
        if not (isinstance(self.fps, (int, float, np.floating, np.integer)) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"TrackProblem {self.clip_id}#{self.track_id}: fps={self.fps!r}; the decoded frame rate "
                             f"must be a finite number > 0 (it scales the temporal terms).")
        if self.crops and len(self.crops) != T:
            raise ValueError(f"TrackProblem {self.clip_id}#{self.track_id}: {len(self.crops)} crops for {T} frames.")
        if self.selected.max() >= P:
            raise ValueError(f"TrackProblem {self.clip_id}#{self.track_id}: selected index out of range.")

    def replace(self, **changes) -> "TrackProblem":
        return dataclasses.replace(self, **changes)

    def piece(self, start: int, stop: int, track_id: int) -> "TrackProblem":
        """Frames ``start:stop`` of this track as a track of its own (identity-switch pieces).

        Args:
            start, stop: frame positions (0-based, along T) of the piece, stop exclusive.
            track_id: the piece's id (unique within the clip).
        """
        if not 0 <= start < stop <= self.num_frames:
            raise ValueError(f"TrackProblem {self.clip_id}#{self.track_id}: piece {start}:{stop} out of 0:{self.num_frames}")
        cut = slice(start, stop)
        return dataclasses.replace(
            self, track_id=int(track_id), frame_index=self.frame_index[cut], frame_time=self.frame_time[cut],
            selected=self.selected[cut], keypoints=self.keypoints[cut], boxes=self.boxes[cut],
            candidates=self.candidates[cut], candidate_mask=self.candidate_mask[cut], init_pose=self.init_pose[cut],
            init_betas=self.init_betas[cut], init_camera=self.init_camera[cut],
            meta={**self.meta, "parent_track_id": str(self.track_id)}, crops=tuple(self.crops[cut]) if self.crops else (),
        )


@dataclass(frozen=True)
class TrackFit:
    """The bundle-adjusted result for one :class:`TrackProblem`.

    Units: with ``BAConfig.units == "relative"`` (the default) the solver works in
    *reference pixels* (image pixels x ``unit_scale``: the person rescaled to
    ``BAConfig.reference_height_px``); the image-space arrays here (``camera``,
    ``reprojection``, ``reprojection_error_px``) are converted back to image pixels, while
    the energies (``frame_error``, ``detection_energy``, ``frame_energies``, ``energies``,
    ``e_norm``) stay in the solver's units, so they do not depend on the person's size.

    Attributes:
        clip_id, track_id: copied from the problem.
        status: "ok", "diverged" (NaN/Inf or exploding energy: never written as data),
            "failed" (exception; ``message`` says why) or "split" (an identity switch was
            found: the track was cut and its ``pieces`` fitted instead; its own arrays are
            NaN and never written as frames). Both are built by :meth:`failed`.
        betas: (10,) float32 shape, shared by all frames.
        pose: (T, 72) float32 axis-angle pose per frame (radians).
        camera: (T, 3) float32 weak-perspective camera per frame (s px/m, tx px, ty px).
        joints3d: (T, 24, 3) float32 SMPL-24 joints, metres, body frame rotated by the
            global orientation (no translation: weak perspective has none).
        keypoints3d: (T, 17, 3) float32 COCO-17 joints as seen from SMPL, metres.
        reprojection: (T, 17, 2) float32 projected COCO-17 keypoints, pixels.
        frame_error: (T,) float32 per-frame reprojection energy before the tau_R cap
            (min over candidates of sum_i w_i rho(x_i - x_det,i)), solver pixels; NaN on
            frames with no candidate detection (null in Parquet).
        matched_candidate: (T,) int32 candidate index achieving that minimum (-1: none).
        inlier: (T,) bool, the track has its own detection on the frame and
            ``detection_energy < tau_R`` (never True on a skipped frame, so inlier frames
            <= detected frames).
        frame_energies: mapping term name -> (T,) float32 per-frame energy of the term.
        energies: mapping term name -> float total of each term; "total" is E.
        trajectory_length: sum over t, i of ||X_i^t - X_i^{t-1}|| in metres.
        e_norm: the track's selection score (``BAConfig.e_norm``: E / trajectory_length,
            the paper's, or E / T); inf when undefined (a still track, no frame).
        iterations: solver iterations this track took (LM: linear solves; L-BFGS: steps).
        converged: True when the track met its own stopping criterion.
        message: free text (failure reason, solver notes).
        detection_energy: (T,) float32 robust reprojection energy against the track's own
            detection, sum_i w_i rho(x_i - x_det,i), solver pixels; NaN on skipped frames.
        reprojection_error_px: (T,) float32 confidence-weighted mean distance between the
            projected and the track's own detected keypoints, image pixels; NaN on skipped
            frames.
        reprojection_error_rel: (T,) float32 ``reprojection_error_px`` divided by the
            fitted person's height in the frame (camera s x 1.7 m); NaN on skipped frames.
        pose_nll: (T,) float32 GMM negative log-likelihood of the body pose minus its
            minimum over the mixture means (nats; 0 = the most likely pose); NaN when the
            fit ran without a prior.
        unit_scale: solver pixels per image pixel of this track (1 in ``pixels`` units).
        person_scale: the track's scale used for the units, pixels per metre (median init
            camera s over detected frames).
        parent_track_id: -1, or the id of the track this piece was cut from.
        split_frame: -1, or (on a piece) the ``frame_index`` of the identity switch that
            starts it (its first frame), or (first piece) the switch that ends it.
        piece_start: position (along the parent's T) of a piece's first frame; 0 otherwise.
        switch_frames: on a "split" parent, the ``frame_index`` of each identity switch (the
            confirmed candidates: where the track was cut).
        switch_candidates: the ``frame_index`` of each candidate cut the detections gave
            (:func:`optimize.track_metrics.identity_switches`), confirmed or not; on the
            "split" parent, or on the whole track's fit when none was confirmed.
        switch_gain: per candidate (same order), the confirmation statistic: the energy
            that fitting its window as two people saves, per detected frame of the window,
            solver units (``BAConfig.switch_confirm_gain`` is its threshold); NaN where it
            was not tested (a jump candidate, cut on the detections' evidence;
            ``switch_confirm`` off; a window without enough detections).
        pieces: on a "split" parent, the pieces' fits (each a full TrackFit).
        pred_err_mm: (T,) float32 predicted 3D joint error per frame, millimetres: the
            fit's own uncertainty (the Gauss-Newton covariance at the solution propagated
            to the pelvis-aligned joints, :mod:`optimize.uncertainty`), a prediction of
            MPJPE; inf where undetermined (no detection on the frame, a normal matrix that
            is not positive definite, a diverged or failed fit). None: not computed.
        pred_err_track_mm: the track's predicted 3D joint error, mm, over *every* frame,
            those the fit interpolates through a detection gap included (there the same
            propagation gives the error of a pose held only by the temporal and pose
            priors, larger the farther the frame is from a detection); inf when the normal
            matrix is not positive definite or the fit is not ok; NaN: not computed
            (:func:`optimize.track_metrics.predicted_error` then averages ``pred_err_mm``).
        init_disagreement_mm: (T,) float32 pelvis-aligned mean joint distance between the
            fit and the per-frame init of the track's own detection, mm
            (:func:`optimize.track_metrics.init_disagreement_mm`); NaN on frames without a
            detection. None: not computed.
        frame_score_mm: (T,) float32 the frame form of the selection score, mm, lower is
            better (:func:`optimize.track_metrics.frame_score_mm`: the geometric mean of
            the frame's and the track's predicted error and the frame's
            sqrt(pred_err^2 + init_disagreement^2)); inf where the frame or the track is
            undetermined. None: not computed.
        pose_density_outliers: (T,) int32 body joints whose rotation is below its per-joint
            density threshold under the GMM prior (:mod:`optimize.plausibility`); None:
            not computed (no prior).
        joint_limit_violations: (T,) int32 knees and elbows outside their anatomical
            limits (:data:`optimize.plausibility.HINGE_LIMITS`); None: not computed.
    """

    clip_id: str
    track_id: int
    status: str
    betas: np.ndarray
    pose: np.ndarray
    camera: np.ndarray
    joints3d: np.ndarray
    keypoints3d: np.ndarray
    reprojection: np.ndarray
    frame_error: np.ndarray
    matched_candidate: np.ndarray
    inlier: np.ndarray
    frame_energies: dict[str, np.ndarray]
    energies: dict[str, float]
    trajectory_length: float
    e_norm: float
    iterations: int
    converged: bool
    message: str = ""
    detection_energy: np.ndarray | None = None
    reprojection_error_px: np.ndarray | None = None
    reprojection_error_rel: np.ndarray | None = None
    pose_nll: np.ndarray | None = None
    unit_scale: float = 1.0
    person_scale: float = float("nan")
    parent_track_id: int = -1
    split_frame: int = -1
    piece_start: int = 0
    switch_frames: tuple[int, ...] = ()
    switch_candidates: tuple[int, ...] = ()
    switch_gain: tuple[float, ...] = ()
    pieces: tuple["TrackFit", ...] = ()
    pred_err_mm: np.ndarray | None = None
    pred_err_track_mm: float = float("nan")
    init_disagreement_mm: np.ndarray | None = None
    frame_score_mm: np.ndarray | None = None
    pose_density_outliers: np.ndarray | None = None
    joint_limit_violations: np.ndarray | None = None

    @classmethod
    def failed(cls, problem: TrackProblem, message: str) -> "TrackFit":
        """The fit of a track that could not be fitted: status "failed", the whole ``message``.

        Numbers that do not exist are NaN (arrays shaped as a real fit's), energies empty,
        ``trajectory_length`` 0 and ``e_norm`` inf (it never ranks), ``matched_candidate``
        -1, no inlier frame. Never written as frames; the writer truncates the message.
        """
        T = int(np.asarray(problem.frame_index).shape[0])
        nan = lambda *shape: np.full(shape, np.nan, np.float32)  # noqa: E731
        return cls(
            clip_id=problem.clip_id, track_id=problem.track_id, status="failed",
            betas=nan(NUM_BETAS), pose=nan(T, NUM_POSE), camera=nan(T, NUM_CAMERA),
            joints3d=nan(T, NUM_JOINTS, 3), keypoints3d=nan(T, NUM_KEYPOINTS, 3), reprojection=nan(T, NUM_KEYPOINTS, 2),
            frame_error=nan(T), matched_candidate=np.full(T, -1, np.int32), inlier=np.zeros(T, bool),
            frame_energies={}, energies={}, trajectory_length=0.0, e_norm=math.inf, iterations=0,
            converged=False, message=message, pred_err_mm=np.full(T, np.inf, np.float32),
            frame_score_mm=np.full(T, np.inf, np.float32),
        )

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])

    def replace(self, **changes) -> "TrackFit":
        return dataclasses.replace(self, **changes)
