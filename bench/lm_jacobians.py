"""Body-model Jacobians for the Levenberg-Marquardt solver: analytic vs ``torch.func``.

Times ``BodyModel.jacobians`` (analytic: cross products with the kinematic chain's columns,
skinning for the face vertices) against ``torch.func.vmap(torch.func.jacrev(...))`` over
frames (automatic differentiation, the alternative to hand-written Jacobians) and ``jacfwd``, on the same
frames, and checks that they agree. Both give d(joints, keypoints) / d(pose, betas) for
N frames.

    python -m bench.lm_jacobians [--frames 416] [--device cpu] [--dtype float32] [--threads 1]

The last output line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from bench.ba_accuracy import load_models


def _timed(fn, device: str, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=416, help="frames (default 416: 4 tracks x 104)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    body, _ = load_models()
    body = body.to(device=args.device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    pose = (0.3 * torch.randn(args.frames, 72, generator=generator, dtype=torch.float64)).to(args.device, dtype)
    betas = torch.randn(args.frames, 10, generator=generator, dtype=torch.float64).to(args.device, dtype)

    def outputs(p, b):
        joints, keypoints = body.joints_and_keypoints(p[None], b[None])
        return torch.cat((joints[0], keypoints[0]), 0)  # (41, 3)

    def analytic():
        out = body.jacobians(pose, betas)
        return (torch.cat((out["joints_pose"], out["keypoints_pose"]), 1),
                torch.cat((out["joints_betas"], out["keypoints_betas"]), 1))

    def reverse():
        return torch.func.vmap(torch.func.jacrev(outputs, argnums=(0, 1)))(pose, betas)

    def forward():
        return torch.func.vmap(torch.func.jacfwd(outputs, argnums=(0, 1)))(pose, betas)

    results = {}
    t_analytic, reference = _timed(analytic, args.device, args.repeat)
    results["analytic"] = {"seconds": t_analytic, "max_abs_diff": 0.0}
    for name, fn in (("vmap_jacrev", reverse), ("vmap_jacfwd", forward)):
        try:
            seconds, value = _timed(fn, args.device, args.repeat)
        except RuntimeError as error:  # a torch.func limitation is a result, not a crash
            results[name] = {"error": str(error).splitlines()[0]}
            continue
        diff = max(float((value[0] - reference[0]).abs().max()), float((value[1] - reference[1]).abs().max()))
        results[name] = {"seconds": seconds, "max_abs_diff": diff}
    for name, r in results.items():
        if "seconds" in r:
            print(f"{name:12s} {r['seconds'] * 1e3:8.1f} ms for {args.frames} frames "
                  f"({r['seconds'] / t_analytic:5.2f}x analytic), max |diff| {r['max_abs_diff']:.2e}")
        else:
            print(f"{name:12s} failed: {r['error']}")
    summary = {
        "frames": args.frames, "device": args.device, "dtype": args.dtype,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "load_average": os.getloadavg()[0],
        **{f"{name}_ms": round(r["seconds"] * 1e3, 2) for name, r in results.items() if "seconds" in r},
        "max_abs_diff": {name: r.get("max_abs_diff") for name, r in results.items()},
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
