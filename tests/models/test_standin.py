"""The generated stand-in body model: SMPL's format, loadable by smplx, human-like."""

from __future__ import annotations

import contextlib
import io
import pickle

import numpy as np
import pytest
import smplx
import torch

from models.joint_names import SMPL24_FLIP_INDEX, SMPL24_INDEX, SMPL24_PARENTS, SMPLX45_EXTRA_VERTEX_IDS
from models.standin import GENDERS, build_standin, ensure_standin, shipped_prior_path, standin_file_name

LICENSED_NAMES = ("smpl_neutral.pkl", "smpl_male.pkl", "smpl_female.pkl", "basicmodel", "gmm_08.pkl")


def _load(path):
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")  # our own file: plain numpy/scipy


def _smplx(path, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a 10-beta warning
        return smplx.SMPL(model_path=str(path), **kwargs)


def test_file_names_are_not_licensed_ones(standin):
    for path in (standin.neutral, standin.male, standin.female, standin.gmm):
        assert path.is_file()
        assert not any(bad in path.name.lower() for bad in LICENSED_NAMES), path.name
    assert standin.neutral.name == standin_file_name("neutral") == "smpl_vid2mesh_standin_neutral.pkl"
    with pytest.raises(ValueError, match="unknown gender"):
        standin_file_name("other")


def test_arrays_have_smpl_layout(standin):
    data = _load(standin.neutral)
    assert data["v_template"].shape == (6890, 3)
    assert data["shapedirs"].shape == (6890, 3, 10)
    assert data["posedirs"].shape == (6890, 3, 207)
    assert data["J_regressor"].shape == (24, 6890) and data["J_regressor"].format == "csc"
    assert data["weights"].shape == (6890, 24)
    assert data["kintree_table"].shape == (2, 24)
    assert data["f"].shape == (13776, 3) and data["f"].max() == 6889
    assert tuple(data["kintree_table"][0, 1:]) == SMPL24_PARENTS[1:]
    # Every joint-regressor row is a convex combination of vertices.
    regressor = data["J_regressor"].toarray()
    assert np.all(regressor >= 0) and np.allclose(regressor.sum(1), 1.0, atol=1e-6)


def test_surface_is_closed_except_hidden_faces(standin):
    faces = _load(standin.neutral)["f"].astype(np.int64)
    assert len(faces) == 2 * 6890 - 4
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = directed[:, 0] * 6890 + directed[:, 1]
    reverse = directed[:, 1] * 6890 + directed[:, 0]
    assert len(np.unique(keys)) == len(keys)  # consistently oriented, no duplicate edge
    unmatched = ~np.isin(reverse, keys)
    open_faces = np.unique(np.flatnonzero(unmatched) % len(faces))
    # Only the 28 hidden diaphragm faces do not belong to a closed two-manifold tube.
    assert len(open_faces) == 28
    assert len(np.unique(faces)) == 6890  # every vertex is used


def test_loads_through_smplx(standin, tmp_path):
    model = _smplx(standin.neutral)
    out = model()
    assert out.vertices.shape == (1, 6890, 3)
    assert out.joints.shape == (1, 45, 3)
    # smplx.create reads the model type from the file name's first word, as it does for
    # the official SMPL_NEUTRAL.pkl: the stand-in's name starts with smpl_ for that reason.
    with contextlib.redirect_stdout(io.StringIO()):
        created = smplx.create(str(standin.neutral), gender="neutral")
    assert isinstance(created, smplx.SMPL)
    assert torch.equal(created().vertices, out.vertices)
    for gender in ("male", "female"):
        assert _smplx(standin.model(gender), gender=gender)().vertices.shape == (1, 6890, 3)


def test_skeleton_is_plausible(standin):
    model = _smplx(standin.neutral)
    out = model()
    verts = out.vertices[0].detach().numpy()
    joints = out.joints[0, :24].detach().numpy()
    j = {name: joints[i] for name, i in SMPL24_INDEX.items()}
    height = verts[:, 1].max() - verts[:, 1].min()
    assert 1.65 < height < 1.75
    # Up is +y: a vertical chain from the ankles to the head.
    order = ["left_ankle", "left_knee", "left_hip", "pelvis", "spine1", "spine2", "spine3", "neck", "head"]
    heights = [j[n][1] for n in order]
    assert heights == sorted(heights)
    # The body's left is +x (SMPL convention); arms reach out sideways in the rest pose.
    for name in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist", "collar"):
        assert j[f"left_{name}"][0] > 0.04 > -0.04 > j[f"right_{name}"][0]
    assert j["left_wrist"][0] - j["left_shoulder"][0] > 0.4
    assert j["left_foot"][2] > j["left_ankle"][2]  # toes point forward (+z)
    # Left/right mirror symmetry of joints and vertices.
    mirrored = joints[list(SMPL24_FLIP_INDEX)] * np.array([-1.0, 1.0, 1.0])
    assert np.abs(mirrored - joints).max() < 1e-6
    sym = _load(standin.neutral)["vert_sym_idxs"]
    assert np.abs(verts[sym] * np.array([-1.0, 1.0, 1.0]) - verts).max() < 1e-6
    # Bone lengths in human ranges (metres).
    assert 0.3 < np.linalg.norm(j["left_knee"] - j["left_hip"]) < 0.5
    assert 0.3 < np.linalg.norm(j["left_ankle"] - j["left_knee"]) < 0.5
    assert 0.2 < np.linalg.norm(j["left_elbow"] - j["left_shoulder"]) < 0.35
    assert 0.2 < np.linalg.norm(j["left_wrist"] - j["left_elbow"]) < 0.3


def test_face_and_extremity_vertices(standin):
    out = _smplx(standin.neutral)()
    v = out.vertices[0].detach().numpy()
    joints = out.joints[0].detach().numpy()
    ids = SMPLX45_EXTRA_VERTEX_IDS
    nose, leye, reye, lear, rear = (v[ids[n]] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))
    head = joints[SMPL24_INDEX["head"]]
    assert nose[2] == v[v[:, 1] > head[1] - 0.05][:, 2].max()  # the nose tip is the front-most point
    assert abs(nose[0]) < 1e-6 and leye[1] > nose[1] and reye[1] > nose[1]
    assert leye[0] > 0.015 and reye[0] < -0.015 and leye[2] > lear[2]
    assert lear[0] > leye[0] and rear[0] < reye[0]
    assert all(p[1] > head[1] for p in (nose, leye, reye, lear, rear))
    # smplx's 45 joints: the extra vertices sit on the feet and hands.
    assert np.allclose(joints[24:29], v[[ids[n] for n in list(ids)[:5]]])
    assert v[ids["left_heel"]][2] < v[ids["left_big_toe"]][2]
    assert v[ids["left_big_toe"]][1] < -1.0 and v[ids["left_middle_tip"]][0] > 0.8


