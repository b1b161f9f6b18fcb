"""GMM pose prior: SMPLify layout, exact and max-mixture NLL, fitting, the shipped stand-in."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from models.gmm_prior import (
    GMMPrior,
    body_poses_from_array,
    fit_gmm,
    mirror_pose,
    read_pose_corpus,
    sample_standin_poses,
    save_gmm,
)
from models.smpl_io import ModelFileError, UnsafePickleError
from models.standin import shipped_prior_path


def _random_gmm(k=3, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, 69)) * 0.3
    factors = rng.normal(size=(k, 69, 69)) * 0.05
    covars = factors @ np.swapaxes(factors, 1, 2) + 0.01 * np.eye(69)
    weights = rng.random(k) + 0.1
    return means, covars, weights / weights.sum()


def _reference_component_logpdf(x, means, covars, weights):
    return np.stack(
        [np.log(w) + multivariate_normal(m, c).logpdf(x) for m, c, w in zip(means, covars, weights, strict=True)],
        axis=-1,
    )


def test_nll_matches_scipy(tmp_path):
    means, covars, weights = _random_gmm()
    path = save_gmm(tmp_path / "prior.pkl", means, covars, weights)
    prior = GMMPrior.from_file(path, dtype=torch.float64)
    x = np.random.default_rng(1).normal(size=(2, 5, 69)) * 0.3
    comp = _reference_component_logpdf(x, means, covars, weights)
    nll = prior.nll(torch.as_tensor(x))
    assert nll.shape == (2, 5)
    assert np.allclose(nll.numpy(), -logsumexp(comp, axis=-1), rtol=1e-10, atol=1e-8)
    max_mixture = prior.nll_max_mixture(torch.as_tensor(x))
    assert np.allclose(max_mixture.numpy(), -comp.max(-1), rtol=1e-10, atol=1e-8)
    assert torch.all(max_mixture >= nll - 1e-9)
    assert torch.all(max_mixture <= nll + np.log(3) + 1e-9)


def test_loads_smplify_python2_style_pickle(tmp_path):
    means, covars, weights = _random_gmm(8)
    # SMPLify's file: a protocol-2 pickle of a dict of float64 arrays.
    path = tmp_path / "smplify_layout.pkl"
    path.write_bytes(pickle.dumps({"means": means, "covars": covars, "weights": weights}, protocol=2))
    prior = GMMPrior.from_file(path, dtype=torch.float64)
    assert prior.num_components == 8
    assert prior.means.shape == (8, 69) and prior.covars.shape == (8, 69, 69)
    x = torch.zeros(69, dtype=torch.float64, requires_grad=True)
    prior.nll(x).backward()
    assert torch.isfinite(x.grad).all()


def test_bad_prior_files(tmp_path):
    means, covars, weights = _random_gmm()
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"means": means[:, :60], "covars": covars, "weights": weights}, protocol=2))
    with pytest.raises(ModelFileError, match=r"wrong.pkl.*\(K, 69\)"):
        GMMPrior.from_file(wrong)
    missing = tmp_path / "missing_keys.pkl"
    missing.write_bytes(pickle.dumps({"means": means}, protocol=2))
    with pytest.raises(ModelFileError, match="missing_keys.pkl"):
        GMMPrior.from_file(missing)
    not_pd = tmp_path / "not_pd.pkl"
    not_pd.write_bytes(pickle.dumps({"means": means, "covars": -covars, "weights": weights}, protocol=2))
    with pytest.raises(ModelFileError, match="positive definite"):
        GMMPrior.from_file(not_pd)
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        GMMPrior.from_file(tmp_path / "nope.pkl")

    class Foreign:
        def __reduce__(self):
            return (print, ("executed",))

    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"means": Foreign()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="foreign.pkl"):
        GMMPrior.from_file(foreign)
    with pytest.raises(ValueError, match="gmm_08.pkl"):
        save_gmm(tmp_path / "gmm_08.pkl", means, covars, weights)
    prior = GMMPrior(means, covars, weights)
    with pytest.raises(ValueError, match="69"):
        prior.nll(torch.zeros(72))


def test_shipped_standin_prior(standin):
    path = shipped_prior_path()
    assert path.parent.name == "data" and not path.name.endswith("gmm_08.pkl")
    prior = GMMPrior.from_file(standin.gmm)
    assert prior.num_components == 8
    plausible = torch.as_tensor(sample_standin_poses(500, seed=123), dtype=torch.float32)
    wild = torch.randn(500, 69) * 1.5
    assert prior.nll(plausible).median() + 100 < prior.nll(wild).median()
    # A sitting pose is likely; the same pose with the knees bent backwards is not.
    from models.gmm_prior import _ARCHETYPES, _archetype_vector

    sit = torch.as_tensor(_archetype_vector(_ARCHETYPES["sit"])[1:].reshape(69), dtype=torch.float32)
    hyper = sit.clone()
    hyper[[9, 12]] *= -1.0  # x parts of the left / right knee (joints 4 and 5)
    assert prior.nll(sit) + 50 < prior.nll(hyper)


def test_sample_standin_poses_is_deterministic():
    a = sample_standin_poses(64, seed=9)
    b = sample_standin_poses(64, seed=9)
    assert a.shape == (64, 69) and np.array_equal(a, b)
    full = np.concatenate([np.zeros((64, 3)), a], 1).reshape(64, 24, 3)
    assert np.array_equal(mirror_pose(mirror_pose(full)), full)


def test_fit_prior_from_amass_style_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    poses = sample_standin_poses(600, seed=4)
    smplh = np.zeros((300, 156))
    smplh[:, 3:66] = poses[:300, :63]
    np.savez(tmp_path / "seq_smplh.npz", poses=smplh, trans=rng.normal(size=(300, 3)))
    folder = tmp_path / "subject"
    folder.mkdir()
    smpl = np.concatenate([np.zeros((300, 3)), poses[300:]], 1)
    np.savez(folder / "seq_smpl.npz", poses=smpl)
    np.savez(folder / "shape.npz", betas=np.zeros(16))  # AMASS shape files have no poses

    corpus = read_pose_corpus([tmp_path / "seq_smplh.npz", folder])
    assert corpus.shape == (600, 69)
    assert np.allclose(corpus[:300, 63:], 0.0) and np.allclose(corpus[300:], poses[300:])
    assert np.array_equal(body_poses_from_array(smpl), poses[300:])

    from pipeline.commands.models import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "my_prior_k4.pkl"
    args = parser.parse_args(["fit-prior", str(out), str(tmp_path / "seq_smplh.npz"), str(folder), "-k", "4"])
    assert args.func(args) == 0
    prior = GMMPrior.from_file(out, dtype=torch.float64)
    assert prior.num_components == 4
    assert "4 components, 600 poses" in capsys.readouterr().out
    # The fitted prior prefers the training poses to random ones.
    assert prior.nll(torch.as_tensor(corpus)).mean() < prior.nll(torch.randn(600, 69, dtype=torch.float64)).mean()
    assert np.isclose(prior.weights.sum().item(), 1.0) and prior.covars.shape == (4, 69, 69)
    with pytest.raises(ValueError, match="too few"):
        fit_gmm(corpus[:5], 4)

    args = parser.parse_args(["fit-prior", str(tmp_path / "x.pkl"), str(tmp_path / "nothing.npz")])
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        args.func(args)
    args = parser.parse_args(["fit-prior", str(tmp_path / "y.pkl"), "--standin-corpus", "--samples", "400", "-k", "2"])
    assert args.func(args) == 0
