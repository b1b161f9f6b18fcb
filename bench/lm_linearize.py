"""One Levenberg-Marquardt linearisation (``optimize.lm.LMProblem.linearize``) on the CPU.

Times ``linearize`` (energy, gradient and Gauss-Newton blocks) and ``BodyModel.jacobians``
on synthetic walking tracks (``pipeline.synth.tracks``), median of ``--repeat`` runs.
With ``--against REV`` it also loads ``optimize/lm.py``, ``optimize/energy.py`` and
``models/body_model.py`` as they were at the git revision REV, times them interleaved with
the current code (so both see the same machine load) and compares the 7 fields of the two
linearisations (at x0 and at a perturbed x0, and with terms switched off or the Huber
reprojection loss): max |new - old| / max |old| per field.

    python -m bench.lm_linearize [--tracks 8] [--frames 250] [--repeat 7] [--against 3b0f7c9]

The last output line is a JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

FIELDS = ("energy", "gradient", "gradient_betas", "diagonal", "lower", "border", "corner")


def _module_at(revision: str, path: str, name: str, replacing: dict | None = None):
    """The module ``path`` as it was at git ``revision`` (imports resolve to the current tree,
    except the modules ``replacing`` maps by name, e.g. ``{"optimize.energy": old_energy}``)."""
    source = subprocess.run(["git", "show", f"{revision}:{path}"], check=True, capture_output=True, text=True).stdout
    folder = tempfile.mkdtemp(prefix="lm_linearize_")
    file = os.path.join(folder, f"{name}.py")
    with open(file, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    replacing = replacing or {}
    saved = {key: sys.modules.get(key) for key in replacing}
    sys.modules.update(replacing)
    try:
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--against", default=None, help="git revision to compare with (equality and time)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pipeline.synth.tracks import make_track
    from models.body_model import BodyModel
    from models.gmm_prior import GMMPrior
    from models.standin import ensure_standin
    from optimize.bundle_adjust import TRANSLATION_UNIT, PackedTracks
    from optimize.config import BAConfig
    from optimize.energy import gmm_nll_offset
    from optimize.lm import LMProblem

    standin = ensure_standin()
    body = BodyModel.from_file(standin.neutral)
    prior = GMMPrior.from_file(standin.gmm)
    problems = [make_track(body, "walking", args.frames, seed=10 + i).problem for i in range(args.tracks)]
    config = BAConfig()
    packed = PackedTracks(problems, body, "cpu", torch.float32, config.keypoint_init_scale, pad_frames=4,
                          temporal_reference_fps=config.temporal_reference_fps)
    offset = gmm_nll_offset(prior)
    index = torch.arange(args.tracks)
    x0 = packed.x0
    generator = torch.Generator().manual_seed(0)
    x1 = x0 + 0.05 * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    problem = LMProblem(packed, body, prior, config, offset, TRANSLATION_UNIT)
    T = packed.batch.frame_mask.shape[1]
    n = args.tracks * T
    pose = 0.1 + torch.zeros(n, 72)
    betas = torch.zeros(n, 10)

    result: dict = {"tracks": args.tracks, "frames": T, "threads": args.threads, "repeat": args.repeat,
                    "load_average": os.getloadavg()[0]}
    with torch.no_grad():
        problem.linearize(x0, index)  # warm-up
        body.jacobians(pose, betas)
        if args.against:
            old_body_module = _module_at(args.against, "models/body_model.py", "_old_body_model")
            # the revision's linearisation with the revision's energy (the terms' home moved)
            old_energy = _module_at(args.against, "optimize/energy.py", "_old_energy")
            old_lm = _module_at(args.against, "optimize/lm.py", "_old_lm", {"optimize.energy": old_energy})
            old_body = old_body_module.BodyModel.from_file(standin.neutral)
            old_problem = old_lm.LMProblem(packed, old_body, prior, config, offset, TRANSLATION_UNIT)
            old_problem.linearize(x0, index)
            # the default stage at x0 and at a perturbed x0, then term switches and losses
            variants = [("x0", config, x0), ("perturbed", config, x1)] + [
                (name, dataclasses.replace(config, **change), x1) for name, change in (
                    ("huber", {"reprojection_loss": "huber"}), ("no_temporal", {"use_temporal": False}),
                    ("no_prior", {"use_prior": False}), ("no_reprojection", {"use_reprojection": False}),
                    ("temporal_only", {"use_reprojection": False, "use_prior": False}),
                    ("no_terms", {"use_reprojection": False, "use_prior": False, "use_temporal": False}))]
            differences = {}
            for name, variant, x in variants:
                new = LMProblem(packed, body, prior, variant, offset, TRANSLATION_UNIT).linearize(x, index)
                old = old_lm.LMProblem(packed, old_body, prior, variant, offset, TRANSLATION_UNIT).linearize(x, index)
                differences[name] = {
                    field: float((getattr(new, field) - getattr(old, field)).abs().max()
                                 / getattr(old, field).abs().max().clamp(min=1e-30))
                    for field in FIELDS
                }
            result["max_relative_difference"] = differences
            result["max_relative_difference_overall"] = max(max(d.values()) for d in differences.values())
            # interleaved, so that both see the same load
            new_ms, old_ms, new_jac, old_jac = [], [], [], []
            for _ in range(args.repeat):
                new_ms.append(_median_ms(lambda: problem.linearize(x0, index), 1))
                old_ms.append(_median_ms(lambda: old_problem.linearize(x0, index), 1))
                new_jac.append(_median_ms(lambda: body.jacobians(pose, betas), 1))
                old_jac.append(_median_ms(lambda: old_body.jacobians(pose, betas), 1))
            median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
            result.update(linearize_ms=median(new_ms), linearize_ms_old=median(old_ms),
                          jacobians_ms=median(new_jac), jacobians_ms_old=median(old_jac))
        else:
            result["linearize_ms"] = _median_ms(lambda: problem.linearize(x0, index), args.repeat)
            result["jacobians_ms"] = _median_ms(lambda: body.jacobians(pose, betas), args.repeat)
    result["load_average_after"] = os.getloadavg()[0]
    for key, value in result.items():
        print(f"{key}: {value}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
