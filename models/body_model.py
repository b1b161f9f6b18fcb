"""SMPL body model with a fast joints path (the loss needs joints, not the mesh).

:class:`BodyModel` loads a model file through ``smplx`` (the official SMPL file, a ``.npz``
from ``vid2mesh convert-smpl`` or the generated stand-in; pickles are read with the
restricted unpickler of :mod:`models.smpl_io`, never with plain ``pickle``) and keeps only
buffers, no parameters: the optimiser owns the pose and shape tensors.

Fast path (:meth:`BodyModel.joints`, :meth:`BodyModel.keypoints`,
:meth:`BodyModel.joints_and_keypoints`):

* rest joints are linear in the shape, ``J(beta) = J_regressor @ v_template +
  (J_regressor @ shapedirs) beta``, with both products precomputed;
* posed joints come from forward kinematics of those rest joints (one batched step per
  level of the kinematic tree);
* the 5 COCO face keypoints (and the support of an optional extra regressor) are skinned
  vertex by vertex, pose blend shapes included, so only those few vertices are computed.

Everything follows smplx's ``lbs`` step by step (smplx's Rodrigues formula included), so
the result equals smplx's output to float rounding: the tests and ``bench/body_model.py``
check <= 1e-5 m in float32 and <= 1e-9 m in float64. Like smplx, the model arrays are
rounded to float32 when loaded, whatever ``dtype`` the model computes in.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from smplx.lbs import lbs
from torch import Tensor, nn

from models.geometry import skew
from models.joint_names import (
    COCO17_BODY_SMPL24_IDS,
    COCO17_FACE_VERTEX_IDS,
    COCO17_INDEX,
    SMPL24_PARENTS,
    SMPL_NUM_VERTICES,
)
from models.smpl_io import (
    GENDERS,
    ModelFileError,
    gender_from_file_name,
    load_smpl_arrays,
    resolve_model_path,
    smplx_data_struct,
)

logger = logging.getLogger(__name__)

NUM_POSE = 72
NUM_BETAS = 10


def _tree_levels(parents: tuple[int, ...]) -> list[list[int]]:
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


def smplx_rodrigues(axis_angle: Tensor) -> Tensor:
    """smplx's ``batch_rodrigues`` over any batch shape, operation for operation.

    smplx perturbs the angle (``norm(r + 1e-8)``) to avoid a division by zero; using the
    same formula keeps the fast path equal to smplx's output to float rounding (the exact
    Rodrigues map is :func:`models.geometry.axis_angle_to_matrix`; the two differ by
    about 1e-8 rad).

    Args:
        axis_angle: (..., 3) radians.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    angle = torch.norm(axis_angle + 1e-8, dim=-1, keepdim=True)
    direction = axis_angle / angle
    cos = torch.cos(angle)[..., None]
    sin = torch.sin(angle)[..., None]
    k = skew(direction)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin * k + (1 - cos) * (k @ k)


