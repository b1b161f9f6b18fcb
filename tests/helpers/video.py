"""Generated test videos (ffmpeg's ``testsrc2`` pattern, no people in the pixels)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def pattern_video(path: Path, width: int, height: int, fps: float, frames: int) -> Path:
    """Write an H.264 ``testsrc2`` clip of ``frames`` frames, ``width`` x ``height`` pixels at ``fps``."""
    subprocess.run(["ffmpeg", "-y", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps:g}",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)], check=True)  # fmt: skip
    return path
