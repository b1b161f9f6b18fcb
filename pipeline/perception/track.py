"""Shortest-path tracking of every person in a clip (paper, section 4, extended).

The paper links one person through a clip with a shortest path over the frames: the cost
of an edge between detections in consecutive frames is their keypoint distance in pixels,
and a frame may be skipped at a penalty of 100 px. A path's cost is therefore

    skip_penalty x (frames of the clip without a kept detection) + sum of link costs,

where a link from detection i of frame t - g to detection j of frame t costs the
confidence-weighted mean keypoint distance plus ``skip_penalty`` x (g - 1).

**Every person, jointly.** Extracting the best path, removing its detections and repeating
is greedy: an early path that hopped onto another person where its own was missed can
never give the detections back. Here the paths are found together as a min-cost flow
(successive shortest paths over the residual graph, Dijkstra with potentials): each new
path is the cheapest one *given that earlier paths may be re-routed*, so a later person can
take back detections an earlier path borrowed. Each unit of flow is one person's path with
the paper's cost above plus a start cost; another path is added while it lowers the total,
i.e. while its cost is below ``skip_penalty`` x T (the cost of the person being absent).
The start cost ``skip_penalty`` x (``min_track_length`` - 1) makes a path worth adding only
when it keeps at least ``min_track_length`` detections, the flow form of "repeat while the
best path has enough real detections".

**Gaps bridged with motion.** Where two people of similar size cross while each is missed
in turn, the keypoint distance alone cannot tell who is who. After a first solve, each
detection gets a constant-velocity estimate from its own track on each side (the past
``velocity_window`` links for extrapolating forward, the future ones for extrapolating
backward); the next solve compares a detection with the other end's *predicted* keypoints
across the g frames between them (mean of the forward and backward predictions). Velocities
come from one side only so that an error on the other side of a crossing cannot leak into
them. ``motion_passes`` re-solves this way (0 = the paper's distance only).

**Gaps are opened, not only extended.** With the paper's cost alone, the paths of two
people who walk side by side (or of a person hidden behind another) can share the visible
person's detections in any interleaving at the same total cost, and the optimum zig-zags
between them. Each link across skipped frames therefore also pays ``gap_cost`` (60 px),
so a path prefers one long gap to many short ones.

**Distances weigh more than gaps.** The gap cost has a side effect: a path whose person is
hidden for a moment saves a gap by taking a neighbour's detection there (and the neighbour
pays one longer gap instead of two short ones, at no extra cost). A link therefore costs
``distance_weight`` (3) x its keypoint distance, so such a detour (tens of pixels off the
prediction on both of its links) costs more than the gap it saves; with the paper's
weight of 1 the gap cost decides.

**Completed keypoints count little.** A detection's unseen keypoints, filled in from its
previous path (:class:`Motion`), would otherwise make it look like whichever person that
path followed; a keypoint that either end only has by completion weighs
``filled_keypoint_weight`` (0.1) in the link distance, so the seen ones decide whenever
there are some.

Guards that keep one path on one person:

* a link is allowed only when the detections share ``min_common_keypoints`` confident
  keypoints and their distance is under ``plain_link_gate`` (0.2, first solve) or, between
  predictions, ``link_gate`` (0.15) x the smaller person height x sqrt(g);
* a gap bridges at most ``max_gap`` (20) frames;
* a kept track fills at least ``min_track_fill`` of its frame span.

Link costs are vectorised over frames, gaps and detection pairs (O(T x G x P^2) pairs, a
centroid pre-filter before the keypoint distances). Across a gap (g > 1) only the
``gap_links_per_detection`` nearest links of each detection (as source or as destination,
per gap length) are kept: crowds of look-alike detections otherwise make most links long-gap
links between them. Each flow augmentation is one sparse Dijkstra (scipy) over the usable
arcs of the residual graph. The first solve, which only provides the velocities, bridges
at most ``first_pass_max_gap`` frames.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from models.pose_detector import FrameDetections
from optimize.validate import declare_ranges, integer, real, validate_fields

__all__ = [
    "Links",
    "PaddedDetections",
    "Track",
    "TrackingConfig",
    "link_costs",
    "pad_detections",
    "track_people",
    "Motion",
    "track_motion",
]


@dataclass(frozen=True)
class TrackingConfig:
    """Settings of the shortest-path tracker.

    Attributes:
        skip_penalty: cost of a frame without a kept detection, pixels (paper: 100).
        min_track_length: fewest real detections of a kept track.
        max_people: a clip with more detections than this in any frame is ``crowded``
            (paper: 6; the rule is applied by ``pipeline.perception.perceive``); None disables it.
        max_gap: longest run of skipped frames bridged inside one track.
        link_gate: largest link distance between constant-velocity predictions as a
            fraction of the smaller person's height, times sqrt of the frame step (keeps a
            path from hopping onto another person).
        plain_link_gate: the same without predictions (first solve, detections on no
            path): wider, as people move between frames (low frame rates).
        min_common_keypoints: jointly confident keypoints needed to link two detections.
        min_keypoint_confidence: keypoints at or below it are ignored by the link cost.
        max_tracks: most paths in the flow (safety bound).
        motion_passes: re-solves with constant-velocity prediction across each link
            (velocities from the previous solve); 0 = the paper's distance only.
        velocity_window: links of a track on each side that a detection's velocity is
            averaged over.
        min_track_fill: fewest kept detections per frame of a track's span (drops paths
            stitched from scattered false positives).
        gap_cost: extra cost of each link across skipped frames, pixels, on top of
            ``skip_penalty`` per skipped frame (see the module docstring).
        filled_keypoint_weight: weight factor, in link distances, of keypoints that one
            end only has by completion from its previous path.
        distance_weight: factor on a link's keypoint distance in its cost (paper: 1).
        gap_links_per_detection: links kept per detection and gap length (g > 1), the
            nearest ones as source or destination; None keeps all.
        first_pass_max_gap: ``max_gap`` of the first solve when ``motion_passes`` > 0
            (it only provides velocities).
    """

    skip_penalty: float = 100.0
    min_track_length: int = 10
    max_people: int | None = 6
    max_gap: int = 20
    link_gate: float = 0.15
    plain_link_gate: float = 0.2
    min_common_keypoints: int = 3
    min_keypoint_confidence: float = 0.2
    max_tracks: int = 64
    motion_passes: int = 1
    velocity_window: int = 10
    min_track_fill: float = 0.5
    gap_cost: float = 60.0
    filled_keypoint_weight: float = 0.1
    distance_weight: float = 3.0
    gap_links_per_detection: int | None = 3
    first_pass_max_gap: int = 8

    def __post_init__(self) -> None:
        validate_fields(self)  # types and ranges: TRACKING_RANGES below
        if self.skip_penalty <= 0:
            raise ValueError(f"TrackingConfig.skip_penalty={self.skip_penalty} must be > 0 pixels.")
        if self.min_track_length < 1 or min(self.max_gap, self.first_pass_max_gap) < 0 or self.min_common_keypoints < 1:
            raise ValueError(
                "TrackingConfig: min_track_length and min_common_keypoints >= 1, max_gap and first_pass_max_gap >= 0."
            )
        if self.max_people is not None and self.max_people < 1:
            raise ValueError("TrackingConfig.max_people must be >= 1 or None.")
        if self.gap_cost < 0:
            raise ValueError(f"TrackingConfig.gap_cost={self.gap_cost} must be >= 0 pixels.")
        if self.distance_weight <= 0 or not 0 <= self.filled_keypoint_weight <= 1:
            raise ValueError(
                f"TrackingConfig: distance_weight={self.distance_weight} must be > 0 and "
                f"filled_keypoint_weight={self.filled_keypoint_weight} in [0, 1]."
            )
        if self.gap_links_per_detection is not None and self.gap_links_per_detection < 1:
            raise ValueError("TrackingConfig.gap_links_per_detection must be >= 1 or None.")
        if self.motion_passes < 0 or self.velocity_window < 1 or self.max_tracks < 1:
            raise ValueError("TrackingConfig: motion_passes >= 0, velocity_window >= 1 and max_tracks >= 1.")

    @property
    def start_cost(self) -> float:
        """Cost of starting a path, pixels: a path pays off only with ``min_track_length`` detections."""
        return self.skip_penalty * (self.min_track_length - 1)


TRACKING_RANGES = declare_ranges(TrackingConfig, {
    "skip_penalty": real(gt=0),
    "min_track_length": integer(ge=1),
    "max_people": integer(ge=1, optional=True),
    "max_gap": integer(ge=0),
    "link_gate": real(gt=0),
    "plain_link_gate": real(gt=0),
    "min_common_keypoints": integer(ge=1, le=17),
    "min_keypoint_confidence": real(ge=0, lt=1),
    "max_tracks": integer(ge=1),
    "motion_passes": integer(ge=0),
    "velocity_window": integer(ge=1),
    "min_track_fill": real(ge=0, le=1),
    "gap_cost": real(ge=0),
    "filled_keypoint_weight": real(ge=0, le=1),
    "distance_weight": real(gt=0),
    "gap_links_per_detection": integer(ge=1, optional=True),
    "first_pass_max_gap": integer(ge=0),
})


@dataclass(frozen=True)
class PaddedDetections:
    """All detections of a clip, padded to the most people in a frame.

    Attributes:
        keypoints: (T, P, 17, 3) float32 pixels + confidence, zeros where padded.
        boxes: (T, P, 4) float32 x0, y0, x1, y1 pixels, NaN where padded.
        scores: (T, P) float32, 0 where padded.
        mask: (T, P) bool, True for real detections.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    mask: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.mask.shape[0])

    @property
    def counts(self) -> np.ndarray:
        """(T,) detections per frame."""
        return self.mask.sum(axis=1)