def test_shape_components_change_the_body_plausibly(standin):
    model = _smplx(standin.neutral, batch_size=21)
    betas = torch.zeros(21, 10)
    for k in range(10):
        betas[1 + 2 * k, k] = 2.0
        betas[2 + 2 * k, k] = -2.0
    out = model(betas=betas)
    verts = out.vertices.detach().numpy()
    joints = out.joints[:, :24].detach().numpy()
    height = verts[:, :, 1].max(1) - verts[:, :, 1].min(1)
    width = verts[:, :, 0].max(1) - verts[:, :, 0].min(1)
    waist = np.abs(verts[:, (np.abs(verts[0, :, 1] + 0.05) < 0.02) & (np.abs(verts[0, :, 0]) < 0.2), 2]).max(1)
    leg = joints[:, SMPL24_INDEX["left_hip"], 1] - joints[:, SMPL24_INDEX["left_ankle"], 1]
    assert height[1] - height[2] > 0.2  # beta 0: stature, 4 cm or more per unit
    assert waist[3] > waist[0] > waist[4]  # beta 1: girth
    assert leg[5] - leg[6] > 0.05  # beta 2: leg length
    assert width[9] - width[10] > 0.05  # beta 4: arm length
    for k in range(10):
        assert np.abs(verts[1 + 2 * k] - verts[0]).max() > 0.005, f"beta {k} has no effect"
    assert np.all((height > 1.4) & (height < 2.0))


def test_skinning_weights_and_pose_blend_shapes(standin):
    data = _load(standin.neutral)
    weights = data["weights"]
    assert np.all(weights >= 0) and np.allclose(weights.sum(1), 1.0, atol=1e-6)
    assert np.all((weights > 0).sum(1) <= 8)  # sparse like SMPL's
    # Every joint moves some vertices; neighbouring vertices have similar weights.
    assert np.all(weights.max(0) > 0.3)
    faces = data["f"].astype(np.int64)
    tri_w = weights[faces]
    assert np.percentile(np.abs(tri_w[:, 0] - tri_w[:, 1]).sum(-1), 99) < 0.5
    posedirs = data["posedirs"].reshape(6890, 3, 23, 9)
    assert np.all(np.abs(posedirs).max(axis=(0, 1, 3)) > 1e-3)  # every joint has a blend shape
    assert np.abs(posedirs).max() < 0.05


def test_posing_moves_the_right_parts(standin):
    model = _smplx(standin.neutral)
    body_pose = torch.zeros(1, 69)
    elbow = SMPL24_INDEX["left_elbow"]
    body_pose[0, 3 * (elbow - 1) + 1] = -1.5  # flex the left elbow
    rest = model().joints[0].detach()
    bent = model(body_pose=body_pose).joints[0].detach()
    moved = (bent[:24] - rest[:24]).norm(dim=-1)
    assert moved[SMPL24_INDEX["left_wrist"]] > 0.2
    assert bent[SMPL24_INDEX["left_wrist"], 2] > rest[SMPL24_INDEX["left_wrist"], 2] + 0.2  # forward
    assert moved[SMPL24_INDEX["right_wrist"]] < 1e-6 and moved[SMPL24_INDEX["head"]] < 1e-6


def test_genders_differ_and_generation_is_deterministic(standin):
    neutral, male, female = (_load(standin.model(g)) for g in GENDERS)
    heights = {
        g: d["v_template"][:, 1].max() - d["v_template"][:, 1].min()
        for g, d in zip(GENDERS, (neutral, male, female), strict=True)
    }
    assert heights["male"] > heights["neutral"] > heights["female"]
    assert np.array_equal(male["f"], female["f"])
    again = build_standin("female")
    for key in ("v_template", "shapedirs", "posedirs", "weights", "f"):
        assert np.array_equal(again[key], female[key]), key
    with pytest.raises(ValueError, match="unknown gender"):
        build_standin("robot")


def test_ensure_standin_is_cached(standin):
    before = {p: p.stat().st_mtime_ns for p in (standin.neutral, standin.gmm)}
    again = ensure_standin(standin.directory)
    assert again == standin
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert standin.gmm.read_bytes() == shipped_prior_path().read_bytes()
