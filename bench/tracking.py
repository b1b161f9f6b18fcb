"""Tracking benchmark: identity switches, purity and speed of the shortest-path tracker.

Generated multi-person COCO-17 keypoint sequences (1280 x 720, 25 fps): people of different
heights (depths) walk across the image with a gait, cross each other (the farther person is
occluded: its detection is lost or its covered keypoints fade), enter and leave the image,
miss detections at random and in bursts, and false positives appear for a few frames.
Every detection knows its true person, so the tracker's output is scored with
``pipeline.qa.metrics.id_switches`` and ``track_purity``.

    python -m bench.tracking [--quick] [--sequences N] [--seed S]

The last output line is a JSON object with ``id_switches_per_1000_frames`` (target <= 1),
``purity`` (target >= 0.99), ``recall`` (share of true detections that end in a track) and
the tracking time of a 300-frame x 20-detections clip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass

import numpy as np

from models.pose_detector import FrameDetections
from pipeline.qa.metrics import id_switches, track_purity
from pipeline.perception.track import TrackingConfig, pad_detections, track_people

WIDTH, HEIGHT, FPS = 1280, 720, 25.0

# COCO-17 template of a person facing the camera, height-normalised, origin at mid-hip,
# x right (the person's left is image right), y down.
TEMPLATE = np.array(
    [
        [0.0, -0.40], [0.02, -0.42], [-0.02, -0.42], [0.045, -0.41], [-0.045, -0.41],
        [0.11, -0.30], [-0.11, -0.30], [0.14, -0.15], [-0.14, -0.15], [0.15, -0.02], [-0.15, -0.02],
        [0.07, 0.0], [-0.07, 0.0], [0.07, 0.25], [-0.07, 0.25], [0.07, 0.48], [-0.07, 0.48],
    ]
)  # fmt: skip
LEGS = np.array([13, 14, 15, 16])
ARMS = np.array([7, 8, 9, 10])
SIDE = np.array([1, 1, -1, -1])  # left/right sign of knees-ankles and elbows-wrists pairs (l, r, l, r)


@dataclass(frozen=True)
class Sequence:
    """Detections per frame and the true person of each (-1: false positive)."""

    detections: list[FrameDetections]
    truth: list[np.ndarray]
    num_people: int


def _person_keypoints(center: np.ndarray, height: float, facing: float, phase: float, rng) -> np.ndarray:
    """(17, 3) keypoints of one walking person."""
    xy = TEMPLATE.copy()
    xy[:, 0] *= facing
    swing = 0.08 * np.sin(phase)
    xy[LEGS[[0, 2]], 0] += swing * np.array([0.5, 1.0])
    xy[LEGS[[1, 3]], 0] -= swing * np.array([0.5, 1.0])
    xy[ARMS[[0, 2]], 0] -= 0.6 * swing
    xy[ARMS[[1, 3]], 0] += 0.6 * swing
    points = center + height * xy + rng.normal(0.0, 0.012 * height, size=xy.shape)
    conf = rng.uniform(0.55, 1.0, size=17)
    conf[rng.random(17) < 0.08] = rng.uniform(0.0, 0.15)
    out = np.concatenate([points, conf[:, None]], axis=1)
    outside = (points[:, 0] < 0) | (points[:, 0] >= WIDTH) | (points[:, 1] < 0) | (points[:, 1] >= HEIGHT)
    out[outside] = 0.0
    return out


def _box(keypoints: np.ndarray) -> np.ndarray:
    seen = keypoints[:, 2] > 0
    if not seen.any():
        return np.full(4, np.nan)
    p = keypoints[seen, :2]
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def generate_sequence(rng: np.random.Generator, frames: int = 300, people: int | None = None, fp_rate: float = 0.3) -> Sequence:
    """One clip of walking people with crossings, occlusions, misses and false positives."""
    n = int(people if people is not None else rng.integers(2, 7))
    height = rng.uniform(110, 330, n)
    feet = 250 + 1.4 * height
    direction = rng.choice([-1.0, 1.0], n)
    speed = rng.uniform(0.004, 0.02, n) * height * 1.5  # px per frame, scaled with depth
    # Start positions spread so that most people cross someone during the clip.
    x0 = np.where(direction > 0, rng.uniform(-100, 700, n), rng.uniform(580, 1380, n))
    facing = direction * rng.choice([1.0, -1.0], n) * rng.uniform(0.3, 1.0, n)
    phase0 = rng.uniform(0, 2 * np.pi, n)
    cadence = rng.uniform(0.15, 0.3, n)
    burst = np.zeros((n, frames), bool)
    for p in range(n):
        if rng.random() < 0.4:
            s = int(rng.integers(0, frames))
            burst[p, s : s + int(rng.integers(4, 16))] = True
    velocity = direction * speed
    x = x0.copy()
    fps_alive: list[tuple[np.ndarray, float, int]] = []  # (center, height, frames left)
    detections, truth = [], []
    for t in range(frames):
        velocity = velocity + rng.normal(0, 0.03, n) * speed
        x = x + velocity
        centers = np.stack([x, feet - 0.48 * height], axis=1)
        kps, boxes, ids = [], [], []
        for p in range(n):
            kp = _person_keypoints(centers[p], height[p], facing[p], phase0[p] + cadence[p] * t, rng)
            if (kp[:, 2] > 0.2).sum() < 5:
                continue  # out of the image
            kps.append(kp)
            boxes.append(_box(kp))
            ids.append(p)
        # Occlusion: a nearer (taller) person hides what is behind its box.
        keep = np.ones(len(ids), bool)
        for a in range(len(ids)):
            for b in range(len(ids)):
                if a == b or height[ids[b]] <= height[ids[a]]:
                    continue
                x0b, y0b, x1b, y1b = boxes[b]
                inside = (kps[a][:, 0] > x0b) & (kps[a][:, 0] < x1b) & (kps[a][:, 1] > y0b) & (kps[a][:, 1] < y1b)
                share = inside.mean()
                if share > 0.6 and rng.random() < 0.8:
                    keep[a] = False
                elif share > 0:
                    kps[a][inside, 2] *= 0.2
        for a, p in enumerate(ids):
            if burst[p, t] or rng.random() < 0.05:
                keep[a] = False
        kps = [k for k, ok in zip(kps, keep) if ok]
        ids = [i for i, ok in zip(ids, keep) if ok]
        # False positives: short-lived random people.
        for _ in range(rng.poisson(fp_rate)):
            fps_alive.append(
                (np.array([rng.uniform(0, WIDTH), rng.uniform(150, 600)]), float(rng.uniform(60, 300)), int(rng.integers(1, 5)))
            )
        alive = []
        for center, h, left in fps_alive:
            kp = _person_keypoints(center + rng.normal(0, 3, 2), h, rng.choice([-1.0, 1.0]), rng.uniform(0, 6), rng)
            kp[:, 2] *= rng.uniform(0.3, 0.7)
            kp[rng.random(17) < 0.4, 2] = 0.0
            kps.append(kp)
            ids.append(-1)
            if left > 1:
                alive.append((center, h, left - 1))
        fps_alive = alive
        if kps:
            keypoints = np.stack(kps).astype(np.float32)
            boxes = np.stack([_box(k) for k in kps]).astype(np.float32)
            scores = keypoints[..., 2].mean(1).astype(np.float32)
        else:
            keypoints, boxes, scores = np.zeros((0, 17, 3), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        order = rng.permutation(len(ids))  # detector output order carries no identity
        detections.append(FrameDetections(keypoints[order], boxes[order], scores[order]))
        truth.append(np.asarray(ids, np.int64)[order])
    return Sequence(detections, truth, n)


def score(sequence: Sequence, tracks) -> dict[str, float]:
    """Identity switches, purity inputs and recall of one tracked sequence."""
    frame, target, pred = [], [], []
    for k, track in enumerate(tracks):
        for offset, j in enumerate(track.selected):
            if j < 0:
                continue
            t = track.start + offset
            frame.append(t)
            target.append(int(sequence.truth[t][j]))
            pred.append(k)
    frame, target, pred = np.array(frame, int), np.array(target, int), np.array(pred, int)
    matched = target >= 0
    true_total = sum(int((ids >= 0).sum()) for ids in sequence.truth)
    return {
        "switches": id_switches(frame[matched], target[matched], pred[matched]),
        "frame": frame,
        "target": target,
        "pred": pred,
        "recall": float(matched.sum()) / max(true_total, 1),
        "true_total": true_total,
    }


def run(num_sequences: int, seed: int, frames: int = 300) -> dict:
    rng = np.random.default_rng(seed)
    config = TrackingConfig(max_people=None)
    switches, total_frames, seconds = 0, 0, 0.0
    targets, preds, recall_hits, true_total = [], [], 0.0, 0
    offset = 0
    for _ in range(num_sequences):
        sequence = generate_sequence(rng, frames)
        padded = pad_detections(sequence.detections)
        start = time.perf_counter()
        tracks = track_people(padded, config)
        seconds += time.perf_counter() - start
        result = score(sequence, tracks)
        switches += result["switches"]
        total_frames += frames
        targets.append(np.where(result["target"] >= 0, result["target"] + offset, -1))
        preds.append(result["pred"] + offset)
        offset += 1000
        recall_hits += result["recall"] * result["true_total"]
        true_total += result["true_total"]
    purity = track_purity(np.concatenate(preds), np.concatenate(targets))
    return {
        "sequences": num_sequences,
        "frames": total_frames,
        "id_switches": int(switches),
        "id_switches_per_1000_frames": 1000.0 * switches / total_frames,
        "purity": purity,
        "recall": recall_hits / max(true_total, 1),
        "seconds_per_clip": seconds / num_sequences,
    }


def speed(seed: int, repeats: int) -> dict:
    """Tracking time of a 300-frame clip with 20 detections in every frame."""
    rng = np.random.default_rng(seed)
    sequence = generate_sequence(rng, 300, people=14, fp_rate=2.0)
    padded = pad_detections(sequence.detections)
    counts = padded.counts
    # Top up every frame to exactly 20 detections with extra false positives.
    dets = []
    for found in sequence.detections:
        extra = 20 - len(found)
        if extra > 0:
            kp = np.stack([_person_keypoints(np.array([rng.uniform(0, WIDTH), 400.0]), 200.0, 1.0, 0.0, rng) for _ in range(extra)])
            kp = kp.astype(np.float32)
            found = FrameDetections(
                np.concatenate([found.keypoints, kp]),
                np.concatenate([found.boxes, np.stack([_box(k) for k in kp]).astype(np.float32)]),
                np.concatenate([found.scores, kp[..., 2].mean(1).astype(np.float32)]),
            )
        dets.append(found.select(np.arange(min(20, len(found)))))
    padded = pad_detections(dets)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tracks = track_people(padded, TrackingConfig(max_people=None))
        times.append(time.perf_counter() - start)
    return {
        "speed_frames": int(padded.num_frames),
        "speed_detections_per_frame": float(padded.counts.mean()),
        "speed_tracks": len(tracks),
        "speed_seconds": min(times),
        "speed_seconds_all": [round(t, 4) for t in times],
        "raw_max_detections": int(counts.max()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 sequences instead of 60 (< 1 minute)")
    parser.add_argument("--sequences", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = args.sequences or (12 if args.quick else 60)
    result = {"seed": args.seed}
    result.update(run(n, args.seed))
    result.update(speed(args.seed + 1, 2 if args.quick else 5))
    result["machine"] = f"{platform.processor() or platform.machine()}, {platform.python_version()}, {os.cpu_count()} cpus"
    result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    result["config"] = dataclasses.asdict(TrackingConfig(max_people=None))
    result["targets"] = {"id_switches_per_1000_frames": "<= 1", "purity": ">= 0.99"}
    print(
        f"{result['sequences']} clips x 300 frames: {result['id_switches']} identity switches "
        f"({result['id_switches_per_1000_frames']:.2f} per 1000 frames), purity {result['purity']:.4f}, "
        f"recall {result['recall']:.3f}, {result['seconds_per_clip'] * 1000:.0f} ms per clip; "
        f"300 x 20 detections: {result['speed_seconds'] * 1000:.0f} ms"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
