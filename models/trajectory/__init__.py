"""Training on free-running trajectories: reference (autograd), kernel (Numba), train (the CLI)."""