def pad_detections(detections: Sequence[FrameDetections], min_slots: int = 1) -> PaddedDetections:
    """Stack per-frame detections into padded arrays (P >= ``min_slots``)."""
    T = len(detections)
    P = max([len(d) for d in detections] + [min_slots])
    keypoints = np.zeros((T, P, 17, 3), np.float32)
    boxes = np.full((T, P, 4), np.nan, np.float32)
    scores = np.zeros((T, P), np.float32)
    mask = np.zeros((T, P), bool)
    for t, found in enumerate(detections):
        n = len(found)
        keypoints[t, :n] = found.keypoints
        boxes[t, :n] = found.boxes
        scores[t, :n] = found.scores
        mask[t, :n] = True
    return PaddedDetections(keypoints, boxes, scores, mask)


@dataclass(frozen=True)
class Track:
    """One person's path.

    Attributes:
        start: first frame with a kept detection.
        selected: (L,) int32 detection index per frame from ``start`` to the last kept
            frame, -1 where the path skips the frame.
        cost: path cost in pixels: ``skip_penalty`` x frames of the clip without a kept
            detection + the keypoint distances of its links.
    """

    start: int
    selected: np.ndarray
    cost: float

    @property
    def stop(self) -> int:
        """One past the last frame."""
        return self.start + int(self.selected.shape[0])

    @property
    def num_detections(self) -> int:
        return int((self.selected >= 0).sum())


