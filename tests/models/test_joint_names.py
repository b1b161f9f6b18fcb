"""Joint orders are built from names; check them against SMPL and smplx."""

from __future__ import annotations

from models import joint_names as jn


def test_smpl24_tree():
    assert len(jn.SMPL24_NAMES) == 24 == len(set(jn.SMPL24_NAMES))
    assert jn.SMPL24_PARENTS == (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
    assert all(p < j for j, p in enumerate(jn.SMPL24_PARENTS))
    for j, f in enumerate(jn.SMPL24_FLIP_INDEX):
        assert jn.SMPL24_FLIP_INDEX[f] == j
        assert jn.SMPL24_PARENTS[f] == (-1 if j == 0 else jn.SMPL24_FLIP_INDEX[jn.SMPL24_PARENTS[j]])


def test_smplx45_matches_smplx_vertex_joint_selector():
    import torch
    from smplx.vertex_ids import vertex_ids
    from smplx.vertex_joint_selector import VertexJointSelector

    selector = VertexJointSelector(vertex_ids=vertex_ids["smplh"])
    assert len(jn.SMPLX45_NAMES) == 45 == len(set(jn.SMPLX45_NAMES))
    assert selector.extra_joints_idxs.tolist() == list(jn.SMPLX45_EXTRA_VERTEX_IDS.values())
    # smplx's own short names, in its order, map onto ours.
    short = {"nose": "nose", "reye": "right_eye", "leye": "left_eye", "rear": "right_ear", "lear": "left_ear"}
    for theirs, ours in short.items():
        assert vertex_ids["smplh"][theirs] == jn.SMPLX45_EXTRA_VERTEX_IDS[ours]
    assert torch.is_tensor(selector.extra_joints_idxs)


def test_coco17():
    assert jn.COCO17_NAMES[:5] == ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    assert len(jn.COCO17_NAMES) == 17
    assert jn.COCO17_FACE_VERTEX_IDS == (332, 2800, 6260, 583, 4071)
    assert jn.COCO17_FLIP_INDEX == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert len(jn.COCO17_BODY_SMPL24_IDS) == 12
    for coco_name, smpl_index in zip(jn.COCO17_BODY_NAMES, jn.COCO17_BODY_SMPL24_IDS, strict=True):
        assert jn.SMPL24_NAMES[smpl_index] == coco_name  # same anatomical joint
    assert jn.COCO17_BODY_SMPL24_IDS == (16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8)


def test_coco17_skeleton_is_ultralytics():
    ultralytics_one_based = [
        [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
        [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
    ]  # fmt: skip
    assert [list(e) for e in jn.COCO17_SKELETON] == [[a - 1, b - 1] for a, b in ultralytics_one_based]
