"""Speed of bundle adjustment against a naive reference, in one run, with the production BAConfig.

* **lbfgs** (the product, ``BAConfig.solver = "batched"``): ``optimize.bundle_adjust.bundle_adjust``
  on all tracks at once: the body model's fast joints path, per-track L-BFGS states in
  one batched solver, length buckets.
* **naive reference** (implemented here): the full ``smplx.SMPL`` forward (all 6890
  vertices, the COCO face keypoints read off the mesh) and ``torch.optim.LBFGS`` with
  strong-Wolfe line search, one track at a time.

Both minimise the same objective (``optimize.energy``, the same continuation stages)
from the same starting point with the production budgets and tolerances (``BAConfig()``:
300 iterations per stage, no lowered caps; ``--max-iter`` lowers them for a quick look
only, and the JSON says so). Final energies are compared per track with the fast path.
Reported: iterations and evaluations per track, how many tracks stopped at the
iteration cap, frames/s, per-track energy ratio, the time of a 1,000-frame track over a
250-frame one, a 1,175-frame track (the longest Human3.6M sequence at 10 fps) in one piece,
and peak memory. ``--summed`` adds the naive *summed* batching (torchmin on the sum of
all tracks) against each track alone.

A second-order solver (issue 14's Levenberg-Marquardt) does not exist yet:
``speedup_vs_lbfgs`` is null until it does.

    python -m bench.ba_speed [--quick] [--device cuda --tracks 64 --frames 250]

Timings use one torch thread unless ``--threads`` says otherwise. The last output line is
a JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import re
import resource
import time

import numpy as np
import torch

from bench._synthetic_tracks import make_track, make_tracks
from bench.ba_accuracy import load_models
from models.joint_names import COCO17_BODY_SMPL24_IDS, COCO17_FACE_VERTEX_IDS
from models.standin import ensure_standin
from optimize.bundle_adjust import PackedTracks, bundle_adjust, make_objective
from optimize.config import BAConfig
from optimize.energy import energy_terms, gmm_nll_offset

logger = logging.getLogger(__name__)


class SmplxFullForward(torch.nn.Module):
    """The naive body model: ``smplx.SMPL`` (full mesh) behind the BodyModel interface."""

    def __init__(self, path, dtype: torch.dtype = torch.float32):
        super().__init__()
        import smplx

        self.smpl = smplx.SMPL(model_path=str(path), dtype=dtype)
        self.register_buffer("face_ids", torch.tensor(COCO17_FACE_VERTEX_IDS))
        self.register_buffer("body_ids", torch.tensor(COCO17_BODY_SMPL24_IDS))

    def _forward(self, pose: torch.Tensor, betas: torch.Tensor):
        batch = torch.broadcast_shapes(pose.shape[:-1], betas.shape[:-1])
        pose = pose.expand(batch + (72,)).reshape(-1, 72)
        betas = betas.expand(batch + (10,)).reshape(-1, 10)
        out = self.smpl(global_orient=pose[:, :3], body_pose=pose[:, 3:], betas=betas)
        joints = out.joints[:, :24]
        keypoints = torch.cat([out.vertices[:, self.face_ids], joints[:, self.body_ids]], 1)
        return joints.reshape(batch + (24, 3)), keypoints.reshape(batch + (17, 3))

    def joints(self, pose, betas):
        return self._forward(pose, betas)[0]

    def joints_and_keypoints(self, pose, betas):
        return self._forward(pose, betas)


def naive_reference(problem, smpl_model, prior, config: BAConfig, gmm_offset: float, device):
    """torch.optim.LBFGS on one track with the full smplx forward. Returns x (1, n), iterations."""
    packed = PackedTracks([problem], smpl_model, device, config.torch_dtype)
    index = torch.zeros(1, dtype=torch.long, device=device)
    x = packed.x0.clone().requires_grad_(True)
    iterations = 0
    for multiplier in config.tau_r_schedule:
        stage = config.replace(tau_r_px=config.tau_r_px * multiplier)
        objective = make_objective(packed, smpl_model, prior, stage, gmm_offset)
        optimizer = torch.optim.LBFGS(
            [x], lr=1.0, max_iter=config.max_iter, max_eval=config.max_eval,
            tolerance_grad=config.gtol, tolerance_change=config.ftol,
            history_size=config.history_size, line_search_fn="strong_wolfe",
        )

        def closure():
            optimizer.zero_grad()
            f = objective(x, index).sum()
            f.backward()
            return f

        optimizer.step(closure)
        iterations += int(optimizer.state[optimizer._params[0]]["n_iter"])
    return x.detach(), iterations


def total_energy(problem, x, body_model, prior, config, gmm_offset, device) -> float:
    """E of one track at solver variables x (1, n), with the fast path."""
    packed = PackedTracks([problem], body_model, device, config.torch_dtype)
    with torch.no_grad():
        pose, betas, camera = packed.decode(x.to(device))
        terms = energy_terms(pose, betas, camera, packed.batch, body_model, prior, config, gmm_offset)
    return float(terms.total()[0])


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def summed_vs_alone(body_model, prior, config, tracks, device) -> dict:
    """Per-track final energies: torchmin on the summed objective vs each track alone vs batched."""
    problems = [t.problem for t in tracks]
    out = {}
    energies = {}
    for solver in ("per_track", "summed", "batched"):
        fits, seconds = _timed(lambda: bundle_adjust(problems, body_model, prior, config.replace(solver=solver), device), device)
        energies[solver] = np.array([f.energies["total"] for f in fits])
        out[solver] = {"seconds": round(seconds, 2), "iterations": [f.iterations for f in fits],
                       "energy": energies[solver].round(2).tolist()}
    alone = energies["per_track"]
    for solver in ("summed", "batched"):
        rel = energies[solver] / alone - 1.0
        out[f"{solver}_vs_alone"] = {
            "mean_rel_energy_diff": float(rel.mean()),
            "max_rel_energy_diff": float(rel.max()),
            "tracks_worse_by_1pct": int((rel > 0.01).sum()),
            "tracks": len(rel),
        }
    return out


def _evaluations(fit) -> int:
    """Objective evaluations of a fit (its message reads "N iterations, M evaluations...")."""
    match = re.search(r"(\d+) evaluations", fit.message)
    return int(match.group(1)) if match else -1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run: 2 x 30 frames, 10 iterations per stage")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--tracks", type=int, default=None, help="tracks (default 8, quick 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames per track (default 250, quick 30)")
    parser.add_argument("--baseline-tracks", type=int, default=None,
                        help="run the naive reference on the first N of the same tracks (default 1: it "
                             "takes minutes per 250-frame track on a CPU; 0 skips it)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="lower the iterations per continuation stage (default: production, 300; quick 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--summed", action="store_true", help="also measure torchmin on the summed objective")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    num_tracks = args.tracks or (2 if args.quick else 8)
    num_frames = args.frames or (30 if args.quick else 250)
    max_iter = args.max_iter or (10 if args.quick else None)
    config = BAConfig(dtype=args.dtype)
    if max_iter is not None:
        config = config.replace(max_iter=max_iter, max_eval=int(max_iter * 2.5))
    dtype = config.torch_dtype
    body_model, prior = load_models()
    smpl_model = SmplxFullForward(ensure_standin(os.environ.get("VID2MESH_STANDIN_DIR")).neutral, dtype).to(device)
    body_dev = copy.deepcopy(body_model).to(device=device, dtype=dtype)
    prior_dev = copy.deepcopy(prior).to(device=device, dtype=dtype)
    offset = gmm_nll_offset(prior_dev)
    tracks = make_tracks(body_model, "all", num_tracks, num_frames, seed=7)
    problems = [t.problem for t in tracks]
    frames = sum(p.num_frames for p in problems)
    cap = config.max_iter * len(config.tau_r_schedule)

    # warm-up (allocator, lazy init) on a tiny problem
    bundle_adjust([make_track(body_model, "walking", 8, seed=1).problem], body_dev, prior_dev, config.replace(max_iter=3), device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fits, lbfgs_s = _timed(lambda: bundle_adjust(problems, body_dev, prior_dev, config, device), device)
    peak_mem_mb = (torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda"
                   else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    frames_per_s = frames / lbfgs_s
    iterations = [f.iterations for f in fits]
    evaluations = [_evaluations(f) for f in fits]
    at_cap = sum(1 for f in fits if f.status == "ok" and not f.converged)
    print(f"lbfgs: {num_tracks} tracks x {num_frames} frames in {lbfgs_s:.1f} s = {frames_per_s:.1f} frames/s; "
          f"iterations {iterations} (cap {cap}, {at_cap} tracks stopped at it), evaluations {evaluations}", flush=True)

    result = {
        "device": device,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}" + (f", {torch.cuda.get_device_name()}" if torch.device(device).type == "cuda" else ""),
        "dtype": args.dtype,
        "config": "production BAConfig()" if max_iter is None else f"max_iter lowered to {max_iter} per stage",
        "tracks": num_tracks,
        "frames_per_track": num_frames,
        "iteration_cap": cap,
        "lbfgs": {"seconds": round(lbfgs_s, 2), "frames_per_s": frames_per_s, "iterations": iterations,
                  "evaluations": evaluations, "tracks_at_cap": at_cap,
                  "statuses": sorted({f.status for f in fits})},
        "frames_per_s": frames_per_s,
        "max_iterations": max(iterations),
        "tracks_at_cap": at_cap,
        "speedup_vs_lbfgs": None,
        "second_order_solver": "not implemented (issue 14 item 1 open)",
        "peak_mem_mb": peak_mem_mb,
    }

    n_base = min(num_tracks, 1 if args.baseline_tracks is None else args.baseline_tracks)
    if n_base:
        base_energy, ours_energy, base_iters = [], [], []
        base_s = 0.0
        for problem, fit in zip(problems[:n_base], fits[:n_base]):
            (x, iters), seconds = _timed(lambda: naive_reference(problem, smpl_model, prior_dev, config, offset, device), device)
            base_s += seconds
            base_iters.append(iters)
            base_energy.append(total_energy(problem, x, body_dev, prior_dev, config, offset, device))
            ours_energy.append(fit.energies["total"])
            print(f"  naive track {problem.clip_id}: {seconds:.1f} s, {iters} iterations, E {base_energy[-1]:.1f} "
                  f"(lbfgs E {fit.energies['total']:.1f}, {fit.iterations} iterations)", flush=True)
        base_frames = sum(p.num_frames for p in problems[:n_base])
        baseline_frames_per_s = base_frames / base_s
        per_track_ratio = (np.array(ours_energy) / np.array(base_energy)).round(4).tolist()
        result.update(
            baseline_tracks=n_base, baseline_seconds=round(base_s, 2), baseline_frames_per_s=baseline_frames_per_s,
            baseline_iterations=base_iters, speedup=frames_per_s / baseline_frames_per_s,
            energy_ratio=float(np.sum(ours_energy) / np.sum(base_energy)), energy_ratio_per_track=per_track_ratio,
        )
        print(f"naive: {baseline_frames_per_s:.2f} frames/s; speedup {result['speedup']:.1f}x; "
              f"energy ratio {result['energy_ratio']:.4f} per track {per_track_ratio}", flush=True)
    else:
        result.update(speedup=None, energy_ratio=None)

    if not args.skip_scaling:
        lengths = (25, 100) if args.quick else (250, 1000)
        times = {}
        for length in lengths:
            track = make_track(body_model, "walking", length, seed=99)
            fit_list, seconds = _timed(lambda: bundle_adjust([track.problem], body_dev, prior_dev, config, device), device)
            times[length] = (seconds, fit_list[0].iterations)
            print(f"  one {length}-frame track: {seconds:.1f} s, {fit_list[0].iterations} iterations", flush=True)
        result["t1000_over_t250"] = times[lengths[1]][0] / times[lengths[0]][0]
        result["scaling_lengths"] = list(lengths)
        result["scaling_iterations"] = [times[n][1] for n in lengths]
        long_len = 120 if args.quick else 1175
        track = make_track(body_model, "walking", long_len, seed=1175)
        fit_list, seconds = _timed(lambda: bundle_adjust([track.problem], body_dev, prior_dev, config, device), device)
        result["long_track"] = {"frames": long_len, "seconds": round(seconds, 2), "status": fit_list[0].status,
                                "iterations": fit_list[0].iterations, "chunks": 1}
        print(f"  one {long_len}-frame track in one piece: {seconds:.1f} s ({fit_list[0].status}, "
              f"{fit_list[0].iterations} iterations)", flush=True)
    else:
        result["t1000_over_t250"] = None

    if args.summed:
        k = 2 if args.quick else 6
        comparison_tracks = make_tracks(body_model, "all", k, 20 if args.quick else 60, seed=13)
        result["summed_vs_alone"] = summed_vs_alone(body_dev, prior_dev, config, comparison_tracks, device)
        for key in ("summed_vs_alone", "batched_vs_alone"):
            print(f"  {key}: {result['summed_vs_alone'][key]}", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
