"""Device preflight: is the torch device usable, and if not, why and what to pass instead.

:func:`check_device` runs on the launcher before the pipeline is built and again in every
worker's ``DoFn.setup`` (``transforms.model_stages``), so a missing GPU stops the job with one
message instead of turning every clip into ``failed``. It checks, in order:

1. the name parses as a torch device (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``...);
2. the backend exists in this torch build (CUDA version of the build, MPS support);
3. the device is visible: NVIDIA driver loaded, index below the visible GPU count;
4. a small tensor op gives the CPU's answer on it, and a small model (conv, linear,
   autograd backward) runs forward and backward on it.

Each failure is a :class:`DeviceError` whose one-line message names the device, what is
missing and what to pass instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["DeviceError", "check_device", "check_device_name", "resolve_device"]

_INSTEAD = "pass --device cpu (or --device auto, which picks a GPU only when one works)"


class DeviceError(RuntimeError):
    """The requested torch device cannot be used; the message says why and what to pass."""


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other names unchanged."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version line, or None (Linux ``/proc`` only)."""
    path = Path("/proc/driver/nvidia/version")
    try:
        first = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    return " ".join(first.split()[:8])


def _cuda_problem(device: torch.device, name: str) -> str | None:
    build = torch.version.cuda
    if build is None:
        hip = getattr(torch.version, "hip", None)
        if hip is None:
            return (f"--device {name}: this torch {torch.__version__} is a CPU-only build (no CUDA); install a "
                    f"CUDA build of torch matching your driver, or {_INSTEAD}")
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hidden = f"; CUDA_VISIBLE_DEVICES={visible!r} may hide the GPUs" if visible is not None else ""
        driver = _nvidia_driver()
        if driver is None:
            return (f"--device {name}: no NVIDIA driver is loaded on this machine (no /proc/driver/nvidia/version)"
                    f"{hidden}; torch {torch.__version__} is built for CUDA {build}; install the driver or {_INSTEAD}")
        return (f"--device {name}: torch (built for CUDA {build}) sees no usable GPU although a driver is loaded "
                f"({driver}): the driver may be older than CUDA {build} needs{hidden}; update the driver, install "
                f"a torch build for an older CUDA, or {_INSTEAD}")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        return (f"--device {name}: there is no GPU {device.index}; {count} visible "
                f"(cuda:0..cuda:{count - 1}); pass one of those or {_INSTEAD}")
    return None


def _mps_problem(name: str) -> str | None:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return f"--device {name}: this torch {torch.__version__} is built without MPS (Apple GPU) support; {_INSTEAD}"
    if not mps.is_available():
        return f"--device {name}: MPS is built in but unavailable (needs macOS 12.3+ on Apple silicon); {_INSTEAD}"
    return None


class _Probe(nn.Module):
    """The smallest model with the layer kinds the pipeline uses (conv, norm, linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.norm(self.conv(x))).flatten(1))


def _run_probe(device: torch.device) -> None:
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    on_device = (a.to(device) @ a.to(device).T).sum().item()
    expected = float((a @ a.T).sum())
    if abs(on_device - expected) > 1e-3 * abs(expected):
        raise RuntimeError(f"a 3x4 matrix product gave {on_device}, the CPU gives {expected}")
    generator = torch.Generator().manual_seed(0)
    model = _Probe()
    x = torch.randn(2, 3, 8, 8, generator=generator)
    reference = model(x)
    model = model.to(device)
    out = model(x.to(device))
    out.square().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if not torch.allclose(out.detach().cpu(), reference.detach(), rtol=1e-2, atol=1e-3):
        raise RuntimeError("a small conv/linear model gives different outputs than on the CPU")
    if model.fc.weight.grad is None or not torch.isfinite(model.fc.weight.grad).all():
        raise RuntimeError("the backward pass of a small model gave no finite gradient")


def check_device_name(device: str) -> str:
    """Only check that ``device`` names a torch device (for launchers of remote workers,
    which may lack the workers' GPU); returns it unchanged.

    Raises:
        DeviceError: not a device name.
    """
    name = str(device).strip()
    if name == "auto":
        return name
    try:
        torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"--device {name!r} is not a torch device; pass cpu, cuda, cuda:N (N = GPU index), mps or auto"
        ) from None
    return name


def check_device(device: str) -> str:
    """Check that ``device`` works; return the resolved name (``auto`` -> ``cuda``/``cpu``).

    Args:
        device: the ``--device`` flag value.

    Returns:
        The device to use, e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Raises:
        DeviceError: one line naming the device, what is missing and what to pass instead.
    """
    name = str(device).strip()
    resolved = resolve_device(name)
    try:
        parsed = torch.device(resolved)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"--device {name!r} is not a torch device; pass cpu, cuda, cuda:N (N = GPU index), mps or auto"
        ) from None
    problem = None
    if parsed.type == "cuda":
        problem = _cuda_problem(parsed, name)
    elif parsed.type == "mps":
        problem = _mps_problem(name)
    elif parsed.type not in ("cpu", "meta"):
        backend = getattr(torch, parsed.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            problem = f"--device {name}: torch {torch.__version__} has no usable {parsed.type!r} backend here; {_INSTEAD}"
    elif parsed.type == "meta":
        problem = f"--device {name}: the meta device holds no data; {_INSTEAD}"
    if problem:
        raise DeviceError(problem)
    try:
        _run_probe(parsed)
    except Exception as exc:  # CUDA "no kernel image", out of memory, driver errors...
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        build = f" (torch {torch.__version__}, CUDA build {torch.version.cuda})" if parsed.type == "cuda" else ""
        arch = ""
        if parsed.type == "cuda":
            try:
                arch = f"; GPU compute capability {torch.cuda.get_device_capability(parsed)}, this torch supports {torch.cuda.get_arch_list()}"
            except Exception:  # noqa: BLE001 - best-effort detail only
                arch = ""
        raise DeviceError(
            f"--device {name}: a test tensor op and model forward fail on {parsed}{build}: "
            f"{type(exc).__name__}: {first}{arch}; {_INSTEAD}"
        ) from exc
    return resolved