def _person_height(keypoints: np.ndarray, boxes: np.ndarray, threshold: float) -> np.ndarray:
    """(T, P) person height in pixels: box height, else keypoint extent."""
    height = boxes[..., 3] - boxes[..., 1]
    visible = keypoints[..., 2] > threshold
    y = keypoints[..., 1]
    extent = np.where(visible, y, -np.inf).max(-1) - np.where(visible, y, np.inf).min(-1)
    extent = np.where(np.isfinite(extent), extent, 0.0)
    height = np.where(np.isfinite(height) & (height > 0), height, extent)
    return np.maximum(height, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Links:
    """Allowed links between detections, sorted by the frame they end in.

    Attributes:
        src_frame, src_det, dst_frame, dst_det: (E,) int32 endpoints (src before dst).
        distance: (E,) float64 confidence-weighted mean keypoint distance in pixels
            (between predicted keypoints when velocities were given).
        cost: (E,) float64 ``distance_weight`` x ``distance`` + ``skip_penalty`` per frame
            skipped between the endpoints + ``gap_cost`` when any is skipped.
        frame_start: (T + 1,) offsets: links ending in frame t are
            ``frame_start[t]:frame_start[t + 1]``.
    """

    src_frame: np.ndarray
    src_det: np.ndarray
    dst_frame: np.ndarray
    dst_det: np.ndarray
    distance: np.ndarray
    cost: np.ndarray
    frame_start: np.ndarray


def _pair_weights(
    a: np.ndarray, b: np.ndarray, threshold: float, filled: np.ndarray | None, filled_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint weights of detection pairs for :func:`_pair_distances`.

    Args:
        a, b: (M, 17, 3) pixels + confidence.
        threshold: keypoints at or below this confidence in either detection get weight 0;
            otherwise a keypoint weighs the smaller of its two confidences.
        filled: (M, 17) bool keypoints that either side only has by completion (see
            :class:`Motion`), weighted by ``filled_weight``; None = none.
        filled_weight: weight factor of completed keypoints.

    Returns:
        (weight (M, 17), jointly confident keypoints (M,)).
    """
    ca, cb = a[..., 2], b[..., 2]
    weight = np.where((ca > threshold) & (cb > threshold), np.minimum(ca, cb), 0.0)
    if filled is not None:
        weight = np.where(filled, filled_weight * weight, weight)
    return weight, (weight > 0).sum(-1)


def _pair_distances(a: np.ndarray, b: np.ndarray, weight: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """(M,) weighted mean keypoint distance ``|x_b - (x_a + shift)|`` in pixels.

    Args:
        a, b: (M, 17, 3) pixels + confidence.
        weight: (M, 17) keypoint weights (:func:`_pair_weights`).
        shift: (M, 2) pixels added to ``a``; None = no shift.
    """
    dx, dy = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    if shift is not None:
        dx, dy = dx - shift[:, :1], dy - shift[:, 1:]
    total = np.maximum(weight.sum(-1), 1e-6)
    return np.einsum("mk,mk->m", weight, np.sqrt(dx * dx + dy * dy)) / total


def _nearest(group: np.ndarray, distance: np.ndarray, k: int) -> np.ndarray:
    """(M,) bool: the ``k`` smallest ``distance`` values of each ``group`` id."""
    order = np.lexsort((distance, group))
    sorted_group = group[order]
    first = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(group.size), 0))
    keep = np.zeros(group.size, bool)
    keep[order] = np.arange(group.size) - start < k
    return keep


def link_costs(detections: PaddedDetections, config: TrackingConfig, motion: Motion | None = None) -> Links:
    """Every allowed link between detections up to ``max_gap + 1`` frames apart.

    A link from detection i of frame t - g to detection j of frame t is allowed when the
    two share ``min_common_keypoints`` confident keypoints and their confidence-weighted
    mean keypoint distance is at most ``plain_link_gate`` x the smaller height x sqrt(g).
    With ``motion``, the distance is the mean of the forward prediction ``|x_i + g v_i - x_j|``
    (i's past velocity) and the backward one ``|x_i - (x_j - g v_j)|`` (j's future
    velocity) over the predictions that exist, on keypoints completed from each track
    (completed ones weigh ``filled_keypoint_weight``), and the gate is ``link_gate``. Across
    a gap only each detection's ``gap_links_per_detection`` nearest links are kept.

    Args:
        detections: the clip's padded detections.
        config: tracker settings.
        motion: per-detection velocities and completed keypoints from a previous solve.
    """
    T, P = detections.mask.shape
    threshold = config.min_keypoint_confidence
    raw = detections.keypoints.astype(np.float32)
    height = _person_height(raw, detections.boxes, threshold)
    if motion is None:
        early = late = raw
        v_past = v_future = np.zeros((T, P, 2), np.float32)
        has_past = has_future = np.zeros((T, P), bool)
    else:
        early, late = motion.keypoints_past.astype(np.float32), motion.keypoints_future.astype(np.float32)
        has_past, has_future = np.isfinite(motion.velocity_past[..., 0]), np.isfinite(motion.velocity_future[..., 0])
        v_past = np.nan_to_num(motion.velocity_past).astype(np.float32)
        v_future = np.nan_to_num(motion.velocity_future).astype(np.float32)

    def centroid(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen = (kp[..., 2] > threshold) & detections.mask[..., None]
        count = seen.sum(-1)
        return (kp[..., :2] * seen[..., None]).sum(-2) / np.maximum(count, 1)[..., None], count

    center_early, count_early = centroid(early)  # a detection as the start of a link
    center_late, count_late = centroid(late)  # ... and as its end
    usable_src = detections.mask & (count_early >= config.min_common_keypoints)
    usable_dst = detections.mask & (count_late >= config.min_common_keypoints)
    parts = []
    for g in range(1, min(config.max_gap + 1, T - 1) + 1):
        smaller = np.minimum(height[:-g, :, None], height[g:, None, :])  # (T-g, P, P)
        gate = config.link_gate * smaller * np.sqrt(g)  # for distances between predictions
        plain_gate = config.plain_link_gate * smaller * np.sqrt(g)  # without a prediction
        # Cheap pre-filter on keypoint centroids (nearest of plain and predicted); the
        # exact test below decides.
        src_c, dst_c = center_early[:-g, :, None], center_late[g:, None, :]
        diff = src_c - dst_c
        centre_gap = np.minimum(
            (diff**2).sum(-1),
            np.minimum(
                ((diff + g * v_past[:-g, :, None]) ** 2).sum(-1),
                ((diff + g * v_future[g:, None, :]) ** 2).sum(-1),
            ),
        )
        loosest = np.maximum(gate, plain_gate) + 0.2 * smaller
        candidate = usable_src[:-g, :, None] & usable_dst[g:, None, :] & (centre_gap <= loosest**2)
        t, i, j = np.nonzero(candidate)
        if t.size == 0:
            continue
        a, b = early[t, i], late[t + g, j]
        filled = None
        if motion is not None:
            filled = (raw[t, i, :, 2] <= threshold) | (raw[t + g, j, :, 2] <= threshold)
        weight, common = _pair_weights(a, b, threshold, filled, config.filled_keypoint_weight)
        enough = common >= config.min_common_keypoints
        t, i, j, a, b, weight, common = (x[enough] for x in (t, i, j, a, b, weight, common))
        if motion is None:
            mean = _pair_distances(a, b, weight)
            limit = plain_gate[t, i, j]
        else:
            predictions = ((has_past[t, i], g * v_past[t, i]), (has_future[t + g, j], g * v_future[t + g, j]))
            mean, plain = _predicted_distances(a, b, weight, predictions)
            limit = np.where(plain, plain_gate[t, i, j], gate[t, i, j])
        allowed = mean <= limit
        t, i, j, mean = t[allowed], i[allowed], j[allowed], mean[allowed]
        if g > 1 and config.gap_links_per_detection is not None and t.size:
            keep = _nearest(t * P + i, mean, config.gap_links_per_detection) | _nearest(
                t * P + j, mean, config.gap_links_per_detection
            )
            t, i, j, mean = t[keep], i[keep], j[keep], mean[keep]
        parts.append((t, i, t + g, j, mean.astype(np.float64)))
    if parts:
        src_t, src_j, dst_t, dst_j, distance = (np.concatenate(c) for c in zip(*parts))
    else:
        src_t = src_j = dst_t = dst_j = np.zeros(0, np.int64)
        distance = np.zeros(0, np.float64)
    order = np.argsort(dst_t, kind="stable")
    src_t, src_j, dst_t, dst_j, distance = (a[order] for a in (src_t, src_j, dst_t, dst_j, distance))
    frame_start = np.searchsorted(dst_t, np.arange(T + 1)).astype(np.int64)
    skipped = dst_t - src_t - 1
    cost = config.distance_weight * distance + config.skip_penalty * skipped + config.gap_cost * (skipped > 0)
    return Links(*(x.astype(np.int32) for x in (src_t, src_j, dst_t, dst_j)), distance, cost, frame_start)


def _predicted_distances(a: np.ndarray, b: np.ndarray, weight: np.ndarray,
                         predictions: tuple[tuple[np.ndarray, np.ndarray], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean distance of each candidate link over the predictions that exist.

    Args:
        a, b: (L, 17, 3) keypoints of the links' start and end detections, pixels + confidence.
        weight: (L, 17) keypoint weights (:func:`_pair_weights`).
        predictions: (forward, backward), each (use (L,) bool, shift (L, 2) pixels): the
            prediction exists where ``use``, and moves ``a`` by ``shift``.

    Returns:
        mean distance (L,) float32 pixels, and plain (L,) bool: links without a prediction
        (their distance is the plain one).
    """
    mean = np.zeros(len(a), np.float32)
    n = predictions[0][0].astype(np.float32) + predictions[1][0]
    for use, shift in predictions:
        mean[use] += _pair_distances(a[use], b[use], weight[use], shift[use])
    mean /= np.maximum(n, 1)
    plain = n == 0
    mean[plain] = _pair_distances(a[plain], b[plain], weight[plain])
    return mean, plain


def _min_cost_paths(links: Links, mask: np.ndarray, config: TrackingConfig) -> list[np.ndarray]:
    """Person paths of least total cost (successive shortest paths, see the module docstring).

    Args:
        links: allowed links (:func:`link_costs`).
        mask: (T, P) bool real detections.
        config: tracker settings.

    Returns:
        One (n, 2) int64 array of (frame, detection) per path, in frame order, in the
        order the paths were added.
    """
    T, P = mask.shape
    frame, slot = np.nonzero(mask)
    D = frame.size
    node_of = np.full((T, P), -1, np.int64)
    node_of[frame, slot] = np.arange(D)
    src = node_of[links.src_frame, links.src_det]
    dst = node_of[links.dst_frame, links.dst_det]
    skip = config.skip_penalty
    # Nodes: 0 source, 1 sink, 2 + d detection entry, 2 + D + d detection exit. Edges (all
    # capacity 1): source -> entry (start cost + skips before), entry -> exit (0), exit ->
    # entry of a later detection (link cost), exit -> sink (skips after).
    entry, leave = 2 + np.arange(D), 2 + D + np.arange(D)
    u = np.concatenate([np.zeros(D, np.int64), entry, leave[src], leave])
    v = np.concatenate([entry, leave, entry[dst], np.ones(D, np.int64)])
    cost = np.concatenate(
        [config.start_cost + skip * frame, np.zeros(D), links.cost, skip * (T - 1 - frame)]
    ).astype(np.float64)
    used = np.zeros(u.size, bool)
    num_nodes = 2 + 2 * D
    # Residual graph: every edge as a forward arc (usable while unused) and a backward arc
    # (usable once used, cost negated), sorted by (from, to); each Dijkstra runs on the
    # usable arcs only, and a path's arcs are found again by their sorted (from, to) key.
    arc_from, arc_to = np.concatenate([u, v]), np.concatenate([v, u])
    arc_edge = np.concatenate([np.arange(u.size), np.arange(u.size)])
    arc_backward = np.repeat([False, True], u.size)
    arc_cost = np.concatenate([cost, -cost])
    order = np.lexsort((arc_to, arc_from))
    arc_from, arc_to, arc_edge, arc_backward, arc_cost = (
        x[order] for x in (arc_from, arc_to, arc_edge, arc_backward, arc_cost)
    )
    arc_key = arc_from * num_nodes + arc_to
    potential = np.zeros(num_nodes, np.float64)  # all costs start >= 0
    absent = skip * T  # a person's cost when no path holds it
    for _ in range(config.max_tracks):
        arcs = np.flatnonzero(used[arc_edge] == arc_backward)
        sub_from, sub_to = arc_from[arcs], arc_to[arcs]
        reduced = np.maximum(arc_cost[arcs] + potential[sub_from] - potential[sub_to], 0.0)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(sub_from, minlength=num_nodes))])
        graph = sparse.csr_matrix((reduced, sub_to, indptr), shape=(num_nodes, num_nodes))
        # Only a path cheaper than the person's absence is wanted: search no farther.
        limit = absent - potential[1] + potential[0]
        dist, pred = dijkstra(graph, indices=0, return_predecessors=True, limit=limit)
        if not np.isfinite(dist[1]):
            break
        path_cost = dist[1] + potential[1] - potential[0]
        if path_cost >= absent - 1e-9:
            break
        # Nodes past the limit take it as their distance: reduced costs stay >= 0.
        potential += np.where(np.isfinite(dist), dist, limit)
        nodes = [1]
        while nodes[-1] != 0:
            nodes.append(int(pred[nodes[-1]]))
        nodes = np.array(nodes[::-1], np.int64)
        on_path = arcs[np.searchsorted(arc_key[arcs], nodes[:-1] * num_nodes + nodes[1:])]
        used[arc_edge[on_path]] ^= True
    # Read the paths off the flow.
    link_used = used[2 * D : 2 * D + src.size]
    successor = np.full(D, -1, np.int64)
    successor[src[link_used]] = dst[link_used]
    paths = []
    for d in np.flatnonzero(used[:D]):
        chain = [int(d)]
        while successor[chain[-1]] >= 0:
            chain.append(int(successor[chain[-1]]))
        chain = np.array(chain, np.int64)
        paths.append(np.stack([frame[chain], slot[chain]], 1))
    return paths


