"""Regenerate ``market_street_1906.coco.json``: machine-made COCO-17 keypoints of the real clip.

Detector (installed outside the project, never a dependency of it or of its tests):

* MediaPipe Pose (BlazePose GHUM full, ``model_complexity=1``) from ``mediapipe==0.10.21``:
  its ``pose_landmark_full.tflite`` and ``pose_detection.tflite`` ship inside the wheel, so
  nothing is downloaded at run time. The legacy solution finds one person per image, so it
  runs on person proposals.
* Person proposals, in turn: overlapping square windows of the frame (``--windows``; up to
  ``--mask_rounds`` people each), then OpenCV's built-in HOG + linear-SVM people detector
  (``cv2.HOGDescriptor_getDefaultPeopleDetector``, no weights file) on the frame upscaled
  2x, its boxes cropped with context (``--grow``). Every person found is masked out (grey)
  before the next proposal is looked at. OpenCV is ``opencv-contrib-python==4.11.0.86``,
  the version mediapipe 0.10.21 pulls in.
* numpy 1.26.4, Python 3.11.

Install and run (the ``.venv`` Python, into a throw-away venv)::

    /work/main/.venv/bin/python -m venv /tmp/detvenv
    /tmp/detvenv/bin/pip install mediapipe==0.10.21
    OMP_NUM_THREADS=1 /tmp/detvenv/bin/python tests/data/real/make_keypoints.py \
        tests/data/real/market_street_1906.mp4

Output: ``<video stem>.coco.json`` next to the video, the format that
``pipeline.perception.keypoints_io.load_coco_keypoints`` reads: ``images[].id`` = source frame
index (every frame listed, also those with nobody), ``annotations[].keypoints`` = 17 x
(x, y, confidence) in pixels of the video as stored, COCO-17 order (nose, eyes, ears,
shoulders, elbows, wrists, hips, knees, ankles; left before right), confidence = BlazePose
visibility in [0, 1] (0 for points outside the frame), ``score`` = mean confidence,
``bbox`` = [x, y, w, h] of the keypoints. A person is kept when at least
``--min_visible`` keypoints have confidence > 0.5, their extent is at least
``--min_height`` px tall, the torso is upright (shoulders above hips, closer to vertical
than horizontal), and no kept person of higher score has nearly the same keypoints (mean
distance under ``--dedup`` x person height).

The script imports nothing from the project; the job's loader checks the file in
``tests/beam_jobs/test_real_video.py``. About 90 s of CPU on the 2-core development machine
(x86-64, no GPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# BlazePose 33-landmark index of each COCO-17 keypoint.
BLAZEPOSE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


def _pose_on(pose, image_bgr: np.ndarray, x0: float, y0: float, scale: float) -> np.ndarray | None:
    """One person's (17, 3) keypoints (frame px + visibility) in a crop, or None.

    ``image_bgr`` is the crop; a crop pixel (u, v) is frame pixel (x0 + u * scale, y0 + v * scale).
    """
    result = pose.process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    if result.pose_landmarks is None:
        return None
    h, w = image_bgr.shape[:2]
    marks = result.pose_landmarks.landmark
    out = np.zeros((17, 3), np.float64)
    for k, index in enumerate(BLAZEPOSE_TO_COCO17):
        mark = marks[index]
        out[k] = (x0 + mark.x * w * scale, y0 + mark.y * h * scale, float(np.clip(mark.visibility, 0.0, 1.0)))
    return out


def _square_crop(frame: np.ndarray, box: np.ndarray, grow: float) -> tuple[np.ndarray, float, float]:
    """Square crop (padded with edge pixels) around box x0, y0, x1, y1 -> (crop, x0, y0)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = int(round(max(box[2] - box[0], box[3] - box[1]) * grow))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = side
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    return crop, float(x0), float(y0)


