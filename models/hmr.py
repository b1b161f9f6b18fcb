"""HMR regressor (Kanazawa et al. 2018) in the SPIN variant (Kolotouros et al. 2019).

ResNet-50 features (torchvision, built with ``weights=None``) feed an iterative error
feedback regressor that refines SMPL pose (24 joints as 6D rotations), shape (10 betas)
and a crop camera over 3 iterations, starting from the mean parameters.

Checkpoints in SPIN's format load directly: a ``torch.save`` of ``{'model': state_dict,
...}`` (or a bare state dict) read with ``torch.load(weights_only=True)``, plus the mean
parameters file (``pose`` (144,) = 24 x 6D, ``shape`` (10,), ``cam`` (3,)). The state-dict
keys are SPIN's (``conv1``, ``layer1`` .. ``layer4``, ``fc1``, ``fc2``, ``decpose``,
``decshape``, ``deccam``), which are also torchvision's ResNet-50 names.

Crop camera: SPIN's ``(s, tx, ty)`` maps body-frame metres to normalised crop coordinates,
``u = s * (X + tx)``, with ``u`` in [-1, 1] across the crop. :func:`crop_camera_to_image`
turns it into the pipeline's weak-perspective camera in image pixels.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from models.geometry import matrix_to_axis_angle, rotation_6d_to_matrix
from models.load_errors import refusal_detail

logger = logging.getLogger(__name__)

__all__ = [
    "CROP_SIZE",
    "HMR",
    "HMROutput",
    "HMRRegressor",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "crop_camera_to_image",
    "image_camera_to_crop",
    "load_checkpoint",
    "load_mean_params",
    "spin_6d_to_matrix",
]

CROP_SIZE = 224
NUM_JOINTS = 24
NPOSE = NUM_JOINTS * 6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def spin_6d_to_matrix(rotation_6d: Tensor) -> Tensor:
    """SPIN/HMR 6D layout to rotation matrices.

    SPIN reads each 6-vector as a (3, 2) matrix whose columns are the two basis vectors
    (``x.view(-1, 3, 2)``) and stacks the Gram-Schmidt result as *columns*; this is
    :func:`models.geometry.rotation_6d_to_matrix` on the de-interleaved vector, transposed.

    Args:
        rotation_6d: (..., 6) in SPIN's interleaved order.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    columns = torch.cat([rotation_6d[..., 0::2], rotation_6d[..., 1::2]], dim=-1)
    return rotation_6d_to_matrix(columns).transpose(-1, -2)


def matrix_to_spin_6d(matrix: Tensor) -> Tensor:
    """Inverse of :func:`spin_6d_to_matrix`: (..., 3, 3) -> (..., 6) (first two columns, interleaved)."""
    return matrix[..., :, :2].reshape(matrix.shape[:-2] + (6,))


def load_mean_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read SPIN's mean-parameter file.

    Returns:
        {"pose": (144,) float32 (24 x 6D, SPIN layout), "shape": (10,), "cam": (3,)}.

    Raises:
        FileNotFoundError / ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SMPL mean-parameter file {str(path)!r} not found; give the .npz that comes with the HMR checkpoint.")
    try:
        data = np.load(path, allow_pickle=False)
    except PermissionError as exc:
        raise ValueError(f"SMPL mean-parameter file {str(path)!r} cannot be read ({exc}); fix its permissions.") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(
            f"SMPL mean-parameter file {str(path)!r} is not a plain .npz ({type(exc).__name__}: {exc}); "
            "give the smpl_mean_params.npz that comes with the HMR checkpoint."
        ) from exc
    if not hasattr(data, "files"):
        raise ValueError(f"SMPL mean-parameter file {str(path)!r} holds one array, not an .npz with pose, shape and cam.")
    with data:
        expected = {"pose": NPOSE, "shape": 10, "cam": 3}
        out = {}
        for name, size in expected.items():
            try:
                value = data[name] if name in data.files else None
            except ValueError as exc:  # an object (pickled) array: refused, not run
                raise ValueError(f"{path}: entry {name!r} is not a plain numeric array ({exc}).") from exc
            if value is None or value.size != size or value.dtype.kind not in "fiu":
                found = f"{value.shape} {value.dtype}" if value is not None else "missing"
                raise ValueError(f"{path}: entry {name!r} must hold {size} numbers, found {found}.")
            out[name] = value.reshape(size).astype(np.float32)
    return out


