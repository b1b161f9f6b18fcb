"""Fast joints path vs the full smplx forward, side by side in one run.

Both sides compute the SMPL-24 joints and the COCO-17 keypoints (joints + 5 face vertices)
of the stand-in body model for random poses and shapes, then back-propagate a scalar loss
to pose and betas. smplx computes the whole 6890-vertex mesh to get there; the fast path
does forward kinematics of the shaped rest joints and skins only the 5 face vertices.

    python -m bench.body_model            # batch 250, float32, CPU
    python -m bench.body_model --quick    # fewer repetitions (< 1 minute)

The last output line is JSON: ``max_abs_diff_m`` (float32, fast vs smplx, joints and face
keypoints), ``max_abs_diff_m_float64``, ``fast_ms`` / ``smplx_ms`` (median forward+backward
per batch) and ``speedup`` (= smplx_ms / fast_ms).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time

import torch

from models.body_model import BodyModel
from models.joint_names import COCO17_FACE_VERTEX_IDS
from models.standin import ensure_standin


def _smplx_model(path: str, dtype: torch.dtype, device: str):
    import smplx

    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a 10-beta warning
        return smplx.SMPLLayer(model_path=path, dtype=dtype).to(device)


def _smplx_outputs(model, pose: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from smplx.lbs import batch_rodrigues

    n = pose.shape[0]
    rot = batch_rodrigues(pose.reshape(-1, 3)).reshape(n, 24, 3, 3)
    out = model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:])
    face = out.vertices[:, list(COCO17_FACE_VERTEX_IDS)]
    return out.joints[:, :24], face


def _random_inputs(batch: int, dtype: torch.dtype, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pose = (torch.randn(batch, 72, generator=g, dtype=torch.float64) * 0.4).to(dtype)
    betas = (torch.randn(batch, 10, generator=g, dtype=torch.float64) * 1.0).to(dtype)
    return pose.to(device), betas.to(device)


def max_abs_diff(path: str, batch: int, dtype: torch.dtype, device: str, seed: int = 0) -> float:
    """Largest |fast - smplx| over joints and face keypoints, metres."""
    model = BodyModel.from_file(path, dtype=dtype).to(device)
    ref = _smplx_model(path, dtype, device)
    pose, betas = _random_inputs(batch, dtype, device, seed)
    with torch.no_grad():
        joints, keypoints = model.joints_and_keypoints(pose, betas)
        ref_joints, ref_face = _smplx_outputs(ref, pose, betas)
    return max(
        (joints - ref_joints).abs().max().item(),
        (keypoints[:, :5] - ref_face).abs().max().item(),
    )


def _time(step, repeats: int, device: str) -> list[float]:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions per side")
    parser.add_argument("--quick", action="store_true", help="5 timed repetitions")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", default=None, help="stand-in folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats

    with tempfile.TemporaryDirectory() as tmp:
        paths = ensure_standin(args.cache_dir or tmp)
        path = str(paths.neutral)
        diff32 = max_abs_diff(path, args.batch, torch.float32, args.device)
        diff64 = max_abs_diff(path, args.batch, torch.float64, args.device)

        dtype = torch.float32
        model = BodyModel.from_file(path, dtype=dtype).to(args.device)
        ref = _smplx_model(path, dtype, args.device)
        pose0, betas0 = _random_inputs(args.batch, dtype, args.device, seed=1)
        pose = pose0.clone().requires_grad_(True)
        betas = betas0.clone().requires_grad_(True)

        def fast_step() -> None:
            joints, keypoints = model.joints_and_keypoints(pose, betas)
            (joints.square().sum() + keypoints.square().sum()).backward()

        def smplx_step() -> None:
            joints, face = _smplx_outputs(ref, pose, betas)
            (joints.square().sum() + face.square().sum()).backward()

        for step in (fast_step, smplx_step):  # warm-up
            step()
            step()
        fast = _time(fast_step, repeats, args.device)
        full = _time(smplx_step, repeats, args.device)

    fast_ms = statistics.median(fast)
    smplx_ms = statistics.median(full)
    result = {
        "batch": args.batch,
        "dtype": "float32",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "max_abs_diff_m": diff32,
        "max_abs_diff_m_float64": diff64,
        "fast_ms": round(fast_ms, 3),
        "smplx_ms": round(smplx_ms, 3),
        "speedup": round(smplx_ms / fast_ms, 2),
        "fast_min_ms": round(min(fast), 3),
        "smplx_min_ms": round(min(full), 3),
    }
    print(
        f"batch {args.batch} float32 on {args.device} ({torch.get_num_threads()} threads), "
        f"forward+backward, median of {repeats}:"
    )
    print(f"  fast path  {fast_ms:9.2f} ms   (min {min(fast):.2f})")
    print(f"  smplx      {smplx_ms:9.2f} ms   (min {min(full):.2f})")
    print(f"  max |fast - smplx|: {diff32:.2e} m (float32), {diff64:.2e} m (float64)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
