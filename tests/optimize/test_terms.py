"""optimize.terms: a term written in one place serves both the energy and LM's linearisation."""

from __future__ import annotations

import copy

import pytest
import torch

import optimize.energy
import optimize.lm
from pipeline.synth.tracks import make_track
from optimize.bundle_adjust import TAIL_PAD_FRAMES, TRANSLATION_UNIT, PackedTracks, make_objective
from optimize.config import BAConfig
from optimize.energy import energy_terms, gmm_nll_offset
from optimize.lm import LMProblem
from optimize.losses import huber, squared_norm
from optimize.terms import TERM_NAMES, TERMS, RowInputs, Term, TermInputs, slope


class _JointsNearTheHips(Term):
    """A toy unary term on the joints' rows: ``3 sum_i rho(X_i)`` per real frame."""

    name, quantity = "toy", "joints"
    weight, delta = 3.0, 0.1

    def enabled(self, config) -> bool:
        return True

    def value(self, inputs: TermInputs) -> torch.Tensor:
        per_frame = huber(squared_norm(inputs.joints3d), self.delta).sum(-1)
        return torch.where(inputs.batch.frame_mask, self.weight * per_frame, torch.zeros_like(per_frame))

    def linearize(self, inputs: TermInputs, rows: RowInputs) -> None:
        b, T = inputs.joints3d.shape[:2]
        rho = slope(lambda s: huber(s, self.delta), squared_norm(inputs.joints3d))
        weight = rows.rows(torch.where(inputs.batch.frame_mask[..., None], 2.0 * self.weight * rho,
                                       torch.zeros_like(rho)), 3)
        rows.normal.weighted_residual[:, :, rows.joint_rows] += weight * inputs.joints3d.reshape(b, T, 72)
        rows.normal.curvature[:, :, rows.joint_rows] += weight


@pytest.fixture(scope="module")
def models64(body_model, standin):
    from models.gmm_prior import GMMPrior

    return copy.deepcopy(body_model).to(torch.float64), GMMPrior.from_file(standin.gmm).to(torch.float64)


def test_every_term_is_listed_once_with_its_name():
    assert TERM_NAMES == ("reprojection", "temporal_3d", "temporal_2d", "temporal_camera", "gmm", "init", "shape")
    assert len({type(term) for term in TERMS}) == len(TERMS)


def test_a_term_added_in_one_place_enters_the_energy_and_the_exact_gradient(body_model, models64, monkeypatch):
    """One class appended to TERMS: energy_terms reports and sums it, and LM's gradient is
    still autograd's gradient of E (the toy term's rows share the joints' Jacobian rows)."""
    body, prior = models64
    toy = _JointsNearTheHips()
    monkeypatch.setattr(optimize.energy, "TERMS", (*TERMS, toy))
    monkeypatch.setattr(optimize.lm, "TERMS", (*TERMS, toy))
    problems = [make_track(body_model, "walking", 5, seed=3).problem, make_track(body_model, "boxing", 4, seed=4).problem]
    config = BAConfig(dtype="float64")
    packed = PackedTracks(problems, body, "cpu", torch.float64, config.keypoint_init_scale, pad_frames=TAIL_PAD_FRAMES,
                          temporal_reference_fps=config.temporal_reference_fps)
    offset = gmm_nll_offset(prior)
    index = torch.arange(2)
    x = packed.x0 + 0.02 * torch.randn(packed.x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pose, betas, camera = packed.decode(x)
    terms = energy_terms(pose, betas, camera, packed.batch, body, prior, config, offset)
    assert float(terms.terms["toy"].sum()) > 0
    objective = make_objective(packed, body, prior, config, offset)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(objective(xr, index).sum(), xr)
    expected = expected * packed.batch.num_frames[:, None].double()  # the objective is E / T
    lin = LMProblem(packed, body, prior, config, offset, TRANSLATION_UNIT).linearize(x, index)
    got = torch.cat((lin.gradient_betas, lin.gradient.reshape(2, -1)), -1)
    assert torch.allclose(lin.energy, objective(x, index) * packed.batch.num_frames.double(), rtol=1e-12)
    assert ((got - expected).norm(dim=-1) / expected.norm(dim=-1)).max() < 1e-6