def load_extra_regressor(path: str | os.PathLike) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read an extra joint regressor: ``.npy`` (E, 6890) or ``.npz`` with ``J_regressor``.

    A ``.npz`` may also hold ``names`` (E,) strings; a row named like a COCO-17 keypoint
    (e.g. ``left_hip``) replaces that keypoint in :meth:`BodyModel.keypoints`.

    Returns:
        (regressor (E, 6890) float64, names (E,) -- empty strings when unnamed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such joint-regressor file; check the path")
    names: tuple[str, ...] = ()
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = next((k for k in ("J_regressor", "regressor") if k in data.files), None)
                if key is None:
                    if len(data.files) != 1:
                        raise ModelFileError(
                            f"{path}: expected an array named 'J_regressor' (E, 6890); found "
                            f"{', '.join(data.files)}"
                        )
                    key = data.files[0]
                matrix = np.asarray(data[key], dtype=np.float64)
                if "names" in data.files:
                    names = tuple(str(n) for n in data["names"])
        else:
            matrix = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(
            f"{path}: cannot read the joint regressor without pickles ({exc}); save it with "
            "numpy.save / numpy.savez as a plain (E, 6890) float array"
        ) from exc
    if matrix.ndim != 2 or matrix.shape[1] != SMPL_NUM_VERTICES:
        raise ModelFileError(
            f"{path}: joint regressor has shape {matrix.shape}, expected (E, {SMPL_NUM_VERTICES})"
        )
    if not np.all(np.isfinite(matrix)):
        raise ModelFileError(f"{path}: joint regressor holds NaN or inf")
    if names and len(names) != matrix.shape[0]:
        raise ModelFileError(f"{path}: {len(names)} names for {matrix.shape[0]} regressor rows")
    return matrix, names or ("",) * matrix.shape[0]


def _left_jacobian_so3(axis_angle: Tensor) -> Tensor:
    """Left Jacobian of SO(3), (..., 3) -> (..., 3, 3): d exp([w]_x) = [J_l(w) dw]_x exp([w]_x).

    ``J_l = I + (1 - cos t) / t^2 [w]_x + (t - sin t) / t^3 [w]_x^2``, t = |w| (series near 0).
    """
    angle2 = (axis_angle * axis_angle).sum(-1)[..., None, None]
    small = angle2 < 1e-6
    safe2 = torch.where(small, torch.ones_like(angle2), angle2)
    angle = torch.sqrt(safe2)
    first = torch.where(small, 0.5 - angle2 / 24.0, (1.0 - torch.cos(angle)) / safe2)
    second = torch.where(small, 1.0 / 6.0 - angle2 / 120.0, (angle - torch.sin(angle)) / (safe2 * angle))
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + first * k + second * (k @ k)


def _cross_columns(vector: Tensor, matrix: Tensor) -> Tensor:
    """``[v]_x M``: v x (each column of M). vector (..., 3), matrix (..., 3, C) -> (..., 3, C)."""
    vx, vy, vz = (vector[..., i, None] for i in range(3))
    mx, my, mz = matrix.unbind(-2)
    return torch.stack((vy * mz - vz * my, vz * mx - vx * mz, vx * my - vy * mx), dim=-2)


class _BroadcastRows(torch.autograd.Function):
    """``x.expand(shape)`` whose backward sums the broadcast axes in float64.

    The gradient of a per-track quantity (the shaped rest joints) sums over the track's
    frames; a float32 sum rounds differently with the number of (zero) padded frames,
    which would make a track's fit depend on the longest track of its batch.
    """

    generate_vmap_rule = True  # usable under torch.func (vmap, jacrev): bench.lm_jacobians

    @staticmethod
    def forward(x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return x.expand(shape)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.input_shape = inputs[0].shape
        ctx.output_shape = output.shape

    @staticmethod
    def jvp(ctx, tangent: Tensor, _shape) -> Tensor:
        return tangent.expand(ctx.output_shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        axes = [i for i, (a, b) in enumerate(zip(ctx.input_shape, grad.shape)) if a == 1 and b != 1]
        if not axes:
            return grad, None
        return grad.sum(axes, keepdim=True, dtype=torch.float64).to(grad.dtype), None


class BodyModel(nn.Module):
    """SMPL as a pure function of pose and shape (buffers only, no parameters).

    Use :meth:`from_file`. All methods take any leading batch shape ``...`` (pose and betas
    broadcast against each other) and return metres in SMPL's body frame after the global
    orientation, without translation.

    Attributes:
        gender: "neutral", "male" or "female" (as given or read from the file name).
        source: the model file.
        num_betas: number of shape coefficients (10).
        extra_names: names of the extra-regressor rows (empty strings when unnamed).
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        source: str | os.PathLike = "<arrays>",
        gender: str = "neutral",
        dtype: torch.dtype = torch.float32,
        num_betas: int = NUM_BETAS,
        extra_regressor: np.ndarray | None = None,
        extra_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        import smplx  # heavy import kept local to model construction

        self.gender = gender
        self.source = str(source)
        self.num_betas = num_betas
        if arrays["shapedirs"].shape[-1] < num_betas:
            raise ModelFileError(
                f"{source}: has {arrays['shapedirs'].shape[-1]} shape components, {num_betas} needed"
            )
        # Build smplx's own layer so the buffers are exactly what smplx computes with (it
        # rounds every array to float32). smplx prints a "WARNING" for 10-beta models: muted.
        with contextlib.redirect_stdout(io.StringIO()) as muted:
            layer = smplx.SMPLLayer(
                model_path=self.source,
                data_struct=smplx_data_struct(dict(arrays)),
                num_betas=num_betas,
                gender=gender,
                dtype=torch.float64,
            )
        if muted.getvalue():
            logger.debug("smplx: %s", muted.getvalue().strip())
        v_template = layer.v_template.detach()  # (V, 3)
        shapedirs = layer.shapedirs.detach()  # (V, 3, B)
        posedirs = layer.posedirs.detach()  # (207, V * 3)
        j_regressor = layer.J_regressor.detach()  # (24, V)
        weights = layer.lbs_weights.detach()  # (V, 24)
        if tuple(layer.parents.tolist()[1:]) != SMPL24_PARENTS[1:]:
            raise ModelFileError(f"{source}: kinematic tree differs from SMPL's")

        self.register_buffer("v_template", v_template.to(dtype))
        self.register_buffer("shapedirs", shapedirs.to(dtype))
        self.register_buffer("posedirs", posedirs.to(dtype))
        self.register_buffer("J_regressor", j_regressor.to(dtype))
        self.register_buffer("lbs_weights", weights.to(dtype))
        self.register_buffer("parents", torch.tensor((-1,) + SMPL24_PARENTS[1:], dtype=torch.long))
        self._faces = np.asarray(arrays["f"], dtype=np.int64)

        # Rest joints as a linear function of the shape (precomputed in float64).
        self.register_buffer("joint_template", (j_regressor @ v_template).to(dtype))  # (24, 3)
        self.register_buffer(
            "joint_shapedirs", torch.einsum("jv,vdb->jdb", j_regressor, shapedirs).to(dtype)
        )  # (24, 3, B)

        self._register_sparse_vertices(v_template, shapedirs, posedirs, weights, extra_regressor, extra_names, dtype)
        self._register_keypoint_layout()
        self._register_forward_kinematics(dtype)

    def _register_sparse_vertices(self, v_template: Tensor, shapedirs: Tensor, posedirs: Tensor, weights: Tensor,
                                  extra_regressor: np.ndarray | None, extra_names: tuple[str, ...],
                                  dtype: torch.dtype) -> None:
        """Buffers of the vertices skinned one by one: COCO face keypoints + extra-regressor support."""
        face_ids = np.asarray(COCO17_FACE_VERTEX_IDS, dtype=np.int64)
        if extra_regressor is not None:
            extra = np.asarray(extra_regressor, dtype=np.float64)
            support = np.flatnonzero(np.any(extra != 0.0, axis=0))
        else:
            extra = np.zeros((0, SMPL_NUM_VERTICES))
            support = np.zeros(0, dtype=np.int64)
        sparse_ids = np.unique(np.concatenate([face_ids, support]))
        position = {v: i for i, v in enumerate(sparse_ids.tolist())}
        ids = torch.as_tensor(sparse_ids)
        self.register_buffer("sparse_template", v_template[ids].to(dtype))  # (S, 3)
        self.register_buffer("sparse_shapedirs", shapedirs[ids].to(dtype))  # (S, 3, B)
        cols = (ids[:, None] * 3 + torch.arange(3)[None]).reshape(-1)
        self.register_buffer("sparse_posedirs", posedirs[:, cols].to(dtype))  # (207, S * 3)
        self.register_buffer("sparse_weights", weights[ids].to(dtype))  # (S, 24)
        self.register_buffer(
            "face_slots", torch.tensor([position[v] for v in face_ids.tolist()], dtype=torch.long)
        )
        self.register_buffer(
            "extra_regressor",
            torch.as_tensor(extra[:, sparse_ids]).to(dtype),  # (E, S)
        )
        self.extra_names = tuple(extra_names) or ("",) * extra.shape[0]

    def _register_keypoint_layout(self) -> None:
        """COCO-17 layout buffers: each keypoint is a joint, a face vertex or an extra joint."""
        sources = ["joint"] * 17
        index = [0] * 17
        for k, vid in enumerate(COCO17_FACE_VERTEX_IDS):
            sources[k], index[k] = "face", k
        for k, j in zip(range(5, 17), COCO17_BODY_SMPL24_IDS, strict=True):
            sources[k], index[k] = "joint", j
        for e, name in enumerate(self.extra_names):
            if name in COCO17_INDEX:
                sources[COCO17_INDEX[name]], index[COCO17_INDEX[name]] = "extra", e
        # Gather order over cat([joints (24), face (5), extra (E)]).
        offsets = {"joint": 0, "face": 24, "extra": 29}
        self.register_buffer(
            "keypoint_gather",
            torch.tensor([offsets[s] + i for s, i in zip(sources, index, strict=True)], dtype=torch.long),
        )
        # For ``jacobians`` (which must not copy all 24 joints' rows): every keypoint's joint
        # row (0 for the others), the face and extra keypoints' slots and rows (sparse
        # vertices, extra-regressor rows).
        joint_rows = [i if s == "joint" else 0 for s, i in zip(sources, index, strict=True)]
        self.register_buffer("keypoint_joint_rows", torch.tensor(joint_rows, dtype=torch.long), persistent=False)
        for kind in ("face", "extra"):
            picked = [(k, i) for k, (s, i) in enumerate(zip(sources, index, strict=True)) if s == kind]
            rows = [int(self.face_slots[i]) if kind == "face" else i for _, i in picked]
            self.register_buffer(f"keypoint_slots_{kind}", torch.tensor([k for k, _ in picked], dtype=torch.long),
                                 persistent=False)
            self.register_buffer(f"keypoint_rows_{kind}", torch.tensor(rows, dtype=torch.long), persistent=False)

    def _register_forward_kinematics(self, dtype: torch.dtype) -> None:
        """Pointer-jumping tables of the forward kinematics."""
        # Forward kinematics by pointer jumping: every joint composes its transform with
        # the one 2^k levels up, so ceil(log2(depth + 1)) batched steps cover the tree.
        # Slot 24 is the identity (the root's "parent").
        parent_or_self = torch.tensor([max(p, 0) for p in SMPL24_PARENTS])
        self.register_buffer("fk_parent", parent_or_self, persistent=False)
        self.register_buffer(
            "fk_has_parent", torch.tensor([0.0] + [1.0] * 23, dtype=dtype)[:, None], persistent=False
        )
        pointer = [24 if p < 0 else p for p in SMPL24_PARENTS] + [24]
        depth = len(_tree_levels(SMPL24_PARENTS))
        self._fk_steps = max(1, math.ceil(math.log2(depth)))
        for k in range(self._fk_steps):
            self.register_buffer(f"fk_pointer_{k}", torch.tensor(pointer), persistent=False)
            pointer = [pointer[p] for p in pointer]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        gender: str | None = None,
        extra_regressor: str | os.PathLike | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        num_betas: int = NUM_BETAS,
    ) -> BodyModel:
        """Load an SMPL model file (``.pkl`` / ``.npz``) or the ``gender`` file of a folder.

        Args:
            path: model file, or folder with ``SMPL_<GENDER>.pkl``-style files.
            gender: "neutral", "male" or "female"; default: read from the file name, else
                neutral.
            extra_regressor: optional (E, 6890) joint regressor file (see
                :func:`load_extra_regressor`).
            dtype: float32 (default) or float64.
            num_betas: shape coefficients used (10).
        """
        model_path = resolve_model_path(path, gender)
        if gender is None:
            gender = gender_from_file_name(model_path) or "neutral"
        if gender not in GENDERS:
            raise ValueError(f"unknown gender {gender!r}; use one of {', '.join(GENDERS)}")
        arrays = load_smpl_arrays(model_path)
        extra, names = (None, ())
        if extra_regressor is not None:
            extra, names = load_extra_regressor(extra_regressor)
        return cls(
            arrays,
            source=model_path,
            gender=gender,
            dtype=dtype,
            num_betas=num_betas,
            extra_regressor=extra,
            extra_names=names,
        )

    # ------------------------------------------------------------------ helpers

    @property
    def faces(self) -> np.ndarray:
        """(13776, 3) int64 triangle vertex indices."""
        return self._faces

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    @property
    def num_extra_joints(self) -> int:
        return int(self.extra_regressor.shape[0])

    def _flatten(self, pose: Tensor, betas: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        if pose.shape[-1:] != (NUM_POSE,):
            raise ValueError(f"pose must have shape (..., {NUM_POSE}) axis-angle, got {tuple(pose.shape)}")
        if betas.shape[-1:] != (self.num_betas,):
            raise ValueError(f"betas must have shape (..., {self.num_betas}), got {tuple(betas.shape)}")
        batch = torch.broadcast_shapes(pose.shape[:-1], betas.shape[:-1])
        pose = pose.to(self.dtype).expand(batch + (NUM_POSE,)).reshape(-1, NUM_POSE)
        betas = betas.to(self.dtype).expand(batch + (self.num_betas,)).reshape(-1, self.num_betas)
        return pose, betas, batch

    def rest_joints(self, betas: Tensor) -> Tensor:
        """Shaped rest-pose joints.

        Args:
            betas: (..., 10).

        Returns:
            (..., 24, 3) metres.
        """
        return self.joint_template + torch.einsum("...b,jdb->...jd", betas.to(self.dtype), self.joint_shapedirs)

    def _forward_kinematics(self, rot: Tensor, rest: Tensor) -> tuple[Tensor, Tensor]:
        """World rotations (N, 24, 3, 3) and posed joints (N, 24, 3).

        Args:
            rot: (N, 24, 3, 3) local joint rotations.
            rest: (N, 24, 3) shaped rest joints, metres.
        """
        n = rot.shape[0]
        # Local transform of each joint: rotate about it, offset from its parent.
        offset = rest - rest[:, self.fk_parent] * self.fk_has_parent
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand(n, 1, 3, 3)
        acc_rot = torch.cat([rot, eye], dim=1)  # (N, 25, 3, 3)
        acc_pos = torch.cat([offset, offset.new_zeros(n, 1, 3)], dim=1)  # (N, 25, 3)
        for k in range(self._fk_steps):
            pointer = getattr(self, f"fk_pointer_{k}")
            up_rot = acc_rot[:, pointer]
            acc_pos = (up_rot @ acc_pos[..., None])[..., 0] + acc_pos[:, pointer]
            acc_rot = up_rot @ acc_rot
        return acc_rot[:, :24], acc_pos[:, :24]

    def _shaped(self, betas: Tensor, batch: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Shaped rest joints (N, 24, 3) and shaped sparse vertices (N, S, 3).

        They depend on the betas only, so they are computed once per distinct betas row:
        axes along which ``betas`` is broadcast (size 1, or expanded with stride 0, e.g.
        one shape per track over its T frames) are computed once and expanded, not per frame.
        """
        compact = betas.to(self.dtype).expand(batch + betas.shape[-1:])
        for axis, stride in enumerate(compact.stride()[:-1]):
            if stride == 0 and compact.shape[axis] > 1:
                compact = compact.narrow(axis, 0, 1)
        # products and sums instead of a GEMM: a GEMM's rounding can change with its number
        # of rows (one track alone vs a batch), an elementwise product and a sum over the 10
        # betas round the same way in every row
        coeffs = compact[..., None, None, :]
        rest = self.joint_template + (coeffs * self.joint_shapedirs).sum(-1)
        shaped = self.sparse_template + (coeffs * self.sparse_shapedirs).sum(-1)
        rest = _BroadcastRows.apply(rest, batch + rest.shape[-2:]).reshape(-1, 24, 3)
        shaped = _BroadcastRows.apply(shaped, batch + shaped.shape[-2:]).reshape(-1, *shaped.shape[-2:])
        return rest, shaped

    def _fast(self, pose: Tensor, betas: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        """Posed joints (N, 24, 3) and sparse vertices (N, S, 3)."""
        given_betas = betas
        pose, betas, batch = self._flatten(pose, betas)
        rest, shaped = self._shaped(given_betas, batch)
        n = pose.shape[0]
        rot = smplx_rodrigues(pose.reshape(n, 24, 3))
        world_rot, world_pos = self._forward_kinematics(rot, rest)

        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rot[:, 1:] - eye).reshape(n, -1)  # (N, 207)
        posed = shaped + (pose_feature @ self.sparse_posedirs).reshape(n, -1, 3)
        # Linear blend skinning with A_j = [R_j | t_j - R_j J_j] (smplx's rel_transforms).
        translation = world_pos - (world_rot @ rest[..., None])[..., 0]  # (N, 24, 3)
        blend_rot = torch.einsum("sj,njab->nsab", self.sparse_weights, world_rot)
        blend_trans = torch.einsum("sj,nja->nsa", self.sparse_weights, translation)
        verts = (blend_rot @ posed[..., None])[..., 0] + blend_trans
        return world_pos, verts, batch

    def _keypoints_from(self, joints: Tensor, sparse: Tensor) -> Tensor:
        parts = [joints, sparse[:, self.face_slots]]
        if self.num_extra_joints:
            parts.append(torch.einsum("es,nsd->ned", self.extra_regressor, sparse))
        return torch.cat(parts, dim=1)[:, self.keypoint_gather]

    # ------------------------------------------------------------------ public API

    def joints(self, pose: Tensor, betas: Tensor) -> Tensor:
        """SMPL-24 joints by forward kinematics (fast path).

        Args:
            pose: (..., 72) axis-angle, radians (first 3 = global orientation).
            betas: (..., 10) shape coefficients.

        Returns:
            (..., 24, 3) metres.
        """
        joints, _, batch = self._fast(pose, betas)
        return joints.reshape(batch + (24, 3))

    def keypoints(self, pose: Tensor, betas: Tensor) -> Tensor:
        """COCO-17 keypoints as seen from SMPL (fast path).

        Body keypoints are SMPL joints (or named extra-regressor joints), face keypoints
        the vertices ``COCO17_FACE_VERTEX_IDS``.

        Args:
            pose: (..., 72) axis-angle, radians.
            betas: (..., 10).

        Returns:
            (..., 17, 3) metres.
        """
        return self.joints_and_keypoints(pose, betas)[1]

    def joints_and_keypoints(self, pose: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """Both outputs of the fast path from one evaluation.

        Returns:
            ((..., 24, 3), (..., 17, 3)) metres.
        """
        joints, sparse, batch = self._fast(pose, betas)
        keypoints = self._keypoints_from(joints, sparse)
        return joints.reshape(batch + (24, 3)), keypoints.reshape(batch + (17, 3))

    def jacobians(self, pose: Tensor, betas: Tensor, *, joints_pose_out: Tensor | None = None) -> dict[str, Tensor]:
        """Joints, keypoints and their analytic Jacobians w.r.t. pose and betas (for
        Gauss-Newton; no autograd).

        A point X carried by joint a's subtree moves with a's local rotation as
        ``dX / d theta_a = -[X - p_a]_x W_parent(a) J_l(theta_a)`` (J_l: the left Jacobian
        of SO(3), p_a: a's posed position); rest joints are linear in the betas. Face
        vertices add their skinning weights and pose blend shapes. Exact for the exact
        Rodrigues map; smplx's (used by the forward pass) perturbs the angle by 1e-8 rad,
        so the two differ by about 1e-8 relative.

        Args:
            pose: (N, 72) axis-angle, radians.
            betas: (N, 10).
            joints_pose_out: optional (N, 24, 3, 72) tensor of the model's dtype to write
                ``joints_pose`` into (and return), e.g. rows of a larger Jacobian; its last
                axis must be contiguous and its axes 1 and 2 mergeable (a view of (N, 72, 72)).

        Returns:
            {"joints": (N, 24, 3), "keypoints": (N, 17, 3), "joints_pose": (N, 24, 3, 72),
            "joints_betas": (N, 24, 3, 10), "keypoints_pose": (N, 17, 3, 72),
            "keypoints_betas": (N, 17, 3, 10)}, metres (per radian, per unit beta).
        """
        pose, betas, _ = self._flatten(pose, betas)
        n = pose.shape[0]
        theta = pose.reshape(n, 24, 3)
        rot = smplx_rodrigues(theta)
        rest = self.joint_template + torch.einsum("nb,jdb->njd", betas, self.joint_shapedirs)
        world_rot, world_pos = self._forward_kinematics(rot, rest)
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        parent_rot = torch.where(self.fk_has_parent[None, :, :, None] > 0, world_rot[:, self.fk_parent], eye)
        left = _left_jacobian_so3(theta)  # (N, 24, 3, 3)
        gain = parent_rot @ left  # (N, 24, 3, 3): W_parent(a) J_l(theta_a)
        ancestors = self._ancestor_matrix.to(pose.dtype)  # (24 j, 24 a): a is j or above it

        def rigid(points: Tensor, weights: Tensor) -> Tensor:
            """d points / d pose for points (N, P, 24, 3) carried by each joint j with weights (P, 24)."""
            carried = torch.einsum("pj,ja,npjd->npad", weights, ancestors, points)
            mass = weights @ ancestors  # (P, 24)
            lever = carried - mass[None, :, :, None] * world_pos[:, None]  # (N, P, 24 a, 3)
            blocks = _cross_columns(-lever, gain[:, None])  # (N, P, 24, 3, 3): -[lever]_x G_a
            return blocks.permute(0, 1, 3, 2, 4).reshape(n, points.shape[1], 3, 72)

        # joints: dp_j / d theta_a = [p_a - p_j]_x G_a for a strictly above j, i.e.
        # [p_a]_x G_a + [g]_x p_j for each column g of G_a: with the rows [p_j, 1] (x the
        # 3 x 3 identity, for the 3 coordinates d) one product (N, 72, 12) @ (N, 12, 72) for
        # every (joint, column) pair, written where the caller wants it
        own = _cross_columns(world_pos, gain).permute(0, 2, 1, 3).reshape(n, 1, 3, 72)  # [p_a]_x G_a: (d, (a, k))
        turn = skew(gain.transpose(-1, -2)).permute(0, 4, 3, 1, 2).reshape(n, 3, 3, 72)  # [g_ak]_x: (e, d, (a, k))
        rows = torch.cat((world_pos, world_pos.new_ones(n, 24, 1)), -1)  # (N, 24, 4 e)
        eye_rows = rows[:, :, None, :, None] * eye[:, None, :]  # (N, 24 j, 3 d, 4 e, 3 d')
        columns = torch.cat((turn, own), 1).view(n, 12, 72)  # ((e, d'), (a, k))
        # a strictly above j (a joint's own rotation does not move it: exactly 0 there)
        above = (ancestors - torch.eye(24, dtype=ancestors.dtype, device=ancestors.device)).repeat_interleave(3, dim=1)
        if joints_pose_out is None:
            joints_pose_out = pose.new_empty(n, 24, 3, 72)
        joints_pose = joints_pose_out
        torch.bmm(eye_rows.reshape(n, 72, 12), columns, out=joints_pose.view(n, 72, 72))
        joints_pose *= above[None, :, None, :]
        # the keypoints that are joints: the same product for their rows only
        keypoint_rows = self.keypoint_joint_rows
        keypoints_pose = torch.bmm(eye_rows[:, keypoint_rows].reshape(n, 51, 12), columns).view(n, 17, 3, 72)
        keypoints_pose *= above[keypoint_rows][None, :, None, :]
        # rest joints: p_j = sum over a above or at j of W_parent(a) (S_a - S_parent(a)) beta + ...
        shape_step = self.joint_shapedirs - self.joint_shapedirs[self.fk_parent] * self.fk_has_parent[..., None]
        steps = torch.einsum("naef,afb->naeb", parent_rot, shape_step)  # (N, 24, 3, 10)
        joints_betas = torch.einsum("ja,nadb->njdb", ancestors, steps)

        # sparse vertices: v = sum_j w_vj (W_j (posed_v - rest_j) + p_j)
        pose_feature = (rot[:, 1:] - eye).reshape(n, -1)
        shaped = self.sparse_template + torch.einsum("nb,sdb->nsd", betas, self.sparse_shapedirs)
        posed = shaped + (pose_feature @ self.sparse_posedirs).reshape(n, -1, 3)
        carried = (world_rot[:, None] @ (posed[:, :, None] - rest[:, None])[..., None])[..., 0] + world_pos[:, None]
        verts = torch.einsum("sj,nsjd->nsd", self.sparse_weights, carried)
        verts_pose = rigid(carried, self.sparse_weights)
        blend_rot = torch.einsum("sj,njab->nsab", self.sparse_weights, world_rot)  # (N, S, 3, 3)
        # pose blend shapes: d (R_a - I) / d theta_a,k = [J_l e_k]_x R_a, a = 1..23
        d_rot = skew(left[:, 1:].transpose(-1, -2)) @ rot[:, 1:, None]  # (N, 23, 3 k, 3, 3)
        directions = self.sparse_posedirs.reshape(23, 9, -1, 3)  # (23 a, 9 mn, S, 3)
        d_posed = torch.einsum("nakm,amsd->nsdak", d_rot.reshape(n, 23, 3, 9), directions)  # (N, S, 3, 23, 3)
        verts_pose = verts_pose.clone()
        verts_pose[..., 3:] += (blend_rot @ d_posed.reshape(n, -1, 3, 69)).reshape(n, -1, 3, 69)
        verts_betas = (
            blend_rot @ self.sparse_shapedirs
            - torch.einsum("sj,njdb->nsdb", self.sparse_weights,
                           torch.einsum("njef,jfb->njeb", world_rot, self.joint_shapedirs))
            + torch.einsum("sj,njdb->nsdb", self.sparse_weights, joints_betas)
        )
        return {
            "joints": world_pos,
            "keypoints": self._keypoint_rows(world_pos, verts),
            "joints_pose": joints_pose,
            "joints_betas": joints_betas,
            "keypoints_pose": self._keypoint_rows(None, verts_pose, out=keypoints_pose),
            "keypoints_betas": self._keypoint_rows(joints_betas, verts_betas),
        }

    def _keypoint_rows(self, joint_values: Tensor | None, sparse_values: Tensor, out: Tensor | None = None) -> Tensor:
        """The 17 keypoints' rows (N, 17, ...) of the joints' (N, 24, ...) and the sparse
        vertices' (N, S, ...) values (only the rows used are copied); ``out``: the joint
        keypoints' rows already computed (the others are overwritten)."""
        if out is None:
            out = joint_values.index_select(1, self.keypoint_joint_rows)  # (N, 17, ...)
        out[:, self.keypoint_slots_face] = sparse_values[:, self.keypoint_rows_face]
        if self.keypoint_slots_extra.numel():
            extra = torch.einsum("es,ns...->ne...", self.extra_regressor[self.keypoint_rows_extra], sparse_values)
            out[:, self.keypoint_slots_extra] = extra
        return out

    @property
    def _ancestor_matrix(self) -> Tensor:
        """(24, 24) 1 where joint a (column) is joint j (row) or one of its ancestors."""
        matrix = torch.zeros(24, 24, device=self.fk_parent.device)
        for j in range(24):
            a = j
            while True:
                matrix[j, a] = 1.0
                if a == 0:
                    break
                a = SMPL24_PARENTS[a]
        return matrix

    def extra_joints(self, pose: Tensor, betas: Tensor) -> Tensor:
        """Joints of the extra regressor (fast path: only its support vertices are skinned).

        Returns:
            (..., E, 3) metres (E = 0 without an extra regressor).
        """
        _, sparse, batch = self._fast(pose, betas)
        extra = torch.einsum("es,nsd->ned", self.extra_regressor, sparse)
        return extra.reshape(batch + (self.num_extra_joints, 3))

    def vertices(self, pose: Tensor, betas: Tensor) -> Tensor:
        """Full mesh (smplx's linear blend skinning); only when a mesh is needed.

        Args:
            pose: (..., 72) axis-angle, radians.
            betas: (..., 10).

        Returns:
            (..., 6890, 3) metres.
        """
        pose, betas, batch = self._flatten(pose, betas)
        verts, _ = lbs(
            betas,
            pose,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            self.lbs_weights,
        )
        return verts.reshape(batch + (SMPL_NUM_VERTICES, 3))

    def forward(self, pose: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """Same as :meth:`joints_and_keypoints`."""
        return self.joints_and_keypoints(pose, betas)

    def extra_repr(self) -> str:
        return f"gender={self.gender}, source={self.source}, extra_joints={self.num_extra_joints}"
