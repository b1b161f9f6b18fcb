"""Speed of bundle adjustment: both solvers and a naive reference, in one run, with the production BAConfig.

* **L-BFGS** (``BAConfig.solver = "batched"``): ``optimize.bundle_adjust.bundle_adjust``
  on all tracks at once: the body model's fast joints path, per-track L-BFGS states in
  one batched solver, length buckets.
* **LM** (``BAConfig.solver = "lm"``, the default, ``optimize.lm``): Levenberg-Marquardt on the block
  structure (analytic Jacobians, a bordered block-tridiagonal solve per iteration), same
  batching. An LM *iteration* is one linear solve and an *evaluation* one linearisation
  (energy + Jacobians), so neither is comparable in cost with an L-BFGS one: compare seconds.
* **naive reference** (implemented here): the full ``smplx.SMPL`` forward (all 6890
  vertices, the COCO face keypoints read off the mesh) and ``torch.optim.LBFGS`` with
  strong-Wolfe line search, one track at a time.

All minimise the same objective (``optimize.energy``, the same continuation stages) from
the same starting point on the same tracks, with the production budgets and tolerances
(``BAConfig()``: L-BFGS 300 iterations per stage, LM ``lm_max_iter`` per stage, 2 stages;
``--max-iter`` / ``--lm-max-iter`` lower them for a quick look only, and the JSON says so).
Reported per solver: seconds, frames/s, iterations and evaluations per track, how many
tracks stopped at the iteration cap, statuses, final energies; the per-track energy ratio
LM / L-BFGS; the default solver's speedup and energy ratio over the naive reference (which
runs on the first ``--baseline-tracks`` tracks); per solver the time of a 1,000-frame track
over a 250-frame one and a 1,175-frame track (the longest Human3.6M sequence at 10 fps) in
one piece; peak memory. ``--summed`` adds the naive *summed* batching (torchmin on the sum
of all tracks) against each track alone.

    python -m bench.ba_speed [--quick] [--solvers batched,lm] [--device cuda --tracks 64 --frames 250]

Timings use one torch thread unless ``--threads`` says otherwise. The last output line is
a JSON object: ``speedup`` and ``energy_ratio`` are the default solver's (``BAConfig().solver``)
against the naive reference, ``speedup_vs_lbfgs`` is LM frames/s over L-BFGS frames/s,
``energy_ratio_lm_vs_lbfgs`` the per-track final energy ratio, ``solvers`` the per-solver
figures.
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

from pipeline.synth.tracks import make_track, make_tracks
from bench.ba_accuracy import load_models
from models.joint_names import COCO17_BODY_SMPL24_IDS, COCO17_FACE_VERTEX_IDS
from models.standin import ensure_standin
from optimize.bundle_adjust import PackedTracks, bundle_adjust, in_solver_units, make_objective
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
    """torch.optim.LBFGS on one track with the full smplx forward. Returns x (1, n), iterations.

    ``problem`` must be in solver units (:func:`optimize.bundle_adjust.in_solver_units`), so
    that the reference minimises the production objective.
    """
    packed = PackedTracks([problem], smpl_model, device, config.torch_dtype, config.keypoint_init_scale,
                          temporal_reference_fps=config.temporal_reference_fps)
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
    """E of one track (in solver units) at solver variables x (1, n), with the fast path."""
    packed = PackedTracks([problem], body_model, device, config.torch_dtype, config.keypoint_init_scale,
                          temporal_reference_fps=config.temporal_reference_fps)
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



SOLVER_LABELS = {"batched": "L-BFGS", "lm": "LM", "summed": "summed L-BFGS", "per_track": "per-track L-BFGS"}


def iteration_cap(config: BAConfig) -> int:
    """The most iterations a track can take: the solver's per-stage cap x continuation stages."""
    per_stage = config.lm_max_iter if config.solver == "lm" else config.max_iter
    return per_stage * len(config.tau_r_schedule)


def _peak_memory_mb(device) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process's peak resident set so far."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def run_solver(problems, body_dev, prior_dev, config: BAConfig, warmup_problem, device) -> tuple[list, dict]:
    """Warm up, then time ``bundle_adjust`` on all problems with one solver. Returns fits, figures."""
    bundle_adjust([warmup_problem], body_dev, prior_dev, config.replace(max_iter=3, lm_max_iter=3), device)
    _reset_peak_memory(device)
    fits, seconds = _timed(lambda: bundle_adjust(problems, body_dev, prior_dev, config, device), device)
    frames = sum(p.num_frames for p in problems)
    iterations = [f.iterations for f in fits]
    figures = {
        "label": SOLVER_LABELS.get(config.solver, config.solver),
        "seconds": round(seconds, 2),
        "frames_per_s": frames / seconds,
        "iterations": iterations,
        "evaluations": [_evaluations(f) for f in fits],
        "max_iterations": max(iterations),
        "iteration_cap": iteration_cap(config),
        "tracks_at_cap": sum(1 for f in fits if f.status == "ok" and not f.converged),
        "converged": sum(1 for f in fits if f.converged),
        "statuses": {s: sum(f.status == s for f in fits) for s in sorted({f.status for f in fits})},
        "energy": [round(f.energies["total"], 3) for f in fits],
        "peak_mem_mb": _peak_memory_mb(device),
    }
    return fits, figures


