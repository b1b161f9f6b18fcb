"""Robust losses, the bundle-adjustment energy, the batched L-BFGS solver, E_norm and
inlier logic."""
