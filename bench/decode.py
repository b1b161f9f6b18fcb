"""Decoding benchmark: ffmpeg subprocess vs OpenCV, same clip, same output.

Encodes a Kinetics-like clip (H.264, 30 fps, 10 s, 640 x 360 and 1280 x 720) with ffmpeg's
``testsrc2`` into a temporary folder, decodes it with both backends of ``pipeline.perception.decode``
at 25 fps (native size, and resized to a 320-pixel longest side), and reports the best
wall time of the repeats, decoded frames per second, and the mean absolute pixel
difference between the backends' frames (they must select the same source frames).

    python -m bench.decode [--quick]

The last output line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

from pipeline.perception.decode import DecodeConfig, decode_video


def _encode(path: str, width: int, height: int, seconds: float) -> None:
    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", path],
        check=True,
    )  # fmt: skip


def _decode(path: str, backend: str, max_side: int) -> tuple[float, np.ndarray, int]:
    config = DecodeConfig(target_fps=25.0, backend=backend, max_side=max_side, max_pixels=10**8, batch_frames=32)
    start = time.perf_counter()
    _, batches = decode_video(path, config)
    count, sample = 0, None
    for batch in batches:
        if sample is None:
            sample = batch.frames[:8].copy()
        count += len(batch)
    return time.perf_counter() - start, sample, count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s clips, 2 repeats (< 1 minute)")
    args = parser.parse_args(argv)
    seconds, repeats = (3.0, 2) if args.quick else (10.0, 3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in ((640, 360), (1280, 720)):
            path = os.path.join(tmp, f"clip_{width}x{height}.mp4")
            _encode(path, width, height, seconds)
            for max_side in (width, 320):
                results = {}
                for backend in ("ffmpeg", "opencv"):
                    times, sample, count = [], None, 0
                    for _ in range(repeats):
                        elapsed, sample, count = _decode(path, backend, max_side)
                        times.append(elapsed)
                    results[backend] = (min(times), sample, count)
                diff = float(np.abs(results["ffmpeg"][1].astype(int) - results["opencv"][1].astype(int)).mean())
                row = {
                    "source": f"{width}x{height}@30",
                    "max_side": max_side,
                    "frames": results["ffmpeg"][2],
                    "frames_opencv": results["opencv"][2],
                    "ffmpeg_s": round(results["ffmpeg"][0], 4),
                    "opencv_s": round(results["opencv"][0], 4),
                    "ffmpeg_fps": round(results["ffmpeg"][2] / results["ffmpeg"][0], 1),
                    "opencv_fps": round(results["opencv"][2] / results["opencv"][0], 1),
                    "mean_abs_pixel_diff": round(diff, 3),
                }
                rows.append(row)
                print(
                    f"{row['source']} -> max side {max_side}: ffmpeg {row['ffmpeg_s']:.3f} s "
                    f"({row['ffmpeg_fps']} fps), opencv {row['opencv_s']:.3f} s ({row['opencv_fps']} fps), "
                    f"{row['frames']} / {row['frames_opencv']} frames, mean |diff| {row['mean_abs_pixel_diff']}"
                )
    speedup = float(np.mean([r["opencv_s"] / r["ffmpeg_s"] for r in rows]))
    result = {
        "clip_seconds": seconds,
        "repeats": repeats,
        "rows": rows,
        "mean_speedup_ffmpeg_over_opencv": round(speedup, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
