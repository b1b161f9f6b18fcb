"""Batched solver for block-tridiagonal systems with a dense border (whole-clip normal equations).

The Gauss-Newton / Levenberg-Marquardt normal matrix of one track's bundle adjustment
has this structure: each frame t has ``n`` parameters (75: pose + camera), the
temporal terms couple only frames t-1 and t, and the ``m`` shared parameters (10 betas)
touch every frame::

        | A   E |   | x |   | r |        A: block tridiagonal, T blocks of n x n
    H = |       | . |   | = |   |        E: (T n) x m border, C: m x m
        | E^T C |   | y |   | s |

:func:`solve_bordered_tridiagonal` solves it for a batch of B independent systems in
O(B T (n^3 + n^2 m + m^3)): a block Cholesky factorisation ``A = L L^T`` carrying the
border's m columns and r along (``q = L^-1 [E r]``), the Schur complement of A for the
border, ``S = C - E^T A^-1 E = C - q_E^T q_E``, then one backward pass with a single
column, ``x = L^-T (q_r - q_E y)``. Two orderings of the same factorisation:

* ``"sweep"`` (block Thomas): T sequential steps batched over tracks, the fewest flops;
  the CPU default (one triangular solve per frame and a backward pass on a single column;
  figures from ``bench.block_solve`` in docs/measurements.md).
* ``"cyclic"`` (block cyclic reduction): ceil(log2 T) levels, each batched over all the
  frames it eliminates; about 3x the flops of the sweep (slower on a CPU) but about 30
  kernels per level instead of about 10 per frame, the default on other devices.

Everything stays on the device: no host synchronisation, no branching on tensor values
(except one look at the frame mask on the CPU, where it is free, to skip masking that would
change nothing);
a failed factorisation is reported per system as a mask, never raised, and a failed
system's NaNs never reach the other systems of the batch. ``B = 64, T = 250, n = 75,
m = 10`` is about 0.4 GFLOP per track for the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BorderedSolution:
    """Solution of a batch of bordered block-tridiagonal systems.

    Attributes:
        x: (B, T, n) frame unknowns (0 on masked frames).
        y: (B, m) border unknowns.
        ok: (B,) bool, False where a factorisation met a non positive-definite block
            (the system's x and y are then not finite-checked: do not use them).
    """

    x: Tensor
    y: Tensor
    ok: Tensor


def solve_bordered_tridiagonal(
    diagonal: Tensor,
    lower: Tensor,
    border: Tensor,
    corner: Tensor,
    rhs_frames: Tensor,
    rhs_border: Tensor,
    frame_mask: Tensor | None = None,
    method: str = "auto",
    diagonal_shift: Tensor | None = None,
) -> BorderedSolution:
    """Solve ``H [x; y] = [r; s]`` for B symmetric positive-definite bordered systems.

    Pass symmetric blocks: the factorisations are Cholesky and read one triangle of each
    diagonal block (the sweep reads the upper one: its column-major copy is then a plain
    copy) and the lower triangle of the corner.

    Args:
        diagonal: (B, T, n, n) diagonal blocks A[t, t].
        lower: (B, T, n, n) sub-diagonal blocks A[t, t-1] (entry 0 is ignored).
        border: (B, T, n, m) blocks E[t] coupling frame t and the border unknowns.
        corner: (B, m, m) C.
        rhs_frames: (B, T, n) r.
        rhs_border: (B, m) s.
        frame_mask: optional (B, T) bool; masked frames are replaced by the identity and
            decoupled (their x is 0), so padded tracks of different lengths share a batch.
        method: ``"sweep"`` (block Thomas, T sequential steps), ``"cyclic"`` (block
            cyclic reduction, ceil(log2 T) batched levels) or ``"auto"``: the sweep on
            the CPU, cyclic reduction on other devices (one batched factorisation per
            level instead of one per frame).
        diagonal_shift: optional (B, T, n) added to the diagonal of every diagonal block
            (Levenberg-Marquardt's damping): the sweep adds it to its own per-frame copy,
            so the caller need not copy the (B, T, n, n) blocks to damp them.

    Returns:
        :class:`BorderedSolution`.
    """
    if method == "auto":
        method = "sweep" if diagonal.device.type == "cpu" else "cyclic"
    if method not in ("sweep", "cyclic"):
        raise ValueError(f"unknown method {method!r}")
    m = corner.shape[-1]
    pair = None
    if frame_mask is not None:
        keep = frame_mask[..., None, None]
        pair = torch.zeros_like(frame_mask)
        pair[:, 1:] = frame_mask[:, 1:] & frame_mask[:, :-1]
        border = torch.where(keep, border, 0.0)
        rhs_frames = torch.where(frame_mask[..., None], rhs_frames, 0.0)
    # The border's m columns and r are carried through the factorisation together.
    rhs = torch.cat((border, rhs_frames[..., None]), -1)  # (B, T, n, m + 1)
    if method == "sweep":
        # masks and shift are applied frame by frame, on the sweep's own copies of the
        # blocks: three (B, T, n, n) passes less
        forward, gram, ok = _sweep_forward(diagonal, lower, rhs, frame_mask, pair, diagonal_shift)
    else:
        if diagonal_shift is not None:
            diagonal = diagonal.clone()
            diagonal.diagonal(dim1=-2, dim2=-1).add_(diagonal_shift)
        if frame_mask is not None:
            eye = torch.eye(diagonal.shape[-1], dtype=diagonal.dtype, device=diagonal.device)
            diagonal = torch.where(frame_mask[..., None, None], diagonal, eye)
            # a scalar 0, not a zeros tensor: no (B, T, n, n) fill
            lower = torch.where(pair[..., None, None], lower, 0.0)
        forward, gram, ok = _cyclic_forward(diagonal, lower, rhs)
    # A = L L^T, q = L^-1 [E r]:  E^T A^-1 E = q_E^T q_E,  E^T A^-1 r = q_E^T q_r.
    schur = corner - gram[:, :m, :m]
    schur_factor, info = torch.linalg.cholesky_ex(schur)
    ok = ok & (info == 0)
    y = torch.cholesky_solve((rhs_border - gram[:, :m, m])[..., None], schur_factor)[..., 0]
    # x = A^-1 (r - E y) = L^-T (q_r - q_E y): the backward pass needs one column only.
    weights = torch.cat((-y, torch.ones_like(y[:, :1])), 1)  # (B, m + 1)
    x = forward.backward(weights)
    if frame_mask is not None:
        x = torch.where(frame_mask[..., None], x, 0.0)
    return BorderedSolution(x=x, y=y, ok=ok)


_GRAM_CHUNK_VALUES = 1 << 23  # float values of one chunk of _gram's per-frame products (32 MB in float32)


def _gram(q: Tensor) -> Tensor:
    """sum over frames of q_t^T q_t: (B, K, n, k) -> (B, k, k).

    Per frame, then summed over the frames in float64: one matrix product over all K n
    rows accumulated in float32 makes the Schur complement the largest error of the solve
    for long tracks (``bench.block_solve`` reports the residuals); and a float32 sum over the (padded) frames rounds differently
    with K, i.e. with the longest track of the batch.
    """
    out = torch.zeros(q.shape[0], q.shape[-1], q.shape[-1], dtype=torch.float64, device=q.device)
    # per frame as products and sums, not a thin (k x n) (n x k) matmul: BLAS rounded that
    # differently with the matrix's position in the batch (seen with MKL), and
    # a track's solve must not depend on its batch; in chunks of frames to bound the
    # (B, K, n, k, k) products' memory
    step = max(1, _GRAM_CHUNK_VALUES // max(1, q.shape[0] * q.shape[2] * q.shape[3] ** 2))
    for start in range(0, q.shape[1], step):
        part = q[:, start:start + step]
        out += (part[..., :, None] * part[..., None, :]).sum(2).sum(1, dtype=torch.float64)
    return out.to(q.dtype)


def _solve_lower_transposed(factor: Tensor, stacked_t: Tensor) -> Tensor:
    """``(F^-1 Z)^T`` for lower-triangular F (..., n, n) and ``Z^T`` = stacked_t (..., c, n).

    Same result either way; the side is picked by measurement (``bench.block_solve``,
    2-core x86-64, MKL): in float32 on the CPU the right-side solve ``X F^T = Z^T`` took
    half the time of the left-side one, in float64 it was slower than the left-side one.
    """
    if factor.dtype == torch.float32 and factor.device.type == "cpu":
        return torch.linalg.solve_triangular(factor.transpose(-1, -2), stacked_t, upper=True, left=False)
    return torch.linalg.solve_triangular(factor, stacked_t.transpose(-1, -2), upper=False).transpose(-1, -2)


class _SweepFactor:
    """Block Cholesky factor of A from :func:`_sweep_forward`, for the backward pass."""

    def __init__(self, factors: list[Tensor], couplings: list[Tensor], forward: Tensor):
        self.factors = factors  # T x (B, n, n) F_t, column-major (as LAPACK returns them)
        self.couplings = couplings  # T - 1 x (B, n, n) M_{t+1}
        self.forward = forward  # (B, T, n, k) q_t

    def backward(self, weights: Tensor) -> Tensor:
        """Solve ``L^T x = q @ weights`` (weights (B, k)): ``x_t = F_t^-T (c_t - M_{t+1}^T x_{t+1})``.

        Each step is the row form ``x_t^T F_t = c_t^T - x_{t+1}^T M_{t+1}``: a right-side
        solve with F_t itself, which LAPACK reads without a copy (``F_t^T`` would be one).
        """
        # Batch independence: a track's solve must not depend on its batch, but BLAS's
        # vector paths (a (1 x n) row through gemv or trsv) rounded differently with the
        # vector's position in the batch (seen with MKL); so the weights are
        # applied as products and a sum, and each row is carried with a zero second row,
        # which takes the matrix paths, position-independent.
        forward = self.forward
        right = forward.new_zeros(forward.shape[0], forward.shape[1], 2, forward.shape[2])  # (B, T, 2, n)
        right[:, :, 0] = (forward * weights[:, None, None, :]).sum(-1)
        out = [None] * right.shape[1]
        following = None
        for t in reversed(range(right.shape[1])):
            current = right[:, t]
            if following is not None:
                current = torch.baddbmm(current, following, self.couplings[t], alpha=-1)
            following = torch.linalg.solve_triangular(self.factors[t], current, upper=False, left=False)
            out[t] = following[:, 0]
        return torch.stack(out, 1)


def _sweep_forward(diagonal: Tensor, lower: Tensor, rhs: Tensor, frame_mask: Tensor | None = None,
                   pair: Tensor | None = None, shift: Tensor | None = None) -> tuple[_SweepFactor, Tensor, Tensor]:
    """Block Thomas: A = L L^T with L block lower bidiagonal, and q = L^-1 rhs.

    With L[t, t] = F_t (lower triangular) and L[t, t-1] = M_t:
    ``M_t = A[t, t-1] F_{t-1}^-T``, ``F_t F_t^T = A[t, t] - M_t M_t^T``,
    ``q_t = F_t^-1 (rhs_t - M_t q_{t-1})``. One step is one Cholesky, one triangular
    solve ``F_t [M_{t+1}^T, q_t] = [A[t+1, t]^T, rhs_t - M_t q_{t-1}]`` and two matrix
    products.

    The memory layouts are chosen so that LAPACK copies nothing it need not
    (``bench.block_solve`` times the alternatives): the Cholesky factorises ``block^T`` (= block, symmetric), whose
    column-major copy is a plain one; the triangular solve is the right-side form, whose
    operands are already column-major.

    Args:
        diagonal, lower, rhs: as in :func:`solve_bordered_tridiagonal` (rhs: (B, T, n, k)).
        frame_mask: optional (B, T): masked frames' diagonal blocks are the identity.
        pair: (B, T) with frame_mask: A[t, t-1] is used only where pair[t] (else 0).
        shift: optional (B, T, n) added to the diagonal blocks' diagonals.

    Returns:
        the factor, the Gram matrix sum_t q_t^T q_t (B, k, k), ok (B,).
    """
    B, T, n, _ = diagonal.shape
    k = rhs.shape[-1]
    eye = torch.eye(n, dtype=diagonal.dtype, device=diagonal.device)
    zero = eye.new_zeros(())
    masked = [frame_mask is not None] * T  # frame t needs masking (some system lacks it)
    if frame_mask is not None and diagonal.device.type == "cpu":
        # on the CPU a look at the mask is free: the frames every system has (all but the
        # padding) skip the two masking passes
        masked = (~frame_mask).any(0).tolist()
        masked = [a or b for a, b in zip(masked, masked[1:] + [False])]  # pair[t + 1] needs frame t
    factors, couplings, forward, infos = [], [], [], []
    coupling = previous_t = None  # M_t (B, n, n), q_{t-1}^T (B, k, n)
    for t in range(T):
        last = t + 1 == T
        right_t = rhs[:, t].transpose(-1, -2)  # (B, k, n)
        if not last:
            # [A[t+1, t]; (rhs_t - M_t q_{t-1})^T]: what the triangular solve reads
            stacked = diagonal.new_empty(B, n + k, n)
            if masked[t]:
                torch.where(pair[:, t + 1, None, None], lower[:, t + 1], zero, out=stacked[:, :n])
            else:
                stacked[:, :n] = lower[:, t + 1]
        if coupling is None:
            block = diagonal[:, t].clone() if shift is not None else diagonal[:, t]
            if not last:
                stacked[:, n:] = right_t
        else:
            block = torch.baddbmm(diagonal[:, t], coupling, coupling.transpose(-1, -2), alpha=-1)
            if last:
                right_t = torch.baddbmm(right_t, previous_t, coupling.transpose(-1, -2), alpha=-1)
            else:
                torch.baddbmm(right_t, previous_t, coupling.transpose(-1, -2), alpha=-1, out=stacked[:, n:])
        if shift is not None:
            block.diagonal(dim1=-2, dim2=-1).add_(shift[:, t])
        if masked[t]:
            block = torch.where(frame_mask[:, t, None, None], block, eye)
        factor, info = torch.linalg.cholesky_ex(block.transpose(-1, -2))
        factors.append(factor)
        infos.append(info)
        if not last:
            solved = _solve_lower_transposed(factor, stacked)  # [M_{t+1}; q_t^T]
            coupling, previous_t = solved[:, :n], solved[:, n:]
            couplings.append(coupling)
            forward.append(previous_t)
        else:
            forward.append(torch.linalg.solve_triangular(factor, right_t.transpose(-1, -2), upper=False).transpose(-1, -2))
    ok = (torch.stack(infos, 1) == 0).all(1)
    forward = torch.stack(forward, 1).transpose(-1, -2)  # (B, T, n, k)
    return _SweepFactor(factors, couplings, forward), _gram(forward), ok


class _CyclicFactor:
    """Levels of a block cyclic reduction from :func:`_cyclic_forward`, for the backward pass."""

    def __init__(self, levels: list[tuple[Tensor, Tensor, int]], root_factor: Tensor, root_forward: Tensor):
        # per level: F (B, K, n, n) of the eliminated (odd) frames, W = F^-1 [A[o, o-1],
        # A[o, o+1], rhs_o] (B, K, n, 2n + k), and the number of frames at that level
        self.levels = levels
        self.root_factor = root_factor  # (B, n, n)
        self.root_forward = root_forward  # (B, n, k)

    def backward(self, weights: Tensor) -> Tensor:
        """Solve ``L^T x = q @ weights`` (weights (B, k)), from the root back to level 0."""
        w = weights[:, :, None]
        x = torch.linalg.solve_triangular(self.root_factor.transpose(-1, -2), self.root_forward @ w, upper=True)
        x = x[:, None]  # (B, 1, n, 1)
        for factors, solved, count in reversed(self.levels):
            B, K, n, _ = factors.shape
            evens = x  # (B, E, n, 1), E = count - K
            right_neighbour = evens[:, 1:]
            if right_neighbour.shape[1] < K:  # the last odd frame has no right neighbour
                right_neighbour = torch.cat((right_neighbour, torch.zeros_like(evens[:, :1])), 1)
            neighbours = torch.cat((evens[:, :K], right_neighbour), 2)  # (B, K, 2n, 1)
            current = solved[..., 2 * n :] @ w[:, None] - solved[..., : 2 * n] @ neighbours
            odds = torch.linalg.solve_triangular(factors.transpose(-1, -2), current, upper=True)
            x = evens.new_empty(B, count, n, 1)
            x[:, 0::2] = evens
            x[:, 1::2] = odds
        return x[..., 0]


def _cyclic_forward(diagonal: Tensor, lower: Tensor, rhs: Tensor) -> tuple[_CyclicFactor, Tensor, Tensor]:
    """Block cyclic reduction: the odd frames are eliminated, leaving a block-tridiagonal
    system on the even frames, ceil(log2 T) times; each level is one batched Cholesky,
    one triangular solve and one matrix product over all its odd frames.

    For an odd frame o with neighbours e = o - 1 and f = o + 1 (``D = A[o, o] = F F^T``,
    ``P = F^-1 A[o, e]``, ``Q = F^-1 A[o, f]``, ``q = F^-1 rhs_o``)::

        A'[e, e] -= P^T P,  A'[f, f] -= Q^T Q,  A'[f, e] = -Q^T P,
        rhs'_e -= P^T q,    rhs'_f -= Q^T q,
        x_o = F^-T (q - P x_e - Q x_f).

    It is the Cholesky factorisation of A in the nested-dissection order, so q over all
    levels is L^-1 rhs.

    Returns:
        the factor, the Gram matrix of q over all levels (B, k, k), ok (B,).
    """
    B, T, n, _ = diagonal.shape
    k = rhs.shape[-1]
    gram = rhs.new_zeros(B, k, k)
    bad = torch.zeros(B, dtype=torch.bool, device=diagonal.device)
    levels = []
    lower = torch.cat((torch.zeros_like(lower[:, :1]), lower[:, 1:]), 1)
    while diagonal.shape[1] > 1:
        count = diagonal.shape[1]
        K, E = count // 2, (count + 1) // 2  # odd and even frames
        factors, info = torch.linalg.cholesky_ex(diagonal[:, 1::2])
        bad = bad | (info != 0).any(1)
        # [A[o, e] | A[o, f] | rhs_o]^T for every odd frame o (A[o, f] = A[f, o]^T = 0 past the end)
        stacked = diagonal.new_empty(B, K, 2 * n + k, n)
        stacked[:, :, :n] = lower[:, 1::2].transpose(-1, -2)
        stacked[:, : E - 1, n : 2 * n] = lower[:, 2::2]
        stacked[:, E - 1 :, n : 2 * n] = 0
        stacked[:, :, 2 * n :] = rhs[:, 1::2].transpose(-1, -2)
        # W = F^-1 [A[o, e] | A[o, f] | rhs_o]: (B, K, n, 2n + k)
        solved = _solve_lower_transposed(factors, stacked).transpose(-1, -2)
        products = solved[..., : 2 * n].transpose(-1, -2) @ solved  # (B, K, 2n, 2n + k)
        gram = gram + _gram(solved[..., 2 * n :])
        new_diagonal = diagonal[:, 0::2].clone()
        new_rhs = rhs[:, 0::2].clone()
        new_lower = torch.zeros_like(new_diagonal)
        new_diagonal[:, :K] -= products[..., :n, :n]
        new_rhs[:, :K] -= products[..., :n, 2 * n :]
        new_diagonal[:, 1:] -= products[:, : E - 1, n:, n : 2 * n]
        new_rhs[:, 1:] -= products[:, : E - 1, n:, 2 * n :]
        new_lower[:, 1:] = -products[:, : E - 1, n:, :n]
        levels.append((factors, solved, count))
        diagonal, lower, rhs = new_diagonal, new_lower, new_rhs
    root_factor, info = torch.linalg.cholesky_ex(diagonal[:, 0])
    bad = bad | (info != 0)
    root_forward = torch.linalg.solve_triangular(root_factor, rhs[:, 0], upper=False)
    gram = gram + root_forward.transpose(-1, -2) @ root_forward
    return _CyclicFactor(levels, root_factor, root_forward), gram, ~bad


def assemble_dense(diagonal: Tensor, lower: Tensor, border: Tensor, corner: Tensor) -> Tensor:
    """The dense (B, T n + m, T n + m) matrix of the blocks (tests and small checks)."""
    B, T, n, _ = diagonal.shape
    m = corner.shape[-1]
    size = T * n + m
    dense = diagonal.new_zeros(B, size, size)
    for t in range(T):
        rows = slice(t * n, (t + 1) * n)
        dense[:, rows, rows] = diagonal[:, t]
        if t > 0:
            previous = slice((t - 1) * n, t * n)
            dense[:, rows, previous] = lower[:, t]
            dense[:, previous, rows] = lower[:, t].transpose(-1, -2)
        dense[:, rows, T * n :] = border[:, t]
        dense[:, T * n :, rows] = border[:, t].transpose(-1, -2)
    dense[:, T * n :, T * n :] = corner
    return dense