def scaling(body_model, body_dev, prior_dev, config: BAConfig, lengths, long_len, device) -> dict:
    """One track of each length (the same tracks for every solver) and one long track in one piece."""
    times = {}
    for length in lengths:
        track = make_track(body_model, "walking", length, seed=99)
        fit_list, seconds = _timed(lambda: bundle_adjust([track.problem], body_dev, prior_dev, config, device), device)
        times[length] = (seconds, fit_list[0].iterations)
        print(f"  {config.solver}: one {length}-frame track: {seconds:.1f} s, {fit_list[0].iterations} iterations",
              flush=True)
    track = make_track(body_model, "walking", long_len, seed=1175)
    fit_list, seconds = _timed(lambda: bundle_adjust([track.problem], body_dev, prior_dev, config, device), device)
    fit = fit_list[0]
    print(f"  {config.solver}: one {long_len}-frame track in one piece: {seconds:.1f} s ({fit.status}, "
          f"{fit.iterations} iterations, converged {fit.converged})", flush=True)
    return {
        "lengths": list(lengths),
        "seconds": [round(times[n][0], 2) for n in lengths],
        "iterations": [times[n][1] for n in lengths],
        "ratio": times[lengths[1]][0] / times[lengths[0]][0],
        "long_track": {"frames": long_len, "seconds": round(seconds, 2), "status": fit.status,
                       "iterations": fit.iterations, "evaluations": _evaluations(fit), "converged": fit.converged,
                       "energy": round(fit.energies["total"], 3), "chunks": 1},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small run: 2 x 30 frames, 10 iterations per stage for both solvers")
    parser.add_argument("--solvers", default="batched,lm",
                        help="comma-separated BAConfig.solver values to time (default: batched,lm)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--tracks", type=int, default=None, help="tracks (default 8, quick 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames per track (default 250, quick 30)")
    parser.add_argument("--baseline-tracks", type=int, default=None,
                        help="run the naive reference on the first N of the same tracks (default 1: it "
                             "takes minutes per 250-frame track on a CPU; 0 skips it)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="lower the L-BFGS iterations per continuation stage (default: production, 300; quick 10)")
    parser.add_argument("--lm-max-iter", type=int, default=None,
                        help="lower the LM iterations per continuation stage (default: production "
                             f"BAConfig().lm_max_iter = {BAConfig().lm_max_iter}; quick 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--summed", action="store_true", help="also measure torchmin on the summed objective")
    args = parser.parse_args(argv)
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if not solvers or len(set(solvers)) != len(solvers):
        parser.error(f"--solvers {args.solvers!r}: give distinct solvers, comma-separated")
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    num_tracks = args.tracks or (2 if args.quick else 8)
    num_frames = args.frames or (30 if args.quick else 250)
    max_iter = args.max_iter or (10 if args.quick else None)
    lm_max_iter = args.lm_max_iter or (10 if args.quick else None)
    config = BAConfig(dtype=args.dtype)
    lowered = []
    if max_iter is not None:
        config = config.replace(max_iter=max_iter, max_eval=int(max_iter * 2.5))
        lowered.append(f"max_iter {max_iter}")
    if lm_max_iter is not None:
        config = config.replace(lm_max_iter=lm_max_iter)
        lowered.append(f"lm_max_iter {lm_max_iter}")
    default_solver = BAConfig().solver
    try:
        configs = {s: config.replace(solver=s) for s in solvers}  # BAConfig validates the names
    except ValueError as error:
        parser.error(f"--solvers {args.solvers!r}: {error}")
    dtype = config.torch_dtype
    body_model, prior = load_models()
    body_dev = copy.deepcopy(body_model).to(device=device, dtype=dtype)
    prior_dev = copy.deepcopy(prior).to(device=device, dtype=dtype)
    offset = gmm_nll_offset(prior_dev)
    tracks = make_tracks(body_model, "all", num_tracks, num_frames, seed=7)
    problems = [t.problem for t in tracks]
    warmup_problem = make_track(body_model, "walking", 8, seed=1).problem
    is_cuda = torch.device(device).type == "cuda"

    result = {
        "device": device,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}" + (f", {torch.cuda.get_device_name()}" if is_cuda else ""),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "dtype": args.dtype,
        "config": "production BAConfig()" if not lowered else f"lowered per stage: {', '.join(lowered)}",
        "tracks": num_tracks,
        "frames_per_track": num_frames,
        "default_solver": default_solver,
        "peak_mem": "torch.cuda.max_memory_allocated per solver run" if is_cuda
        else "peak resident set of the whole process so far (cumulative over the solvers run before)",
    }

    fits_by_solver, figures = {}, {}
    for solver in solvers:
        fits, fig = run_solver(problems, body_dev, prior_dev, configs[solver], warmup_problem, device)
        fits_by_solver[solver], figures[solver] = fits, fig
        print(f"{fig['label']} ({solver}): {num_tracks} tracks x {num_frames} frames in {fig['seconds']:.1f} s = "
              f"{fig['frames_per_s']:.1f} frames/s; iterations {fig['iterations']} (cap {fig['iteration_cap']}, "
              f"{fig['tracks_at_cap']} tracks stopped at it), evaluations {fig['evaluations']}, "
              f"statuses {fig['statuses']}", flush=True)
    result["solvers"] = figures
    default = figures.get(default_solver)
    result.update(
        frames_per_s=default["frames_per_s"] if default else None,
        max_iterations=default["max_iterations"] if default else None,
        iteration_cap=default["iteration_cap"] if default else None,
        tracks_at_cap=default["tracks_at_cap"] if default else None,
        max_iterations_by_solver={s: f["max_iterations"] for s, f in figures.items()},
        peak_mem_mb=max(f["peak_mem_mb"] for f in figures.values()),
    )
    if "lm" in figures and "batched" in figures:
        lm_e = np.array([f.energies["total"] for f in fits_by_solver["lm"]])
        lbfgs_e = np.array([f.energies["total"] for f in fits_by_solver["batched"]])
        ratio = lm_e / lbfgs_e
        result["speedup_vs_lbfgs"] = figures["lm"]["frames_per_s"] / figures["batched"]["frames_per_s"]
        result["energy_ratio_lm_vs_lbfgs"] = {
            "per_track": ratio.round(5).tolist(),
            "max": float(ratio.max()),
            "tracks_over_0.5pct": int((ratio > 1.005).sum()),
            "total": float(lm_e.sum() / lbfgs_e.sum()),
        }
        print(f"LM vs L-BFGS: {result['speedup_vs_lbfgs']:.2f}x frames/s; energy ratio per track "
              f"{result['energy_ratio_lm_vs_lbfgs']['per_track']} (max {ratio.max():.4f}, "
              f"{result['energy_ratio_lm_vs_lbfgs']['tracks_over_0.5pct']} tracks > +0.5 %)", flush=True)
    else:
        result.update(speedup_vs_lbfgs=None, energy_ratio_lm_vs_lbfgs=None)

    n_base = min(num_tracks, 1 if args.baseline_tracks is None else args.baseline_tracks)
    result.update(speedup=None, energy_ratio=None)
    if n_base:
        # torch.optim.LBFGS with the L-BFGS budgets (config.max_iter, max_eval) whatever the solvers timed
        smpl_model = SmplxFullForward(ensure_standin(os.environ.get("VID2MESH_STANDIN_DIR")).neutral, dtype).to(device)
        base_energy, base_iters = [], []
        base_s = 0.0
        for problem in problems[:n_base]:
            # the objective bundle_adjust minimises: relative units, skipped frames off (the
            # synthetic tracks have no identity switch, so bundle_adjust does not split them)
            solved = in_solver_units(problem, config)
            (x, iters), seconds = _timed(
                lambda: naive_reference(solved, smpl_model, prior_dev, config, offset, device), device)
            base_s += seconds
            base_iters.append(iters)
            base_energy.append(total_energy(solved, x, body_dev, prior_dev, config, offset, device))
            print(f"  naive track {problem.clip_id}: {seconds:.1f} s, {iters} iterations, E {base_energy[-1]:.1f}",
                  flush=True)
        base_frames = sum(p.num_frames for p in problems[:n_base])
        baseline_frames_per_s = base_frames / base_s
        result.update(baseline_tracks=n_base, baseline_seconds=round(base_s, 2),
                      baseline_frames_per_s=baseline_frames_per_s, baseline_iterations=base_iters,
                      baseline_energy=[round(e, 3) for e in base_energy])
        for solver, fig in figures.items():
            ours = np.array([f.energies["total"] for f in fits_by_solver[solver][:n_base]])
            fig["speedup_vs_naive"] = fig["frames_per_s"] / baseline_frames_per_s
            fig["energy_ratio_vs_naive"] = float(ours.sum() / np.sum(base_energy))
            fig["energy_ratio_vs_naive_per_track"] = (ours / np.array(base_energy)).round(4).tolist()
            print(f"naive: {baseline_frames_per_s:.2f} frames/s; {fig['label']} speedup "
                  f"{fig['speedup_vs_naive']:.1f}x, energy ratio {fig['energy_ratio_vs_naive']:.4f} per track {fig['energy_ratio_vs_naive_per_track']}",
                  flush=True)
        if default:
            result.update(speedup=default["speedup_vs_naive"], energy_ratio=default["energy_ratio_vs_naive"],
                          energy_ratio_per_track=default["energy_ratio_vs_naive_per_track"])

    if not args.skip_scaling:
        lengths = (25, 100) if args.quick else (250, 1000)
        long_len = 120 if args.quick else 1175
        for solver in solvers:
            figures[solver]["scaling"] = scaling(body_model, body_dev, prior_dev, configs[solver], lengths, long_len,
                                                 device)
        result["scaling_lengths"] = list(lengths)
        result["t1000_over_t250"] = {s: figures[s]["scaling"]["ratio"] for s in solvers}
        result["long_track"] = {s: figures[s]["scaling"]["long_track"] for s in solvers}
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
