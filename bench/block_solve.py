"""Speed and accuracy of the bordered block-tridiagonal solve (``optimize.blocks``).

Times, side by side on the same random systems:

* **reference**: the first implementation of ``solve_bordered_tridiagonal`` (kept here,
  :func:`_solve_thomas_reference`): block Thomas with two triangular solves of n x n
  blocks per step, a full backward pass on the border's m + 1 columns and stacked lists.
* **sweep**: ``method="sweep"`` (the CPU default): one Cholesky, one triangular solve of
  ``[A[t+1, t]^T, rhs_t]`` and one product per step; the Schur complement from the
  forward pass; a one-column backward pass.
* **cyclic**: ``method="cyclic"`` (the default on other devices): block cyclic reduction,
  ceil(log2 T) batched levels.

The systems have the bundle-adjustment structure: ``H = J^T J + 0.1 I`` where each
frame's k = n + 2 residuals touch frame t, frame t - 1 and the m border unknowns
(Gaussian J), built block by block (never dense). Accuracy is the relative residual
``||H [x; y] - [r; s]|| / ||[r; s]||`` per system (worst over the batch), computed in
float64 from the blocks.

    python -m bench.block_solve [--device cpu|cuda] [--tracks B] [--frames T]
        [--dtype float32|float64] [--threads 1] [--repeat 3]

Timings are the median of ``--repeat`` calls after one warm-up call; the last output line
is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from torch import Tensor

from optimize.blocks import BorderedSolution, solve_bordered_tridiagonal


def random_system(B: int, T: int, n: int, m: int, dtype: torch.dtype, device: str, seed: int = 0):
    """Blocks of ``H = J^T J + 0.1 I`` with per-frame residuals on frames t, t-1 and the border.

    Returns:
        (diagonal (B, T, n, n), lower (B, T, n, n), border (B, T, n, m), corner (B, m, m),
        rhs_frames (B, T, n), rhs_border (B, m)).
    """
    g = torch.Generator(device=device).manual_seed(seed)
    k = n + 2

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype, device=device)

    current, previous, shared = randn(B, T, k, n), randn(B, T, k, n), randn(B, T, k, m)
    previous[:, 0] = 0  # frame 0 has no predecessor
    eye_n = torch.eye(n, dtype=dtype, device=device)
    diagonal = current.transpose(-1, -2) @ current + 0.1 * eye_n
    diagonal[:, :-1] += previous[:, 1:].transpose(-1, -2) @ previous[:, 1:]
    lower = current.transpose(-1, -2) @ previous
    border = current.transpose(-1, -2) @ shared
    border[:, :-1] += previous[:, 1:].transpose(-1, -2) @ shared[:, 1:]
    flat = shared.reshape(B, T * k, m)
    corner = flat.transpose(-1, -2) @ flat + 0.1 * torch.eye(m, dtype=dtype, device=device)
    del current, previous, shared, flat
    # exactly symmetric (a product computed in floating point need not be): the solvers
    # read one triangle, the residual reads both
    diagonal = 0.5 * (diagonal + diagonal.transpose(-1, -2))
    corner = 0.5 * (corner + corner.transpose(-1, -2))
    return diagonal, lower, border, corner, randn(B, T, n), randn(B, m)


def relative_residual(system, solution: BorderedSolution) -> Tensor:
    """(B,) ``||H [x; y] - [r; s]|| / ||[r; s]||`` in float64, block by block."""
    out = []
    for b in range(system[0].shape[0]):
        diagonal, lower, border, corner, rhs_frames, rhs_border = (part[b : b + 1].double() for part in system)
        x, y = solution.x[b : b + 1].double(), solution.y[b : b + 1].double()
        hx = (diagonal @ x[..., None])[..., 0] + (border @ y[:, None, :, None])[..., 0]
        hx[:, 1:] += (lower[:, 1:] @ x[:, :-1, :, None])[..., 0]
        hx[:, :-1] += (lower[:, 1:].transpose(-1, -2) @ x[:, 1:, :, None])[..., 0]
        hy = torch.einsum("btnm,btn->bm", border, x) + (corner @ y[..., None])[..., 0]
        residual = torch.cat(((hx - rhs_frames).flatten(1), hy - rhs_border), 1).norm(dim=1)
        out.append(residual / torch.cat((rhs_frames.flatten(1), rhs_border), 1).norm(dim=1))
    return torch.cat(out)


def _solve_thomas_reference(diagonal, lower, border, corner, rhs_frames, rhs_border) -> BorderedSolution:
    """The first ``solve_bordered_tridiagonal`` (no frame mask), verbatim, for comparison."""
    B, T, n, _ = diagonal.shape
    m = corner.shape[-1]
    rhs = torch.cat((border, rhs_frames[..., None]), -1)
    factors, couplings, forward = [], [], []
    ok = torch.ones(B, dtype=torch.bool, device=diagonal.device)
    previous_factor = previous_w = None
    for t in range(T):
        block, right = diagonal[:, t], rhs[:, t]
        if t == 0:
            coupling = torch.zeros_like(block)
        else:
            coupling = torch.linalg.solve_triangular(previous_factor, lower[:, t].transpose(-1, -2), upper=False)
            coupling = coupling.transpose(-1, -2)
            block = block - coupling @ coupling.transpose(-1, -2)
            right = right - coupling @ previous_w
        block = 0.5 * (block + block.transpose(-1, -2))
        factor, info = torch.linalg.cholesky_ex(block)
        ok = ok & (info == 0)
        w = torch.linalg.solve_triangular(factor, right, upper=False)
        factors.append(factor)
        couplings.append(coupling)
        forward.append(w)
        previous_factor, previous_w = factor, w
    factors, couplings, forward = torch.stack(factors, 1), torch.stack(couplings, 1), torch.stack(forward, 1)
    out = [None] * T
    following = None
    for t in reversed(range(T)):
        right = forward[:, t]
        if following is not None:
            right = right - couplings[:, t + 1].transpose(-1, -2) @ following
        following = torch.linalg.solve_triangular(factors[:, t].transpose(-1, -2), right, upper=True)
        out[t] = following
    solved = torch.stack(out, 1)
    a_inv_e, a_inv_r = solved[..., :m], solved[..., m]
    schur = corner - torch.einsum("btnm,btnk->bmk", border, a_inv_e)
    schur = 0.5 * (schur + schur.transpose(-1, -2))
    schur_factor, info = torch.linalg.cholesky_ex(schur)
    ok = ok & (info == 0)
    y = torch.cholesky_solve((rhs_border - torch.einsum("btnm,btn->bm", border, a_inv_r))[..., None], schur_factor)[..., 0]
    x = a_inv_r - torch.einsum("btnm,bm->btn", a_inv_e, y)
    return BorderedSolution(x=x, y=y, ok=ok)


METHODS = {
    "reference": _solve_thomas_reference,
    "sweep": lambda *system: solve_bordered_tridiagonal(*system, method="sweep"),
    "cyclic": lambda *system: solve_bordered_tridiagonal(*system, method="cyclic"),
}


def _time(fn, system, device: str, repeat: int) -> tuple[list[float], BorderedSolution]:
    solution = fn(*system)  # warm-up
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        solution = fn(*system)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, solution


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tracks", type=int, default=8, help="B, systems in the batch")
    parser.add_argument("--frames", type=int, default=250, help="T")
    parser.add_argument("--frame-size", type=int, default=75, help="n, unknowns per frame")
    parser.add_argument("--border-size", type=int, default=10, help="m, shared unknowns")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    system = random_system(args.tracks, args.frames, args.frame_size, args.border_size, dtype, args.device)
    rows = {}
    for name in args.methods.split(","):
        times, solution = _time(METHODS[name], system, args.device, args.repeat)
        residual = relative_residual(system, solution)
        rows[name] = {
            "seconds_median": statistics.median(times),
            "seconds_min": min(times),
            "worst_relative_residual": float(residual.max()),
            "all_ok": bool(solution.ok.all()),
        }
        del solution
    base = rows.get("reference", {}).get("seconds_median")
    print(f"B={args.tracks} T={args.frames} n={args.frame_size} m={args.border_size} {args.dtype} {args.device}, "
          f"{args.threads} thread(s)")
    print(f"{'method':<10} {'median s':>9} {'min s':>9} {'speed-up':>9} {'residual':>10} ok")
    for name, row in rows.items():
        speedup = base / row["seconds_median"] if base else float("nan")
        row["speedup_vs_reference"] = speedup if base else None
        print(f"{name:<10} {row['seconds_median']:9.3f} {row['seconds_min']:9.3f} {speedup:9.2f} "
              f"{row['worst_relative_residual']:10.2e} {row['all_ok']}")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    result = {
        "tracks": args.tracks, "frames": args.frames, "frame_size": args.frame_size,
        "border_size": args.border_size, "dtype": args.dtype, "device": args.device, "threads": args.threads,
        "repeat": args.repeat, "methods": rows,
        "machine": f"{device_name}, {os.cpu_count()} cpus, torch {torch.__version__}",
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