@dataclass(frozen=True)
class Motion:
    """What a previous solve says about each tracked detection.

    Attributes:
        velocity_past, velocity_future: (T, P, 2) px per frame, from the detection's own
            path before / after it; NaN where it is on no path or has no link on that side.
        keypoints_past, keypoints_future: (T, P, 17, 3) the detection's keypoints with the
            ones it misses (confidence at or below the threshold) filled in from the last
            (next) detection of its path that saw them within ``max_gap`` frames, moved by
            the velocity over the frames between; untracked detections keep their own.
    """

    velocity_past: np.ndarray
    velocity_future: np.ndarray
    keypoints_past: np.ndarray
    keypoints_future: np.ndarray


def _fill_from(kp: np.ndarray, frames: np.ndarray, velocity: np.ndarray, threshold: float, max_gap: int) -> np.ndarray:
    """Fill each detection's unseen keypoints from the latest earlier detection that saw them.

    Args:
        kp: (n, 17, 3) keypoints of one path in order (reverse the path for "next").
        frames: (n,) frame of each detection (decreasing when reversed).
        velocity: (n, 2) px per frame along ``frames`` (NaN = unknown, no motion).
        threshold: confidence at or below which a keypoint is unseen.
        max_gap: farthest frame distance to fill from.

    Returns:
        (n, 17, 3) filled keypoints.
    """
    n = kp.shape[0]
    seen = kp[..., 2] > threshold
    index = np.where(seen, np.arange(n)[:, None], -1)
    last = np.maximum.accumulate(index, axis=0)  # (n, 17) latest detection that saw it
    source = np.maximum(last, 0)
    span = (frames[:, None] - frames[source]).astype(np.float64)  # (n, 17)
    ok = (last >= 0) & ~seen & (np.abs(span) <= max_gap)
    shift = np.nan_to_num(velocity)[:, None, :] * span[..., None]
    out = kp.copy()
    filled = kp[source, np.arange(17)[None, :]]
    out[..., :2] = np.where(ok[..., None], filled[..., :2] + shift, kp[..., :2])
    out[..., 2] = np.where(ok, filled[..., 2], kp[..., 2])
    return out


