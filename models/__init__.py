"""Body model (SMPL via smplx, fast joints path, synthetic stand-in), GMM pose prior,
geometry, HMR regressor and pose-detector adapters."""