def _extent(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    seen = keypoints[:, 2] > threshold
    pts = keypoints[seen, :2] if seen.any() else keypoints[:, :2]
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _windows(width: int, height: int, fractions: list[float]) -> list[tuple[int, int, int]]:
    """Square windows (x0, y0, side) with side = fraction x the shorter frame side, half-overlapping."""
    out = []
    for fraction in fractions:
        side = int(round(fraction * min(width, height)))
        xs = np.unique(np.linspace(0, width - side, max(1, int(np.ceil(2 * width / side)) - 1)).round().astype(int))
        ys = np.unique(np.linspace(0, height - side, max(1, int(np.ceil(2 * height / side)) - 1)).round().astype(int))
        out += [(int(x), int(y), side) for y in ys for x in xs]
    return out


def _upright(keypoints: np.ndarray) -> bool:
    """Shoulders above hips, torso closer to vertical than horizontal (walking people)."""
    shoulders, hips = keypoints[[5, 6], :2].mean(0), keypoints[[11, 12], :2].mean(0)
    if min(keypoints[[5, 6, 11, 12], 2]) <= 0.5:
        return False
    dx, dy = hips - shoulders
    return dy > 0 and abs(dx) < dy


def _fits_box(keypoints: np.ndarray, box: np.ndarray) -> bool:
    """The keypoints' extent is a person inside the HOG box (not a neighbour or a wild fit)."""
    x0, y0, x1, y1 = _extent(keypoints, 0.5)
    height = box[3] - box[1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return 0.35 * height <= y1 - y0 <= 1.2 * height and box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def detect_people(frame: np.ndarray, pose_frame, pose_crop, hog, args) -> list[np.ndarray]:
    """All people of one frame as a list of (17, 3) keypoints (frame px + confidence).

    ``pose_frame`` (strict detection threshold) looks at the whole frame, ``pose_crop``
    (lenient: the HOG box and :func:`_fits_box` vouch for the person) at the proposals.
    """
    h, w = frame.shape[:2]
    candidates: list[np.ndarray] = []
    masked = frame.copy()
    fill = frame.mean(axis=(0, 1))

    def mask_out(keypoints: np.ndarray) -> None:
        x0, y0, x1, y1 = _extent(keypoints, 0.5)
        mx, my = 0.15 * (x1 - x0), 0.1 * (y1 - y0)
        xa, ya, xb, yb = int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my))
        if xb > xa and yb > ya:
            masked[ya:yb, xa:xb] = fill

    # Proposals 1: overlapping square windows (BlazePose's detector sees a 224 x 224 letterbox,
    # where a whole wide frame shrinks people), masking each person found before looking again.
    for x0, y0, side in _windows(w, h, args.windows):
        for _ in range(args.mask_rounds):
            found = _pose_on(pose_frame, masked[y0 : y0 + side, x0 : x0 + side], float(x0), float(y0), 1.0)
            if found is None:
                break
            candidates.append(found)
            mask_out(found)
    # Proposals 2: HOG people boxes (found on the frame upscaled 2x, non-maximum suppressed),
    # cropped from the masked frame, so that BlazePose does not lock onto someone already found.
    up = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    rects, weights = hog.detectMultiScale(up, winStride=(8, 8), padding=(16, 16), scale=1.05)
    if len(rects):
        keep = cv2.dnn.NMSBoxes([list(map(int, r)) for r in rects], [float(s) for s in np.ravel(weights)], 0.0, 0.5)
        for i in np.ravel(keep):
            x, y, bw, bh = rects[int(i)] / 2.0
            box = np.array([x, y, x + bw, y + bh])
            for grow in args.grow:  # BlazePose needs context around the person: widen until found
                crop, x0, y0 = _square_crop(masked, box, grow)
                found = _pose_on(pose_crop, crop, x0, y0, 1.0)
                if found is not None and _fits_box(found, box):
                    candidates.append(found)
                    mask_out(found)
                    break
    # Points outside the frame are unseen; quality filters; duplicates by keypoint distance.
    people = []
    for keypoints in candidates:
        outside = (keypoints[:, 0] < 0) | (keypoints[:, 0] > w - 1) | (keypoints[:, 1] < 0) | (keypoints[:, 1] > h - 1)
        keypoints[outside, 2] = 0.0
        seen = keypoints[:, 2] > 0.5
        if seen.sum() < args.min_visible:
            continue
        x0, y0, x1, y1 = _extent(keypoints, 0.5)
        if y1 - y0 < args.min_height or not _upright(keypoints):
            continue
        people.append(keypoints)
    people.sort(key=lambda k: -float(k[:, 2].mean()))
    kept: list[np.ndarray] = []
    for keypoints in people:
        height = _extent(keypoints, 0.5)[3] - _extent(keypoints, 0.5)[1]
        duplicate = any(
            np.linalg.norm(keypoints[:, :2] - other[:, :2], axis=1).mean() < args.dedup * height for other in kept
        )
        if not duplicate:
            kept.append(keypoints)
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="default: <video stem>.coco.json next to it")
    parser.add_argument("--min_height", type=float, default=60.0, help="px: smallest person kept")
    parser.add_argument("--min_visible", type=int, default=8, help="keypoints with confidence > 0.5")
    parser.add_argument("--dedup", type=float, default=0.15, help="duplicate distance / person height")
    parser.add_argument("--grow", type=float, nargs="+", default=[1.5, 2.2], help="square crop side / longer HOG box side, tried in turn")
    parser.add_argument("--crop_confidence", type=float, default=0.3, help="BlazePose detection threshold on proposals")
    parser.add_argument("--mask_rounds", type=int, default=2, help="people looked for per window")
    parser.add_argument("--windows", type=float, nargs="+", default=[1.0, 0.75], help="window side / shorter frame side")
    args = parser.parse_args(argv)
    output = args.output or args.video.with_name(args.video.stem + ".coco.json")

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    pose_frame, pose_crop = (
        mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=confidence)
        for confidence in (0.5, args.crop_confidence)
    )
    capture = cv2.VideoCapture(str(args.video))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {args.video}")
    images, annotations = [], []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        images.append({"id": index, "file_name": f"{args.video.name}#{index}", "width": w, "height": h})
        for keypoints in detect_people(frame, pose_frame, pose_crop, hog, args):
            x0, y0, x1, y1 = _extent(keypoints, 0.0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": 1,
                    "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
                    "num_keypoints": int((keypoints[:, 2] > 0.5).sum()),
                    "score": round(float(keypoints[:, 2].mean()), 4),
                    "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                }
            )
        index += 1
    capture.release()
    pose_frame.close()
    pose_crop.close()
    document = {
        "info": {
            "description": f"Machine-made keypoints of {args.video.name}",
            "generator": "tests/data/real/make_keypoints.py: mediapipe 0.10.21 Pose (model_complexity=1) "
            "on OpenCV HOG people proposals and masked whole frames",
            "settings": {k: v for k, v in vars(args).items() if k not in ("video", "output")},
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17_NAMES), "skeleton": []}],
    }
    output.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    per_frame = np.bincount([a["image_id"] for a in annotations], minlength=len(images))
    print(f"{output}: {len(images)} frames, {len(annotations)} people, per frame min {per_frame.min()} "
          f"median {np.median(per_frame):.0f} max {per_frame.max()}")


if __name__ == "__main__":
    main()