def track_motion(detections: PaddedDetections, paths: Sequence[np.ndarray], config: TrackingConfig) -> Motion:
    """Constant-velocity estimates and completed keypoints of each tracked detection.

    A link's velocity is the median displacement of the jointly confident keypoints per
    frame; a detection's past (future) velocity is the total displacement over the up to
    ``velocity_window`` links before (after) it divided by the frames they span.

    Args:
        detections: the clip's padded detections.
        paths: (n, 2) (frame, detection) arrays in frame order.
        config: tracker settings.
    """
    T, P = detections.mask.shape
    kp = detections.keypoints
    past = np.full((T, P, 2), np.nan, np.float64)
    future = np.full((T, P, 2), np.nan, np.float64)
    keypoints_past = kp.copy()
    keypoints_future = kp.copy()
    paths = [p for p in paths if len(p) >= 2]
    if not paths:
        return Motion(past, future, keypoints_past, keypoints_future)
    threshold = config.min_keypoint_confidence
    first = np.concatenate([p[:-1] for p in paths])
    second = np.concatenate([p[1:] for p in paths])
    a, b = kp[first[:, 0], first[:, 1]], kp[second[:, 0], second[:, 1]]
    jointly = (a[..., 2] > threshold) & (b[..., 2] > threshold)
    step = np.where(jointly[..., None], b[..., :2] - a[..., :2], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN links: no common keypoint
        displacement = np.nanmedian(step, axis=1)  # (M, 2)
    frames = (second[:, 0] - first[:, 0]).astype(np.float64)
    valid = np.isfinite(displacement[:, 0])
    displacement = np.where(valid[:, None], displacement, 0.0)
    frames = np.where(valid, frames, 0.0)
    W = config.velocity_window
    offset = 0
    for p in paths:
        m = len(p) - 1  # links on this path
        disp = np.concatenate([np.zeros((1, 2)), np.cumsum(displacement[offset : offset + m], 0)])
        span = np.concatenate([[0.0], np.cumsum(frames[offset : offset + m])])
        offset += m
        k = np.arange(m + 1)  # detection k has links k-1 (before) and k (after)
        lo, hi = np.maximum(k - W, 0), np.minimum(k + W, m)
        with np.errstate(invalid="ignore", divide="ignore"):
            v_past = (disp[k] - disp[lo]) / (span[k] - span[lo])[:, None]
            v_future = (disp[hi] - disp[k]) / (span[hi] - span[k])[:, None]
        v_past = np.where(np.isfinite(v_past), v_past, np.nan)
        v_future = np.where(np.isfinite(v_future), v_future, np.nan)
        past[p[:, 0], p[:, 1]] = v_past
        future[p[:, 0], p[:, 1]] = v_future
        own = kp[p[:, 0], p[:, 1]]
        keypoints_past[p[:, 0], p[:, 1]] = _fill_from(own, p[:, 0], v_past, threshold, config.max_gap)
        keypoints_future[p[::-1, 0], p[::-1, 1]] = _fill_from(
            own[::-1], p[::-1, 0], v_future[::-1], threshold, config.max_gap
        )
    return Motion(past, future, keypoints_past, keypoints_future)


def track_people(detections: PaddedDetections, config: TrackingConfig = TrackingConfig()) -> list[Track]:
    """Find every person's path jointly (min-cost flow), re-solving with motion prediction.

    Args:
        detections: the clip's padded detections.
        config: tracker settings.

    Returns:
        Tracks ordered by path cost (cheapest first); no detection is in two tracks; every
        track keeps at least ``min_track_length`` detections and fills at least
        ``min_track_fill`` of its frame span.
    """
    T = detections.num_frames
    if T == 0 or not detections.mask.any():
        return []
    first = config
    if config.motion_passes and config.first_pass_max_gap < config.max_gap:
        first = replace(config, max_gap=config.first_pass_max_gap)
    links = link_costs(detections, first)
    paths = _min_cost_paths(links, detections.mask, first)
    for _ in range(config.motion_passes):
        if not paths:
            break
        links = link_costs(detections, config, track_motion(detections, paths, config))
        paths = _min_cost_paths(links, detections.mask, config)
    # Path costs on the final links (keypoint distances, predicted where velocities exist).
    key = (links.src_frame.astype(np.int64) * detections.mask.shape[1] + links.src_det) * T + links.dst_frame
    key = key * detections.mask.shape[1] + links.dst_det
    order = np.argsort(key)
    tracks = []
    for path in paths:
        n = len(path)
        if n < config.min_track_length:
            continue
        start, stop = int(path[0, 0]), int(path[-1, 0]) + 1
        if n < config.min_track_fill * (stop - start):
            continue
        if n > 1:
            P = detections.mask.shape[1]
            want = ((path[:-1, 0] * P + path[:-1, 1]) * T + path[1:, 0]) * P + path[1:, 1]
            distance = float(links.distance[order[np.searchsorted(key[order], want)]].sum())
        else:
            distance = 0.0
        selected = np.full(stop - start, -1, np.int32)
        selected[path[:, 0] - start] = path[:, 1]
        tracks.append(Track(start=start, selected=selected, cost=config.skip_penalty * (T - n) + distance))
    tracks.sort(key=lambda track: track.cost)
    return tracks
