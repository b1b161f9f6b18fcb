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

Guards that keep one path on one person:

* a link is allowed only when the detections share ``min_common_keypoints`` confident
  keypoints and their (predicted) distance is under ``link_gate`` x the smaller person
  height x sqrt(g);
* a gap bridges at most ``max_gap`` frames;
* a kept track fills at least ``min_track_fill`` of its frame span.

Link costs are vectorised over frames, gaps and detection pairs (O(T x G x P^2) pairs, a
centroid pre-filter before the keypoint distances); each flow augmentation is one sparse
Dijkstra (scipy) over the residual graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from models.pose_detector import FrameDetections

__all__ = [
    "Links",
    "PaddedDetections",
    "Track",
    "TrackingConfig",
    "link_costs",
    "pad_detections",
    "track_people",
    "track_velocities",
]


@dataclass(frozen=True)
class TrackingConfig:
    """Settings of the shortest-path tracker.

    Attributes:
        skip_penalty: cost of a frame without a kept detection, pixels (paper: 100).
        min_track_length: fewest real detections of a kept track.
        max_people: a clip with more detections than this in any frame is ``crowded``
            (paper: 6; the rule is applied by ``pipeline.perceive``); None disables it.
        max_gap: longest run of skipped frames bridged inside one track.
        link_gate: largest link distance as a fraction of the smaller person's height,
            times sqrt of the frame step (keeps a path from hopping onto another person).
        min_common_keypoints: jointly confident keypoints needed to link two detections.
        min_keypoint_confidence: keypoints at or below it are ignored by the link cost.
        max_tracks: most paths in the flow (safety bound).
        motion_passes: re-solves with constant-velocity prediction across each link
            (velocities from the previous solve); 0 = the paper's distance only.
        velocity_window: links of a track on each side that a detection's velocity is
            averaged over.
        min_track_fill: fewest kept detections per frame of a track's span (drops paths
            stitched from scattered false positives).
    """

    skip_penalty: float = 100.0
    min_track_length: int = 10
    max_people: int | None = 6
    max_gap: int = 25
    link_gate: float = 0.25
    min_common_keypoints: int = 3
    min_keypoint_confidence: float = 0.2
    max_tracks: int = 64
    motion_passes: int = 1
    velocity_window: int = 5
    min_track_fill: float = 0.5

    def __post_init__(self) -> None:
        if self.skip_penalty <= 0:
            raise ValueError(f"TrackingConfig.skip_penalty={self.skip_penalty} must be > 0 pixels.")
        if self.min_track_length < 1 or self.max_gap < 0 or self.min_common_keypoints < 1:
            raise ValueError("TrackingConfig: min_track_length and min_common_keypoints >= 1, max_gap >= 0.")
        if self.max_people is not None and self.max_people < 1:
            raise ValueError("TrackingConfig.max_people must be >= 1 or None.")
        if self.motion_passes < 0 or self.velocity_window < 1 or self.max_tracks < 1:
            raise ValueError("TrackingConfig: motion_passes >= 0, velocity_window >= 1 and max_tracks >= 1.")

    @property
    def start_cost(self) -> float:
        """Cost of starting a path, pixels: a path pays off only with ``min_track_length`` detections."""
        return self.skip_penalty * (self.min_track_length - 1)


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
        cost: (E,) float64 ``distance`` + ``skip_penalty`` per frame skipped between the
            endpoints (the paper's link cost).
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


def _weighted_distance(
    a: np.ndarray, b: np.ndarray, threshold: float, a_xy: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted mean keypoint distance of pairs.

    Args:
        a, b: (M, 17, 3) pixels + confidence.
        threshold: keypoints at or below this confidence are ignored.
        a_xy: (M, 17, 2) pixels, positions used for ``a`` instead of ``a[..., :2]``
            (predicted keypoints); confidences stay ``a``'s.

    Returns:
        (distance (M,) pixels, jointly confident keypoints (M,)).
    """
    ca = np.where(a[..., 2] > threshold, a[..., 2], 0.0)
    cb = np.where(b[..., 2] > threshold, b[..., 2], 0.0)
    weight = np.minimum(ca, cb)
    xy = a[..., :2] if a_xy is None else a_xy
    distance = np.sqrt(((xy - b[..., :2]) ** 2).sum(-1))
    return (weight * distance).sum(-1) / np.maximum(weight.sum(-1), 1e-6), (weight > 0).sum(-1)


def link_costs(
    detections: PaddedDetections,
    config: TrackingConfig,
    velocity_past: np.ndarray | None = None,
    velocity_future: np.ndarray | None = None,
) -> Links:
    """Every allowed link between detections up to ``max_gap + 1`` frames apart.

    A link from detection i of frame t - g to detection j of frame t is allowed when the
    two share ``min_common_keypoints`` confident keypoints and their confidence-weighted
    mean keypoint distance is at most ``link_gate`` x the smaller height x sqrt(g). With
    velocities, the distance is the mean of ``|x_i + g v_past_i - x_j|`` and
    ``|x_i - (x_j - g v_future_j)|`` over the predictions that exist.

    Args:
        detections: the clip's padded detections.
        config: tracker settings.
        velocity_past: (T, P, 2) px per frame from each detection's past, NaN = unknown.
        velocity_future: (T, P, 2) px per frame from each detection's future, NaN = unknown.
    """
    kp = detections.keypoints.astype(np.float32)
    T, P = detections.mask.shape
    threshold = config.min_keypoint_confidence
    seen = (kp[..., 2] > threshold) & detections.mask[..., None]
    count = seen.sum(-1)
    center = (kp[..., :2] * seen[..., None]).sum(-2) / np.maximum(count, 1)[..., None]
    height = _person_height(kp, detections.boxes, threshold)
    usable = detections.mask & (count >= config.min_common_keypoints)
    moving = velocity_past is not None and velocity_future is not None
    if moving:
        velocity_past = velocity_past.astype(np.float32)
        velocity_future = velocity_future.astype(np.float32)
    parts = []
    for g in range(1, min(config.max_gap + 1, T - 1) + 1):
        smaller = np.minimum(height[:-g, :, None], height[g:, None, :])  # (T-g, P, P)
        gate = config.link_gate * smaller * np.sqrt(g)
        # Cheap pre-filter on keypoint centroids; the exact test below decides.
        centre_gap = np.linalg.norm(center[:-g, :, None] - center[g:, None, :], axis=-1)
        if moving:
            ahead = center[:-g] + g * np.nan_to_num(velocity_past[:-g])
            behind = center[g:] - g * np.nan_to_num(velocity_future[g:])
            centre_gap = np.minimum(
                centre_gap,
                np.minimum(
                    np.linalg.norm(ahead[:, :, None] - center[g:, None, :], axis=-1),
                    np.linalg.norm(center[:-g, :, None] - behind[:, None, :], axis=-1),
                ),
            )
        candidate = usable[:-g, :, None] & usable[g:, None, :] & (centre_gap <= 1.5 * gate + 0.2 * smaller)
        t, i, j = np.nonzero(candidate)
        if t.size == 0:
            continue
        a, b = kp[t, i], kp[t + g, j]
        mean, common = _weighted_distance(a, b, threshold)
        if moving:
            v_ahead, v_behind = velocity_past[t, i], velocity_future[t + g, j]
            has_ahead = np.isfinite(v_ahead[:, 0])
            has_behind = np.isfinite(v_behind[:, 0])
            ahead_d, _ = _weighted_distance(a, b, threshold, a[..., :2] + g * np.nan_to_num(v_ahead)[:, None])
            behind_d, _ = _weighted_distance(a, b, threshold, a[..., :2] + g * np.nan_to_num(v_behind)[:, None])
            n = has_ahead.astype(np.float32) + has_behind
            predicted = (np.where(has_ahead, ahead_d, 0.0) + np.where(has_behind, behind_d, 0.0)) / np.maximum(n, 1)
            mean = np.where(n > 0, predicted, mean)
        allowed = (common >= config.min_common_keypoints) & (mean <= gate[t, i, j])
        t, i, j = t[allowed], i[allowed], j[allowed]
        parts.append((t, i, t + g, j, mean[allowed].astype(np.float64)))
    if parts:
        src_t, src_j, dst_t, dst_j, distance = (np.concatenate(c) for c in zip(*parts))
    else:
        src_t = src_j = dst_t = dst_j = np.zeros(0, np.int64)
        distance = np.zeros(0, np.float64)
    order = np.argsort(dst_t, kind="stable")
    src_t, src_j, dst_t, dst_j, distance = (a[order] for a in (src_t, src_j, dst_t, dst_j, distance))
    frame_start = np.searchsorted(dst_t, np.arange(T + 1)).astype(np.int64)
    cost = distance + config.skip_penalty * (dst_t - src_t - 1)
    return Links(
        src_t.astype(np.int32),
        src_j.astype(np.int32),
        dst_t.astype(np.int32),
        dst_j.astype(np.int32),
        distance,
        cost,
        frame_start,
    )


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
    link_key = src * D + dst  # sorted lookup of link edges by (exit node, entry node)
    key_order = np.argsort(link_key)
    sorted_keys = link_key[key_order]
    num_nodes = 2 + 2 * D
    potential = np.zeros(num_nodes, np.float64)  # all costs start >= 0
    absent = skip * T  # a person's cost when no path holds it
    for _ in range(config.max_tracks):
        a = np.where(used, v, u)
        b = np.where(used, u, v)
        reduced = np.where(used, -cost, cost) + potential[a] - potential[b]
        graph = sparse.csr_matrix((np.maximum(reduced, 0.0), (a, b)), shape=(num_nodes, num_nodes))
        dist, pred = dijkstra(graph, indices=0, return_predecessors=True)
        if not np.isfinite(dist[1]):
            break
        path_cost = dist[1] + potential[1] - potential[0]
        if path_cost >= absent - 1e-9:
            break
        finite = np.isfinite(dist)
        potential += np.where(finite, dist, dist[finite].max())
        nodes = [1]
        while nodes[-1] != 0:
            nodes.append(int(pred[nodes[-1]]))
        nodes = np.array(nodes[::-1], np.int64)
        for p, q in zip(nodes[:-1], nodes[1:]):
            _flip(used, int(p), int(q), D, sorted_keys, key_order)
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


def _flip(used: np.ndarray, p: int, q: int, D: int, sorted_keys: np.ndarray, key_order: np.ndarray) -> None:
    """Push one unit of flow along residual edge p -> q (node ids as in :func:`_min_cost_paths`)."""
    E = sorted_keys.size

    def kind(n: int) -> tuple[str, int]:
        if n == 0:
            return "source", -1
        if n == 1:
            return "sink", -1
        return ("entry", n - 2) if n < 2 + D else ("exit", n - 2 - D)

    (kp, dp), (kq, dq) = kind(p), kind(q)
    if {kp, kq} == {"source", "entry"}:
        index = dq if kp == "source" else dp
    elif {kp, kq} == {"entry", "exit"} and dp == dq:
        index = D + dp
    elif {kp, kq} == {"exit", "sink"}:
        index = 2 * D + E + (dp if kp == "exit" else dq)
    else:  # a link: forward exit(i) -> entry(j), backward entry(j) -> exit(i)
        i, j = (dp, dq) if kp == "exit" else (dq, dp)
        index = 2 * D + int(key_order[np.searchsorted(sorted_keys, i * D + j)])
    used[index] = not used[index]


def track_velocities(
    detections: PaddedDetections, paths: Sequence[np.ndarray], config: TrackingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity estimates of each tracked detection from its own path.

    A link's velocity is the median displacement of the jointly confident keypoints per
    frame; a detection's past (future) velocity is the total displacement over the up to
    ``velocity_window`` links before (after) it divided by the frames they span.

    Args:
        detections: the clip's padded detections.
        paths: (n, 2) (frame, detection) arrays in frame order.
        config: tracker settings.

    Returns:
        (velocity_past (T, P, 2), velocity_future (T, P, 2)) px per frame, NaN where the
        detection is on no path or has no link on that side.
    """
    T, P = detections.mask.shape
    past = np.full((T, P, 2), np.nan, np.float64)
    future = np.full((T, P, 2), np.nan, np.float64)
    paths = [p for p in paths if len(p) >= 2]
    if not paths:
        return past, future
    kp = detections.keypoints
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
        past[p[:, 0], p[:, 1]] = np.where(np.isfinite(v_past), v_past, np.nan)
        future[p[:, 0], p[:, 1]] = np.where(np.isfinite(v_future), v_future, np.nan)
    return past, future


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
    links = link_costs(detections, config)
    paths = _min_cost_paths(links, detections.mask, config)
    for _ in range(config.motion_passes):
        if not paths:
            break
        velocity_past, velocity_future = track_velocities(detections, paths, config)
        links = link_costs(detections, config, velocity_past, velocity_future)
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