def load_checkpoint(path: str | os.PathLike) -> object:
    """``torch.load(weights_only=True)`` of an HMR checkpoint: tensors and plain containers
    only, so a pickle that names any other global (``os.system`` ...) is refused unrun.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, corrupt or unsafe; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HMR checkpoint {str(path)!r} not found; give a local SPIN-format .pt file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise ValueError(f"HMR checkpoint {str(path)!r} cannot be read ({exc}); fix its permissions.") from exc
    except Exception as exc:  # UnpicklingError (unsafe global), RuntimeError (corrupt zip), EOFError, ...
        raise ValueError(
            f"HMR checkpoint {str(path)!r} refused: not a weights-only torch checkpoint ({refusal_detail(exc)}); "
            "nothing in it was run. Give a trusted SPIN-format checkpoint (SPIN's model_checkpoint.pt, or a state "
            "dict saved with torch.save(model.state_dict())); convert other files to that format."
        ) from exc


class HMR(nn.Module):
    """ResNet-50 + iterative error feedback (SPIN's ``hmr.HMR``, same parameter names).

    Args:
        mean_params: the dict of :func:`load_mean_params` (initial pose, shape, camera).
    """

    def __init__(self, mean_params: dict[str, np.ndarray]):
        super().__init__()
        backbone = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            backbone.layer1,
            backbone.layer2,
            backbone.layer3,
            backbone.layer4,
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        features = 512 * 4
        self.fc1 = nn.Linear(features + NPOSE + 13, 1024)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(1024, 1024)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(1024, NPOSE)
        self.decshape = nn.Linear(1024, 10)
        self.deccam = nn.Linear(1024, 3)
        for layer in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
        self.register_buffer("init_pose", torch.as_tensor(mean_params["pose"]).reshape(1, NPOSE).float())
        self.register_buffer("init_shape", torch.as_tensor(mean_params["shape"]).reshape(1, 10).float())
        self.register_buffer("init_cam", torch.as_tensor(mean_params["cam"]).reshape(1, 3).float())

    def forward(self, images: Tensor, iterations: int = 3) -> tuple[Tensor, Tensor, Tensor]:
        """Regress SMPL and crop camera.

        Args:
            images: (B, 3, 224, 224) float, ImageNet-normalised RGB crops.
            iterations: IEF refinement steps (3 in HMR/SPIN).

        Returns:
            rotmat (B, 24, 3, 3), betas (B, 10), crop camera (B, 3) ``(s, tx, ty)``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        batch = images.shape[0]
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = self.avgpool(x).flatten(1)
        pose = self.init_pose.expand(batch, -1)
        shape = self.init_shape.expand(batch, -1)
        cam = self.init_cam.expand(batch, -1)
        for _ in range(iterations):
            h = torch.cat([features, pose, shape, cam], dim=1)
            h = self.drop2(self.fc2(self.drop1(self.fc1(h))))
            pose = self.decpose(h) + pose
            shape = self.decshape(h) + shape
            cam = self.deccam(h) + cam
        rotmat = spin_6d_to_matrix(pose.reshape(batch, NUM_JOINTS, 6))
        return rotmat, shape, cam


def _state_dict_of(checkpoint: object, path: Path) -> dict[str, Tensor]:
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: not an HMR state dict (expected {{'model': state_dict, ...}} or a state dict).")
    return {k.removeprefix("module."): v for k, v in state.items()}


@dataclass(frozen=True)
class HMROutput:
    """Per-crop HMR estimates (numpy, float32).

    Attributes:
        pose: (B, 72) SMPL axis-angle, radians (first 3 = global orientation).
        betas: (B, 10).
        crop_camera: (B, 3) SPIN crop camera ``(s, tx, ty)`` (normalised crop units).
    """

    pose: np.ndarray
    betas: np.ndarray
    crop_camera: np.ndarray


class HMRRegressor:
    """Inference wrapper: uint8 crops in, SMPL estimates out, batched, on a chosen device.

    Args:
        model: an :class:`HMR` (weights loaded).
        device: torch device string.
        batch_size: crops per forward pass.
    """

    def __init__(self, model: HMR, device: str | torch.device = "cpu", batch_size: int = 64):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_files(
        cls,
        checkpoint: str | os.PathLike,
        mean_params: str | os.PathLike,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> "HMRRegressor":
        """Load a SPIN-format checkpoint (``weights_only=True``) and its mean parameters.

        Raises:
            FileNotFoundError: a file is missing.
            ValueError: the checkpoint does not fit the HMR architecture (names the keys).
        """
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"HMR checkpoint {str(path)!r} not found; give a local SPIN-format .pt file.")
        state = _state_dict_of(load_checkpoint(path), path)
        model = HMR(load_mean_params(mean_params))
        result = model.load_state_dict(state, strict=False)
        optional = ("num_batches_tracked", "init_pose", "init_shape", "init_cam")
        missing = [k for k in result.missing_keys if not k.endswith(optional)]
        unexpected = [k for k in result.unexpected_keys if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit the HMR (SPIN) architecture: missing {missing[:5]}, unexpected {unexpected[:5]}."
            )
        logger.info("loaded HMR checkpoint %s", path)
        return cls(model, device, batch_size)

    @torch.no_grad()
    def predict(self, crops: np.ndarray) -> HMROutput:
        """Run HMR on crops.

        Args:
            crops: (B, 224, 224, 3) uint8 RGB person crops.

        Returns:
            :class:`HMROutput` with B rows.
        """
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (B, {CROP_SIZE}, {CROP_SIZE}, 3) uint8, got {crops.shape} {crops.dtype}")
        poses, betas, cams = [], [], []
        for start in range(0, crops.shape[0], self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - self._mean) / self._std
            rotmat, shape, cam = self.model(x)
            poses.append(matrix_to_axis_angle(rotmat.float()).reshape(-1, NUM_JOINTS * 3).cpu())
            betas.append(shape.float().cpu())
            cams.append(cam.float().cpu())
        if not poses:
            empty = np.zeros((0,), np.float32)
            return HMROutput(empty.reshape(0, 72), empty.reshape(0, 10), empty.reshape(0, 3))
        return HMROutput(
            torch.cat(poses).numpy().astype(np.float32),
            torch.cat(betas).numpy().astype(np.float32),
            torch.cat(cams).numpy().astype(np.float32),
        )


def crop_camera_to_image(crop_camera: np.ndarray, center: np.ndarray, box_size: np.ndarray) -> np.ndarray:
    """SPIN crop camera -> weak-perspective image camera in pixels.

    The crop is the square of side ``box_size`` pixels centred at ``center`` (resampled to
    224 x 224). A body point X lands at ``u = s_c (X + t_c)`` in [-1, 1] crop units, i.e. at
    ``center + box_size / 2 * u`` in the image, so ``s = s_c * box_size / 2`` and
    ``t = center + s * t_c``.

    Args:
        crop_camera: (..., 3) ``(s_c, tx_c, ty_c)``.
        center: (..., 2) crop centre, image pixels.
        box_size: (...,) crop side, image pixels.

    Returns:
        (..., 3) ``(s px/m, tx px, ty px)``.
    """
    crop_camera = np.asarray(crop_camera, np.float64)
    scale = crop_camera[..., 0] * np.asarray(box_size, np.float64) / 2.0
    offset = np.asarray(center, np.float64) + scale[..., None] * crop_camera[..., 1:]
    return np.concatenate([scale[..., None], offset], axis=-1)


def image_camera_to_crop(camera: np.ndarray, center: np.ndarray, box_size: np.ndarray) -> np.ndarray:
    """Inverse of :func:`crop_camera_to_image` (image camera -> SPIN crop camera)."""
    camera = np.asarray(camera, np.float64)
    s_c = camera[..., 0] * 2.0 / np.asarray(box_size, np.float64)
    t_c = (camera[..., 1:] - np.asarray(center, np.float64)) / camera[..., :1]
    return np.concatenate([s_c[..., None], t_c], axis=-1)
